use super::*;

#[test]
fn refusals_of_no_identity_are_recorded_up_to_a_budget_per_source_a_minute() {
    use crate::conn_slots::Source;
    let log = AuditLog::default();
    let minute = 29_000_000 * 60_000;
    let (junk, other) = (Source::V4([192, 0, 2, 1]), Source::V4([192, 0, 2, 2]));
    let taken = (0..100)
        .filter(|i| log.takes_anonymous_refusal(junk, minute + i * 100))
        .count();
    assert_eq!(taken, ANONYMOUS_REFUSALS_PER_SOURCE as usize);
    assert!(
        log.takes_anonymous_refusal(other, minute + 20_000),
        "another source's"
    );
    assert!(
        log.takes_anonymous_refusal(junk, minute + 60_000),
        "the next minute"
    );
    // Clones share one budget (each service holds one); all sources together are bounded.
    let clone = log.clone();
    let mut all = 1;
    for i in 0..10_000u32 {
        let source = Source::V4(i.to_be_bytes());
        all += usize::from(clone.takes_anonymous_refusal(source, minute + 60_001));
    }
    assert_eq!(all, ANONYMOUS_REFUSALS_PER_MINUTE as usize);
}
