//! Entries refused lately for what their origin signed past its key's end: a peer replaying
//! one (a member holding a thief's entries, or the thief itself) costs a header decode, not a
//! signature check and a WARN line each time. Only this refusal is remembered: it depends on
//! the origin, the seq and the key alone, under the key list in force, and the list's
//! replacement forgets every one, restarting the links if it lets the key of one of them sign
//! its entry (a reinstatement may reopen the key, and the peers that sent them took the
//! refusal as final).

use intelmesh_core::verify::{KeyLookup, KeyRegistry};
use intelmesh_core::{KeyId, OrgId, VerifyError};
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::rotation::lock;
use crate::seen_lately::SeenLately;
use crate::state::NodeState;

/// Which entry a refusal named: its origin, seq and signing key.
pub(crate) type Refused = (OrgId, u64, KeyId);

/// The refusals remembered, and the latest of them whole, to tell whether a new key list
/// lets their key sign them.
#[derive(Default)]
pub(crate) struct RefusedLately {
    seen: SeenLately<Refused>,
    latest: std::collections::VecDeque<Refused>,
}

impl RefusedLately {
    /// Refusals kept whole; past these, a new key list reopening an older one restarts
    /// nothing (its entry comes with the next restart).
    const LATEST: usize = 1024;

    fn insert(&mut self, refused: Refused) {
        if self.seen.contains(&refused) {
            return;
        }
        self.seen.insert(&refused);
        if self.latest.len() == Self::LATEST {
            self.latest.pop_front();
        }
        self.latest.push_back(refused);
    }

    /// Whether `keys` let the key of a refusal kept whole sign its entry.
    fn reopened_by(&self, keys: &dyn KeyRegistry) -> bool {
        (self.latest.iter()).any(|(origin, seq, key_id)| {
            matches!(keys.key(origin, key_id, *seq), KeyLookup::Valid(_))
        })
    }
}

impl NodeState {
    /// `raws` without the entries refused lately whose key the list in force still does not
    /// let sign their seq, and those entries' refusals, made again without a signature check.
    pub(crate) fn without_refused_lately(
        &self,
        raws: Vec<pb::SignedEntry>,
    ) -> (Vec<VerifyError>, Vec<pb::SignedEntry>) {
        let lately = lock(&self.refused_lately);
        if lately.seen.is_empty() {
            return (Vec::new(), raws);
        }
        let keys = self.keys();
        let mut again = Vec::new();
        let mut rest = Vec::with_capacity(raws.len());
        for raw in raws {
            match refused_again(&lately, keys.as_ref(), &raw) {
                Some(e) => again.push(e),
                None => rest.push(raw),
            }
        }
        (again, rest)
    }

    /// Notes the refusals among `refused` that are remembered (see the module doc).
    pub(crate) fn remember_refused(&self, refused: &[VerifyError]) {
        let mut lately = None;
        for e in refused {
            if let VerifyError::KeyNotValidAtSeq {
                origin,
                seq,
                key_id,
                ..
            } = e
            {
                let lately = lately.get_or_insert_with(|| lock(&self.refused_lately));
                lately.insert((origin.clone(), *seq, *key_id));
            }
        }
    }

    /// Forgets every refusal remembered: `keys`, the new key list, judges them afresh.
    /// Whether it lets the key of one of them sign its entry (its peer took the refusal as
    /// final, and sends it again only after a restart).
    pub(crate) fn forget_refused(&self, keys: &dyn KeyRegistry) -> bool {
        let mut lately = lock(&self.refused_lately);
        let reopened = lately.reopened_by(keys);
        *lately = RefusedLately::default();
        reopened
    }
}

/// The refusal of `raw` made again, if it was refused lately and `keys` still refuse it.
fn refused_again(
    lately: &RefusedLately,
    keys: &dyn KeyRegistry,
    raw: &pb::SignedEntry,
) -> Option<VerifyError> {
    let header = pb::EntryHeader::decode(raw.header.as_ref()).ok()?;
    let origin = OrgId::parse(&header.origin).ok()?;
    let key_id = KeyId(<[u8; 8]>::try_from(header.key_id.as_slice()).ok()?);
    let seq = header.seq;
    if !lately.seen.contains(&(origin.clone(), seq, key_id)) {
        return None;
    }
    match keys.key(&origin, &key_id, seq) {
        KeyLookup::OutOfRange {
            first_seq,
            last_seq,
            ..
        } => Some(VerifyError::KeyNotValidAtSeq {
            origin,
            seq,
            key_id,
            first_seq,
            last_seq,
        }),
        KeyLookup::Valid(_) | KeyLookup::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intelmesh_core::{SeqRange, StaticKeys};

    #[test]
    fn a_new_list_reopens_a_refusal_only_when_it_lets_the_key_sign_the_entry() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let origin = OrgId::parse("AU-AFP").unwrap();
        let list = |last: Option<u64>| {
            let mut keys = StaticKeys::default();
            keys.insert_range(origin.clone(), key, SeqRange { first: 1, last });
            keys
        };
        let mut lately = RefusedLately::default();
        lately.insert((origin.clone(), 12, KeyId::of(&key)));
        assert!(
            !lately.reopened_by(&list(Some(10))),
            "still past the key's end"
        );
        assert!(
            !lately.reopened_by(&StaticKeys::default()),
            "the key unknown"
        );
        assert!(lately.reopened_by(&list(Some(20))), "the end moved past it");
        assert!(lately.reopened_by(&list(None)), "the key open again");
        // Only the latest are kept whole.
        for seq in 100..100 + RefusedLately::LATEST as u64 {
            lately.insert((origin.clone(), seq, KeyId::of(&key)));
        }
        assert!(!lately.reopened_by(&list(Some(20))));
        assert!(lately.seen.contains(&(origin.clone(), 12, KeyId::of(&key))));
    }
}
