//! Entries taken without checking their signatures again: those this node reads back from its
//! own store, and those this process has just signed.
//!
//! Either is checked as on receipt in every other way (header, payload, sizes), so nothing is
//! stored or rebuilt that a peer's [`crate::verify`] would refuse for its content. What is
//! skipped is the signature check alone, for a reason each function states.

use ed25519_dalek::VerifyingKey;
use intelmesh_proto::v1 as pb;
use prost::Message;
use rayon::prelude::*;

use crate::entry::Header;
use crate::signature::ComponentChecks;
use crate::verify::{
    check_header, check_payload, decode_payload, finish, precheck, Content, KeyRegistry, Payload,
    SignatureScope, VerifiedEntry, VerifyConfig, VerifyError,
};

/// Entries one core takes at a time in [`accept_signed_here`]: enough that handing them over
/// costs little beside checking them.
const ACCEPTED_TOGETHER: usize = 64;

/// Entries this process has just signed with `signed_with` ([`crate::sign::Signer`]), as
/// verified entries for the store, in input order. Each is checked as [`crate::verify`] checks
/// a received one (header, payload, clock, the key the registry holds for its origin and seq,
/// which must be `signed_with`), except for its signature and batch path: both were made here
/// from these very headers, and checking them again took a fifth of a publication's time
/// under the node's publish lock. The signer is tested against the verifier in this crate's
/// tests (`batch_signatures`), which is where a fault in either shows.
pub fn accept_signed_here(
    raws: Vec<pb::SignedEntry>,
    signed_with: &VerifyingKey,
    keys: &dyn KeyRegistry,
    cfg: &VerifyConfig,
) -> Vec<Result<VerifiedEntry, VerifyError>> {
    let accept = |raw: pb::SignedEntry| {
        let scope = (SignatureScope::SignedHere, &mut ComponentChecks::default());
        let p = precheck(raw, keys, cfg, scope)?;
        if p.key() != signed_with {
            // Signed with another key than the one in force for its seq: a peer would find
            // its signature bad.
            let header = finish(p).header().clone();
            return Err(VerifyError::BadSignature {
                origin: header.origin,
                seq: header.seq,
            });
        }
        Ok(finish(p))
    };
    raws.into_par_iter()
        .with_min_len(ACCEPTED_TOGETHER)
        .map(accept)
        .collect()
}

/// Reads back an entry this node verified before it stored it: the header and payload are
/// decoded and checked as on receipt, the signature is not checked again (`verify-store` does
/// that). Used to rebuild derived state from the log. The payload is the indicator payload;
/// `None` for stubs and control entries.
pub fn read_stored(raw: &pb::SignedEntry) -> Result<(Header, Option<Payload>), VerifyError> {
    read_stored_opened(raw, None)
}

/// [`read_stored`] of an entry whose sealed payload this node opened when it took it in:
/// `opened` is what it opened to (kept by the store beside the envelope), decoded and checked
/// as any payload. Without it a sealed entry reads as a stub does.
pub fn read_stored_opened(
    raw: &pb::SignedEntry,
    opened: Option<&[u8]>,
) -> Result<(Header, Option<Payload>), VerifyError> {
    let wire =
        pb::EntryHeader::decode(raw.header.as_ref()).map_err(|e| VerifyError::MalformedHeader {
            reason: e.to_string(),
        })?;
    let header = check_header(&wire)?;
    let payload = match (&raw.payload, opened) {
        (None, _) => None,
        (Some(bytes), opened) => match (check_payload(&header, bytes)?, opened) {
            (Content::Sealed, Some(inner)) => {
                crate::opened::check_opened(inner).map_err(|defect| {
                    VerifyError::InvalidPayload {
                        origin: header.origin.clone(),
                        seq: header.seq,
                        defect,
                    }
                })?;
                decode_payload(inner).map_err(|defect| VerifyError::InvalidPayload {
                    origin: header.origin.clone(),
                    seq: header.seq,
                    defect,
                })?
            }
            (content, _) => content.indicator(),
        },
    };
    Ok((header, payload))
}
