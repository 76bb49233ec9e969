//! `verify-store`: re-verifies every chain and signature, rebuilds the index from the log and
//! compares it, its postings and its counters with what is stored.

use std::collections::BTreeMap;

use intelmesh_core::entry::{header_hash, ZERO_HASH};
use intelmesh_core::verify::{read_stored_opened, verify_entry, KeyRegistry, VerifyConfig};
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;

use intelmesh_core::containment::PrefixLengths;
use intelmesh_core::indicator::normalize;
use intelmesh_core::IndicatorType;

use crate::index::merge_payload;
use prost::Message;

use crate::disk_store::{opened_of, OpenedEntry};
use crate::index::decode_state;
use crate::index_write::IndexMeta;
use crate::postings::postings_of;
use crate::segment::all_segments;
use crate::state_sum::StateSum;
use crate::{keys, DiskStore, StoreError};

/// What `verify_store` found.
#[derive(Debug, Default)]
pub struct StoreCheck {
    pub origins: usize,
    pub entries: u64,
    pub stubs: u64,
    pub indicators: usize,
    /// The values the log is stored in (`segment`): how finely it is cut.
    pub segments: u64,
    /// The first [`PROBLEMS_LISTED`] problems found.
    pub problems: Vec<String>,
    /// Problems found past those listed: a store damaged throughout must not make the check
    /// hold one line per entry in memory.
    pub problems_not_listed: u64,
}

/// Problems a check lists; the rest are counted.
pub const PROBLEMS_LISTED: usize = 1000;

impl StoreCheck {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, problem: String) {
        if self.problems.len() < PROBLEMS_LISTED {
            self.problems.push(problem);
        } else {
            self.problems_not_listed += 1;
        }
    }
}

/// Checks each origin's log (contiguous seqs from 1, prev hashes, signatures against `keys`
/// or else the keys recorded at acceptance), the heads, and that the stored index equals the
/// one rebuilt from the log. On a store in use, writes wait until the check is done, so it
/// sees one state of log, heads and index.
pub fn verify_store(
    store: &DiskStore,
    keys: Option<&dyn KeyRegistry>,
) -> Result<StoreCheck, StoreError> {
    // `apply` and `truncate_origin` change log, heads and index only while holding this.
    let _no_writes = store.lock();
    let recorded;
    let keys: &dyn KeyRegistry = match keys {
        Some(k) => k,
        None => {
            recorded = store.recorded_keys()?;
            &recorded
        }
    };
    // Stored entries were accepted in the past; their issue time is not re-judged.
    let cfg = VerifyConfig::at(i64::MAX);
    let mut check = StoreCheck::default();
    let mut tails: BTreeMap<OrgId, (u64, [u8; 32])> = BTreeMap::new();
    let mut rebuilt: BTreeMap<Vec<u8>, pb::IndicatorState> = BTreeMap::new();
    for item in store.log_entries_opened() {
        let (origin, seq, raw, opened) = item?;
        check.entries += 1;
        let (last_seq, last_hash) = tails.get(&origin).copied().unwrap_or((0, ZERO_HASH));
        if seq != last_seq + 1 {
            check.problem(format!("{origin}: seq {seq} follows {last_seq}"));
        }
        let hash = header_hash(&raw.header);
        tails.insert(origin.clone(), (seq, hash));
        let kept = opened.as_ref().map(|_| raw.clone());
        let entry = match verify_entry(raw, keys, &cfg) {
            Ok(e) => e,
            Err(e) => {
                // The error names origin and seq itself.
                check.problem(e.to_string());
                continue;
            }
        };
        let (_, h, _, mut payload, _) = entry.into_parts();
        // A sealed entry this node opened folds what it opened to, checked as on receipt.
        if let (Some(raw), Some(opened)) = (kept, opened.as_deref()) {
            match read_stored_opened(&raw, Some(opened)) {
                Ok((_, p)) => payload = p,
                Err(e) => check.problem(format!("opened payload: {e}")),
            }
        }
        if h.origin != origin || h.seq != seq {
            check.problem(format!(
                "{origin}#{seq}: stored under the wrong key (header says {}#{})",
                h.origin, h.seq
            ));
        }
        if h.prev_hash != last_hash {
            check.problem(format!(
                "{origin}#{seq}: prev_hash does not match #{last_seq}"
            ));
        }
        match payload {
            Some(p) => merge_payload(rebuilt.entry(keys::index(&p.indicator)).or_default(), &h, p),
            None => check.stubs += 1,
        }
    }
    check.origins = tails.len();
    for segment in store.db.scan_prefix([keys::LOG]) {
        segment?;
        check.segments += 1;
    }
    let heads = store.stored_heads()?;
    for (origin, head) in &heads {
        match tails.get(origin) {
            Some((seq, hash)) if *seq == head.seq && *hash == head.hash => {}
            _ => check.problem(format!(
                "{origin}: head #{} does not match the log tail",
                head.seq
            )),
        }
    }
    if heads.len() != tails.len() {
        check.problem(format!(
            "{} origins have logs but {} have heads",
            tails.len(),
            heads.len()
        ));
    }
    compare_index(store, &rebuilt, &mut check)?;
    Ok(check)
}

