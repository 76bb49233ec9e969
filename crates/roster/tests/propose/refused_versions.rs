//! Versions the roster refuses whole: too large for the roster log, leaving no active hub, naming a member across lines or of no country, stopping the last hub publishing; and actions that change nothing make no version.

use super::*;

/// A signing key per member number, beyond the 256 `key` gives.
fn member_key(n: u32) -> ed25519_dalek::SigningKey {
    let mut seed = [7u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

#[test]
fn a_version_too_large_for_the_roster_log_is_refused_at_proposal_and_250_single_key_members_fit() {
    // Members enrolled 50 per version, as an operator would: every version up to 250 members
    // fits a roster log entry (the mission's 190 members with room), and a version that would
    // not is refused when proposed, not when published.
    let mut current = genesis();
    let mut members = 0u32;
    let refused = loop {
        let batch: Vec<A> = (members..members + 50)
            .map(|n| add_agency(&format!("AG{n:04}"), &member_key(n)))
            .collect();
        match try_propose(&current, batch.clone(), &no_heads) {
            Ok(_) => {
                current = apply(&current, batch, &no_heads);
                members += 50;
            }
            Err(e) => break e,
        }
        assert!(members < 100_000, "the size cap never refused a version");
    };
    assert!(members >= 250, "only {members} members fit: {refused}");
    let ProposeError::DocumentTooLarge { bytes, max } = refused else {
        panic!("expected DocumentTooLarge, got {refused:?}");
    };
    assert!(bytes > max, "{bytes} <= {max}");
    assert!(current.signed().encode_to_vec().len() <= max + 2048);
    println!("{members} members fit; the next 50 would make {bytes} bytes (max {max})");
}

#[test]
fn a_version_leaving_no_active_hub_is_refused() {
    let v2 = with_agency();
    let hub = v2
        .members()
        .iter()
        .find(|m| m.role == pb::MemberRole::Hub as i32)
        .map(|m| m.org.clone())
        .expect("the genesis hub");
    assert_eq!(
        try_propose(&v2, vec![suspend(&hub)], &no_heads),
        Err(ProposeError::NoActiveHub)
    );
    let remove = A::Remove(pb::Remove {
        org: hub.clone(),
        withdraw: false,
    });
    assert_eq!(
        try_propose(&v2, vec![remove], &no_heads),
        Err(ProposeError::NoActiveHub)
    );
    // An agency may go.
    assert!(try_propose(&v2, vec![suspend("AG")], &no_heads).is_ok());
}

#[test]
fn a_member_named_across_lines_or_of_no_country_is_refused() {
    let v1 = genesis();
    let named = |name: &str, country: &str| {
        let details = EnrolmentDetails {
            org: org("AG"),
            display_name: name.into(),
            country: country.into(),
            csr_pem: String::new(),
            encryption_key: None,
        };
        A::AddMember(pb::AddMember {
            request: Some(sign_enrolment(&details, &key(30), NOW)),
            role: pb::MemberRole::Agency as i32,
        })
    };
    for (name, country, said) in [
        ("a\nb", "AU", "control characters"),
        ("  ", "AU", "empty"),
        ("AFP", "ZZZ", "ISO 3166-1"),
        ("AFP", "au", "ISO 3166-1"),
    ] {
        let (index, _, error) = refusal(&v1, vec![named(name, country)]);
        assert_eq!(index, 1);
        assert!(
            matches!(&error, ActionError::Naming(p) if p.contains(said)),
            "{name:?} {country:?}: {error}"
        );
    }
    assert!(try_propose(
        &v1,
        vec![named("Australian Federal Police", "AU")],
        &no_heads
    )
    .is_ok());
    assert!(try_propose(&v1, vec![named("Interpol", "")], &no_heads).is_ok());
}

#[test]
fn a_hub_whose_only_key_is_reported_stolen_no_longer_publishes_and_the_last_one_cannot_be() {
    let v1 = genesis();
    let stolen = |last: u64| {
        A::ReportCompromise(pb::ReportCompromise {
            org: "HUB".into(),
            public_key: hub_key().verifying_key().to_bytes().to_vec(),
            last_good_seq: last,
            ..Default::default()
        })
    };
    assert_eq!(
        try_propose(&v1, vec![stolen(0)], &no_heads),
        Err(ProposeError::NoActiveHub)
    );
    let second_hub = A::AddMember(pb::AddMember {
        request: Some(enrolment("HUB-B", &key(22))),
        role: pb::MemberRole::Hub as i32,
    });
    let v2 = apply(&v1, vec![second_hub], &no_heads);
    assert_eq!(v2.roster_publisher(), Some(org("HUB")));
    let v3 = apply(&v2, vec![stolen(0)], &no_heads);
    // The stolen key may sign no later version: the role moves to the hub that can.
    assert_eq!(v3.roster_publisher(), Some(org("HUB-B")));
}

#[test]
fn actions_that_change_nothing_make_no_version() {
    let v1 = genesis();
    let same_policy = A::SetPolicy(pb::SetPolicy {
        policy: v1.document().policy,
    });
    assert_eq!(
        try_propose(&v1, vec![same_policy], &no_heads),
        Err(ProposeError::NoChange)
    );
    let same_hubs = A::SetHubs(pb::SetHubs {
        hubs: v1.document().hubs.clone(),
    });
    assert_eq!(
        try_propose(&v1, vec![same_hubs], &no_heads),
        Err(ProposeError::NoChange)
    );
}
