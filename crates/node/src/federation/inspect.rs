//! What a receiving node makes of one frame's bytes before its store, without a link, a store or
//! a clock: the same functions the link calls, composed for the fuzzer (`fuzz/`) and for tests.

use std::sync::Arc;

use intelmesh_core::evidence;
use intelmesh_core::{StaticKeys, VerifyConfig};
use intelmesh_proto::v1 as pb;
use prost::Message;

use super::asked::Asked;
use super::inbound::{screen, Screened};
use super::link::LinkError;
use super::peer_view::{read_vector, Reported};
use crate::config::Limits;
use crate::state::{check_entries, Checked};

/// What the receiver knows when a frame arrives.
pub struct InspectConfig {
    pub limits: Limits,
    pub keys: Arc<StaticKeys>,
    pub verify: VerifyConfig,
}

/// What one frame came to.
#[derive(Debug)]
pub enum Inspected {
    /// Over the gRPC message cap: tonic refuses it before decoding.
    TooLarge {
        bytes: usize,
        max: usize,
    },
    Undecodable(prost::DecodeError),
    /// A frame with no oneof set: skipped.
    Empty,
    /// The link is cut for this frame.
    Refused(LinkError),
    Hello(Reported),
    Heartbeat,
    Progress(Reported),
    /// A payload ask, of which `kept` asks were kept (bounded whatever the peer sends).
    Want {
        kept: usize,
    },
    Evidence {
        good: usize,
        unverifiable: usize,
        invalid: usize,
    },
    Entries(Checked),
    /// The relays a `Relays` frame named, as kept.
    Relays(Vec<intelmesh_core::OrgId>),
}

/// Decodes and checks one frame as the receive loop would.
pub fn inspect_frame(bytes: &[u8], cfg: &InspectConfig) -> Inspected {
    let max = cfg.limits.max_message_bytes;
    if bytes.len() > max {
        return Inspected::TooLarge {
            bytes: bytes.len(),
            max,
        };
    }
    let frame = match pb::SyncFrame::decode(bytes) {
        Ok(pb::SyncFrame { frame: Some(f) }) => f,
        Ok(pb::SyncFrame { frame: None }) => return Inspected::Empty,
        Err(e) => return Inspected::Undecodable(e),
    };
    let keys = cfg.keys.as_ref();
    match screen(frame, cfg.limits.max_batch_entries) {
        Err(e) => Inspected::Refused(e),
        Ok(Screened::Hello(h)) => Inspected::Hello(read_vector(h.vector, keys)),
        Ok(Screened::Heartbeat) => Inspected::Heartbeat,
        Ok(Screened::Progress(p)) => Inspected::Progress(read_vector(p.vector, keys)),
        Ok(Screened::Want(w)) => {
            let asked = Asked::default();
            asked.add(w, keys);
            Inspected::Want { kept: asked.len() }
        }
        Ok(Screened::Evidence(e)) => {
            let (mut good, mut unverifiable, mut invalid) = (0, 0, 0);
            for proof in e.proofs {
                match evidence::check(proof, keys) {
                    Ok(_) => good += 1,
                    Err(e) if e.is_unverifiable_yet() => unverifiable += 1,
                    Err(_) => invalid += 1,
                }
            }
            Inspected::Evidence {
                good,
                unverifiable,
                invalid,
            }
        }
        Ok(Screened::Relays(r)) => Inspected::Relays(r),
        Ok(Screened::Entries(entries)) => {
            Inspected::Entries(check_entries(entries, Arc::clone(&cfg.keys), &cfg.verify))
        }
    }
}