/// Compares the stored index with the rebuilt one, state by state, then the stored postings and
/// counters with those the rebuilt states call for; streams the stored side.
fn compare_index(
    store: &DiskStore,
    rebuilt: &BTreeMap<Vec<u8>, pb::IndicatorState>,
    check: &mut StoreCheck,
) -> Result<(), StoreError> {
    let mut differing = 0;
    let mut matched = 0;
    for item in store.index_entries() {
        let (k, v) = item?;
        check.indicators += 1;
        match rebuilt.get(&k) {
            Some(r) if *r == v => matched += 1,
            _ => differing += 1,
        }
    }
    differing += rebuilt.len() - matched;
    if differing > 0 {
        check.problem(format!(
            "index differs from the one rebuilt from the log at {differing} indicators"
        ));
    }
    // Every posting a rebuilt state calls for is stored, and there are as many stored: the
    // sets are equal (keys are distinct). Each state's postings are derived once.
    let (mut expected, mut missing) = (0usize, 0usize);
    for (k, s) in rebuilt {
        for key in postings_of(k, s) {
            expected += 1;
            if !store.db.contains_key(&key)? {
                missing += 1;
            }
        }
    }
    let mut stored = 0usize;
    for key in store.posting_keys() {
        key?;
        stored += 1;
    }
    let stray = stored.saturating_sub(expected - missing);
    if missing > 0 || stored != expected {
        check.problem(format!(
            "postings differ from those of the rebuilt index: {stored} stored ({stray} stray), \
             {expected} expected ({missing} missing)"
        ));
    }
    if let Some(problem) = crate::arrival::check(&store.db, rebuilt, store.arrivals.is_some())? {
        check.problem(problem);
    }
    let mut lengths = PrefixLengths::default();
    for s in rebuilt.values() {
        let cidr = s
            .indicator
            .as_ref()
            .filter(|i| i.r#type == IndicatorType::Cidr.to_proto() as i32);
        if let Some(Ok(cidr)) = cidr.map(|i| normalize(IndicatorType::Cidr, &i.value)) {
            lengths.record(&cidr);
        }
    }
    let mut digest = StateSum::default();
    for (k, s) in rebuilt {
        digest.add(k, &s.encode_to_vec());
    }
    let want = IndexMeta {
        count: rebuilt.len() as u64,
        lengths,
        digest,
    };
    let meta = store.stored_index_meta()?;
    // The stored prefix lengths may hold more than the rebuilt ones: a compromise cut that
    // takes a block's last record out keeps its length (a lookup probes it for nothing). None
    // may be missing: a block of a missing length would never be found.
    let mut covering = meta.lengths;
    covering.union(&want.lengths);
    let lengths_hold = covering == meta.lengths;
    if meta.count != want.count || !lengths_hold || meta.digest != want.digest {
        let mut differ = Vec::new();
        if meta.count != want.count {
            differ.push(format!(
                "it counts {} indicators, the rebuilt index {}",
                meta.count, want.count
            ));
        }
        if !lengths_hold {
            differ.push("the CIDR prefix lengths it lists leave out some held".to_string());
        }
        if meta.digest != want.digest {
            differ.push("the digest of its states differs".to_string());
        }
        check.problem(format!(
            "the index's stored counters differ from the rebuilt index: {}",
            differ.join("; ")
        ));
    }
    Ok(())
}

/// The whole-store reads `verify_store` checks: every log entry, the index, the postings and
/// the counters as stored.
impl DiskStore {
    /// Every log entry in key order, with what a sealed one opened to here: by origin, then seq.
    pub(crate) fn log_entries_opened(
        &self,
    ) -> impl Iterator<Item = Result<OpenedEntry, StoreError>> + '_ {
        self.log_entries().map(|item| {
            let (origin, seq, raw) = item?;
            let opened = opened_of(&self.db, &origin, seq, &raw)?;
            Ok((origin, seq, raw, opened))
        })
    }

    /// Every log entry in key order: by origin, then seq.
    pub(crate) fn log_entries(
        &self,
    ) -> impl Iterator<Item = Result<(OrgId, u64, pb::SignedEntry), StoreError>> + '_ {
        all_segments(&self.db).flat_map(|item| {
            let entries: Vec<_> = match item {
                Ok((origin, seg)) => seg
                    .into_entries()
                    .map(|(seq, e)| Ok((origin.clone(), seq, e)))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            entries
        })
    }

    /// The index as it stands, key order.
    pub(crate) fn index_entries(
        &self,
    ) -> impl Iterator<Item = Result<(Vec<u8>, pb::IndicatorState), StoreError>> + '_ {
        self.db.scan_prefix([keys::INDEX]).map(|kv| {
            let (k, v) = kv?;
            Ok((k.to_vec(), decode_state(&v)?))
        })
    }

    /// Every posting key, in order.
    pub(crate) fn posting_keys(&self) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_ {
        self.db
            .scan_prefix([keys::POSTING])
            .keys()
            .map(|k| Ok(k?.to_vec()))
    }

    /// The index's counters as stored.
    pub(crate) fn stored_index_meta(&self) -> Result<IndexMeta, StoreError> {
        IndexMeta::read(&self.db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_past_those_listed_are_counted() {
        let mut check = StoreCheck::default();
        for i in 0..PROBLEMS_LISTED + 5 {
            check.problem(format!("problem {i}"));
        }
        assert_eq!(check.problems.len(), PROBLEMS_LISTED);
        assert_eq!(check.problems_not_listed, 5);
        assert_eq!(
            check.problems.last().map(String::as_str),
            Some("problem 999")
        );
        assert!(!check.is_ok());
    }
}
