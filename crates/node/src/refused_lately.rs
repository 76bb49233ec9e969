//! Entries refused lately for what their origin signed past its key's end: a peer replaying
//! one (a member holding a thief's entries, or the thief itself) costs a header decode, not a
//! signature check and a WARN line each time. Only this refusal is remembered: it depends on
//! the origin, the seq and the key alone, under the key list in force, and the list's
//! replacement forgets every one and restarts the links (a reinstatement may reopen the key,
//! and the peers that sent them took the refusal as final).

use intelmesh_core::verify::{KeyLookup, KeyRegistry};
use intelmesh_core::{KeyId, OrgId, VerifyError};
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::rotation::lock;
use crate::seen_lately::SeenLately;
use crate::state::NodeState;

/// Which entry a refusal named: its origin, seq and signing key.
pub(crate) type Refused = (OrgId, u64, KeyId);

impl NodeState {
    /// `raws` without the entries refused lately whose key the list in force still does not
    /// let sign their seq, and those entries' refusals, made again without a signature check.
    pub(crate) fn without_refused_lately(
        &self,
        raws: Vec<pb::SignedEntry>,
    ) -> (Vec<VerifyError>, Vec<pb::SignedEntry>) {
        let lately = lock(&self.refused_lately);
        if lately.is_empty() {
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
                lately.insert(&(origin.clone(), *seq, *key_id));
            }
        }
    }

    /// Forgets every refusal remembered: a new key list judges them afresh. Whether any was.
    pub(crate) fn forget_refused(&self) -> bool {
        let mut lately = lock(&self.refused_lately);
        let any = !lately.is_empty();
        *lately = SeenLately::default();
        any
    }
}

/// The refusal of `raw` made again, if it was refused lately and `keys` still refuse it.
fn refused_again(
    lately: &SeenLately<Refused>,
    keys: &dyn KeyRegistry,
    raw: &pb::SignedEntry,
) -> Option<VerifyError> {
    let header = pb::EntryHeader::decode(raw.header.as_ref()).ok()?;
    let origin = OrgId::parse(&header.origin).ok()?;
    let key_id = KeyId(<[u8; 8]>::try_from(header.key_id.as_slice()).ok()?);
    let seq = header.seq;
    if !lately.contains(&(origin.clone(), seq, key_id)) {
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
