//! Reading the roster log in the hub's store: the federation id's log, where seq N carries
//! version N exactly as it was signed.

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use prost::Message;

use super::AdminError;

/// Version `version` of the roster log of `federation`, if this store holds it.
pub fn stored_version(
    store: &dyn Store,
    federation: &OrgId,
    version: u64,
) -> Result<Option<pb::SignedRoster>, AdminError> {
    Ok(crate::roster_follow::stored_version(
        store, federation, version,
    )?)
}

/// The decoded document of a stored version.
pub fn document(signed: &pb::SignedRoster) -> Result<pb::RosterDocument, AdminError> {
    pb::RosterDocument::decode(signed.document.as_slice())
        .map_err(|e| AdminError::Internal(format!("a stored roster document does not decode: {e}")))
}

/// Every stored version from `from` (at least 1) to `to`, in order; stops at the first gap.
pub fn versions(
    store: &dyn Store,
    federation: &OrgId,
    from: u64,
    to: u64,
) -> Result<Vec<pb::SignedRoster>, AdminError> {
    let mut out = Vec::new();
    for v in from.max(1)..=to {
        match stored_version(store, federation, v)? {
            Some(signed) => out.push(signed),
            None => break,
        }
    }
    Ok(out)
}
