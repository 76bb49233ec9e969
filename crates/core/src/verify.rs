//! Verification of received entries: sizes, well-formedness, payload binding, clock skew and
//! ed25519 signatures, one entry at a time or in batches.
//!
//! An entry that passes is a [`VerifiedEntry`]; the store only accepts those, so nothing
//! unverified can reach the log. Chain rules (gaps, forks) need the stored heads and live in
//! [`crate::chain`].

use std::collections::{HashMap, HashSet};

use ed25519_dalek::{Signature, VerifyingKey};
use intelmesh_proto::v1 as pb;
use prost::Message;
use rayon::prelude::*;

use crate::batch_tree;
use crate::entry::{
    header_hash, payload_commitment, signed_message, Distribution, Hash, Header, KeyId, OrgId, Tlp,
    MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES, ZERO_HASH,
};
use crate::payload::is_bucket;
use crate::signature;

// The keys, the payload's content and the errors live in their own modules; their paths under
// `verify` stay.
pub use crate::content::{decode_content, decode_payload, Content, Control, Payload};
pub use crate::key_registry::{KeyLookup, KeyRegistry, SeqRange, StaticKeys};
pub use crate::verify_error::{HeaderDefect, PayloadDefect, SignatureDefect, VerifyError};

/// What the receiver allows; `now_unix_ms` is passed in so verification stays pure.
#[derive(Clone, Copy, Debug)]
pub struct VerifyConfig {
    pub now_unix_ms: i64,
    /// How far in the future `issued_at` may be before the entry is refused.
    pub max_clock_skew_ms: i64,
}

impl VerifyConfig {
    pub const DEFAULT_SKEW_MS: i64 = 5 * 60 * 1000;

    pub fn at(now_unix_ms: i64) -> VerifyConfig {
        VerifyConfig {
            now_unix_ms,
            max_clock_skew_ms: Self::DEFAULT_SKEW_MS,
        }
    }
}

/// An entry whose header, payload binding and signature have been checked.
#[derive(Clone, Debug)]
pub struct VerifiedEntry {
    raw: pb::SignedEntry,
    header: Header,
    hash: Hash,
    payload: Option<Payload>,
    control: Option<Control>,
    key: VerifyingKey,
    /// The padded payload bytes a sealed payload opened to, at a reader.
    opened: Option<Vec<u8>>,
}

impl VerifiedEntry {
    /// The same entry holding its own bytes, to keep beyond the frame it came in
    /// ([`pb::SignedEntry::detached`]).
    pub fn detached(mut self) -> Self {
        self.raw = self.raw.detached();
        self
    }

    /// The entry exactly as received, to store and forward byte for byte.
    pub fn raw(&self) -> &pb::SignedEntry {
        &self.raw
    }
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// [`header_hash`] of this entry.
    pub fn hash(&self) -> &Hash {
        &self.hash
    }
    /// The indicator payload; `None` for a withheld stub, for control entries and for a
    /// sealed payload this node has not opened.
    pub fn payload(&self) -> Option<&Payload> {
        self.payload.as_ref()
    }
    /// The roster version or checkpoint a control entry carries.
    pub fn control(&self) -> Option<&Control> {
        self.control.as_ref()
    }
    /// Whether the entry travels with its payload (of any kind): not a stub.
    pub fn has_payload(&self) -> bool {
        self.raw.payload.is_some()
    }
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }
    /// Whether the payload is sealed to its readers (the header says so).
    pub fn is_sealed(&self) -> bool {
        self.header.sealed
    }
    /// The padded payload bytes a sealed payload opened to, once opened by a reader: what
    /// the store keeps beside the envelope, so the index can be rebuilt without keys.
    pub fn opened(&self) -> Option<&[u8]> {
        self.opened.as_deref()
    }
    pub(crate) fn set_opened(&mut self, bytes: Vec<u8>, payload: Payload) {
        self.opened = Some(bytes);
        self.payload = Some(payload);
    }
    pub fn into_raw(self) -> pb::SignedEntry {
        self.raw
    }
    /// Entry, header, header hash, payload and key, for consumers that take them apart.
    pub fn into_parts(self) -> (pb::SignedEntry, Header, Hash, Option<Payload>, VerifyingKey) {
        (self.raw, self.header, self.hash, self.payload, self.key)
    }
}

/// Checks everything but the signature and returns the entry with the message to verify.
struct Prechecked {
    raw: pb::SignedEntry,
    header: Header,
    hash: Hash,
    content: Option<Content>,
    key: VerifyingKey,
    signature: Signature,
    /// What the signature must be of: the header's message, or its batch's root.
    message: Vec<u8>,
    /// The root of the entry's signed batch, if it is signed as one.
    root: Option<Hash>,
}

/// Whether `header` is issued past the clock and skew `cfg` allows.
fn from_future(header: &Header, cfg: &VerifyConfig) -> bool {
    header.issued_at_unix_ms > cfg.now_unix_ms.saturating_add(cfg.max_clock_skew_ms)
}

fn future(origin: &OrgId, seq: u64, header: &Header, cfg: &VerifyConfig) -> VerifyError {
    VerifyError::FromFuture {
        origin: origin.clone(),
        seq,
        issued_at_unix_ms: header.issued_at_unix_ms,
        now_unix_ms: cfg.now_unix_ms,
        max_skew_ms: cfg.max_clock_skew_ms,
    }
}

/// The signatures checked alone while prechecking one batch: an entry refused for its key's
/// range or its date still has its signature checked (to tell the origin's fault from a
/// forgery), and the entries of an origin's signed batch share one. Kept per batch, so a peer
/// sending a thousand such entries under one batch signature costs one check, not a thousand.
#[derive(Default)]
struct CheckedAlone(HashMap<SignedBy, bool>);

/// A message, the signature over it and the key it was checked against.
type SignedBy = (Vec<u8>, [u8; 64], [u8; 32]);

impl CheckedAlone {
    fn verify(&mut self, key: &VerifyingKey, message: &[u8], sig: &Signature) -> bool {
        *(self.0)
            .entry((message.to_vec(), sig.to_bytes(), key.to_bytes()))
            .or_insert_with(|| signature::verify_one(key, message, sig))
    }
}

fn precheck(
    raw: pb::SignedEntry,
    keys: &dyn KeyRegistry,
    cfg: &VerifyConfig,
    alone: &mut CheckedAlone,
) -> Result<Prechecked, VerifyError> {
    if raw.header.len() > MAX_HEADER_BYTES {
        return Err(VerifyError::HeaderTooLarge {
            len: raw.header.len(),
            max: MAX_HEADER_BYTES,
        });
    }
    let wire =
        pb::EntryHeader::decode(raw.header.as_ref()).map_err(|e| VerifyError::MalformedHeader {
            reason: e.to_string(),
        })?;
    let header = check_header(&wire)?;
    let (origin, seq) = (&header.origin, header.seq);
    let field_len = raw.signature.len();
    let signature = raw
        .signature
        .get(..batch_tree::SIGNATURE_BYTES)
        .filter(|_| field_len <= batch_tree::SIGNATURE_BYTES + batch_tree::MAX_PATH_BYTES)
        .and_then(|bytes| Signature::from_slice(bytes).ok())
        .ok_or_else(|| VerifyError::InvalidHeader {
            origin: origin.to_string(),
            seq,
            defect: HeaderDefect::SignatureLength(field_len),
        })?;
    let hash = header_hash(&raw.header);
    let bad_path = |defect| VerifyError::MalformedBatchPath {
        origin: origin.clone(),
        seq,
        defect,
    };
    let root = match batch_tree::path_in(&raw.signature).map_err(bad_path)? {
        None => None,
        Some(path) => Some(batch_tree::root_of(&hash, &path).map_err(bad_path)?),
    };
    let message = match &root {
        None => signed_message(&raw.header),
        Some(root) => batch_tree::signed_root(root),
    };
    let content = match &raw.payload {
        None => None,
        Some(bytes) => Some(check_payload(&header, bytes)?),
    };
    if let Some(content) = &content {
        check_content_origin(&header, content, keys.is_authority(origin))?;
    }
    let key = match keys.key(origin, &header.key_id, seq) {
        KeyLookup::Valid(key) => key,
        // Dated ahead with no key to check it by: refused for its date as it always was, so
        // the link restarts and the peer sends it again, rather than kept waiting for a key
        // and refused for its date then, when no link would send it again.
        KeyLookup::Unknown if from_future(&header, cfg) => {
            return Err(future(origin, seq, &header, cfg))
        }
        KeyLookup::Unknown => {
            return Err(VerifyError::UnknownKey {
                origin: origin.clone(),
                seq,
                key_id: header.key_id,
            })
        }
        KeyLookup::OutOfRange {
            first_seq,
            last_seq,
            key,
        } => {
            // Refused either way; but only an entry the origin did sign is the origin's fault
            // (the link stays). Anyone can name an ended key: a forgery is the sender's.
            if !alone.verify(&key, &message, &signature) {
                return Err(VerifyError::BadSignature {
                    origin: origin.clone(),
                    seq,
                });
            }
            return Err(VerifyError::KeyNotValidAtSeq {
                origin: origin.clone(),
                seq,
                key_id: header.key_id,
                first_seq,
                last_seq,
            });
        }
    };
    signature::check_components(&signature, &key).map_err(|defect| {
        VerifyError::MalformedSignature {
            origin: origin.clone(),
            seq,
            defect,
        }
    })?;
    if from_future(&header, cfg) {
        // Refused either way; but only an entry the origin did sign tells of its clock (the
        // link stays). Anyone can date an entry: a forgery is the sender's.
        if !alone.verify(&key, &message, &signature) {
            return Err(VerifyError::BadSignature {
                origin: origin.clone(),
                seq,
            });
        }
        return Err(future(origin, seq, &header, cfg));
    }
    Ok(Prechecked {
        raw,
        header,
        hash,
        content,
        key,
        signature,
        message,
        root,
    })
}

/// Roster versions travel only in the authority's log and it carries nothing else; control
/// entries are public (every member must see the same roster and checkpoints).
fn check_content_origin(
    header: &Header,
    content: &Content,
    from_authority: bool,
) -> Result<(), VerifyError> {
    let defect = match content {
        Content::Control(_) if header.distribution.tlp != Tlp::Clear => {
            Some(PayloadDefect::RestrictedControl)
        }
        Content::Control(Control::Roster(_)) if !from_authority => {
            Some(PayloadDefect::RosterOutsideAuthorityLog)
        }
        Content::Control(Control::Checkpoint(_)) | Content::Indicator(_) | Content::Sealed
            if from_authority =>
        {
            Some(PayloadDefect::AuthorityLogNotRoster)
        }
        _ => None,
    };
    match defect {
        None => Ok(()),
        Some(defect) => Err(VerifyError::InvalidPayload {
            origin: header.origin.clone(),
            seq: header.seq,
            defect,
        }),
    }
}

fn check_header(wire: &pb::EntryHeader) -> Result<Header, VerifyError> {
    let fail = |defect| VerifyError::InvalidHeader {
        origin: wire.origin.chars().take(80).collect(),
        seq: wire.seq,
        defect,
    };
    let origin = OrgId::parse(&wire.origin).map_err(|e| fail(HeaderDefect::Origin(e)))?;
    if wire.seq == 0 {
        return Err(fail(HeaderDefect::ZeroSeq));
    }
    let prev_hash: Hash = wire
        .prev_hash
        .as_slice()
        .try_into()
        .map_err(|_| fail(HeaderDefect::PrevHashLength(wire.prev_hash.len())))?;
    if wire.seq == 1 && prev_hash != ZERO_HASH {
        return Err(fail(HeaderDefect::FirstEntryHasPrev));
    }
    let payload_commitment: Hash = wire.payload_commitment.as_slice().try_into().map_err(|_| {
        fail(HeaderDefect::PayloadCommitmentLength(
            wire.payload_commitment.len(),
        ))
    })?;
    let key_id: [u8; 8] = wire
        .key_id
        .as_slice()
        .try_into()
        .map_err(|_| fail(HeaderDefect::KeyIdLength(wire.key_id.len())))?;
    if wire.payload_len > MAX_PAYLOAD_BYTES as u64 {
        return Err(fail(HeaderDefect::PayloadLenOverCap(wire.payload_len)));
    }
    let dist = wire.distribution.as_ref();
    let tlp = dist
        .and_then(|d| Tlp::from_proto(d.tlp))
        .ok_or_else(|| fail(HeaderDefect::Tlp))?;
    let named = dist.map_or(0, |d| d.recipients.len());
    if named > crate::entry::MAX_RECIPIENTS {
        return Err(fail(HeaderDefect::TooManyRecipients(named)));
    }
    let recipients: Vec<OrgId> = dist
        .map(|d| d.recipients.iter().map(|r| OrgId::parse(r)).collect())
        .transpose()
        .map_err(|e| fail(HeaderDefect::Recipient(e)))?
        .unwrap_or_default();
    if wire.sealed && !tlp.is_restricted() {
        return Err(fail(HeaderDefect::SealedUnrestricted));
    }
    // What no node's API signs is refused from the network too: a relay must not spread
    // what the origin's own node would have refused.
    if !recipients.is_empty() && !tlp.is_restricted() {
        return Err(fail(HeaderDefect::RecipientsUnrestricted));
    }
    if wire.issued_at_unix_ms < 0 {
        return Err(fail(HeaderDefect::IssuedBeforeEpoch(
            wire.issued_at_unix_ms,
        )));
    }
    // A sealed payload's length is the envelope's; the padded payload inside is checked
    // by the envelope's shape.
    if tlp.is_restricted() && !wire.sealed && !is_bucket(wire.payload_len) {
        return Err(fail(HeaderDefect::UnpaddedRestricted(wire.payload_len)));
    }
    Ok(Header {
        origin,
        seq: wire.seq,
        prev_hash,
        payload_commitment,
        payload_len: wire.payload_len,
        issued_at_unix_ms: wire.issued_at_unix_ms,
        key_id: KeyId(key_id),
        distribution: Distribution { tlp, recipients },
        sealed: wire.sealed,
    })
}

fn check_payload(header: &Header, bytes: &[u8]) -> Result<Content, VerifyError> {
    let (origin, seq) = (header.origin.clone(), header.seq);
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(VerifyError::PayloadTooLarge {
            origin,
            seq,
            len: bytes.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    if bytes.len() as u64 != header.payload_len {
        return Err(VerifyError::PayloadLengthMismatch {
            origin,
            seq,
            declared: header.payload_len,
            actual: bytes.len() as u64,
        });
    }
    if payload_commitment(bytes) != header.payload_commitment {
        return Err(VerifyError::PayloadCommitmentMismatch { origin, seq });
    }
    if header.sealed {
        return crate::sealed::check_envelope(&origin, &header.distribution.recipients, bytes)
            .map(|_| Content::Sealed)
            .map_err(|defect| VerifyError::InvalidPayload {
                origin,
                seq,
                defect: PayloadDefect::Envelope(defect),
            });
    }
    decode_content(bytes).map_err(|defect| VerifyError::InvalidPayload {
        origin,
        seq,
        defect,
    })
}

fn finish(p: Prechecked) -> VerifiedEntry {
    let (payload, control) = match p.content {
        None => (None, None),
        Some(Content::Indicator(payload)) => (Some(payload), None),
        Some(Content::Control(control)) => (None, Some(control)),
        Some(Content::Sealed) => (None, None),
    };
    VerifiedEntry {
        hash: p.hash,
        raw: p.raw,
        header: p.header,
        payload,
        control,
        key: p.key,
        opened: None,
    }
}

fn verify_one(p: &Prechecked) -> Result<(), VerifyError> {
    if signature::verify_one(&p.key, &p.message, &p.signature) {
        Ok(())
    } else {
        Err(bad_signature(p))
    }
}

fn bad_signature(p: &Prechecked) -> VerifyError {
    VerifyError::BadSignature {
        origin: p.header.origin.clone(),
        seq: p.header.seq,
    }
}

/// The signature check the entries of one signed batch share: key, signature and root. An
/// entry signed alone has its own (`None`).
type BatchCheck = ([u8; 32], [u8; 64], Hash);

fn batch_check(p: &Prechecked) -> Option<BatchCheck> {
    p.root
        .map(|root| (p.key.to_bytes(), p.signature.to_bytes(), root))
}

/// Verifies one entry.
pub fn verify_entry(
    raw: pb::SignedEntry,
    keys: &dyn KeyRegistry,
    cfg: &VerifyConfig,
) -> Result<VerifiedEntry, VerifyError> {
    let p = precheck(raw, keys, cfg, &mut CheckedAlone::default())?;
    verify_one(&p)?;
    Ok(finish(p))
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

/// Verifies a batch on the calling thread, with one ed25519 batch check for all signatures
/// (each distinct one once: the entries of an origin's signed batch share one). Results come
/// back in input order. If the batch check fails, each distinct signature is checked alone so
/// only the entries it covers are refused. Accepts exactly what [`verify_entry`] accepts,
/// whatever else is in the batch (see `signature`).
pub fn verify_batch(
    raws: Vec<pb::SignedEntry>,
    keys: &dyn KeyRegistry,
    cfg: &VerifyConfig,
) -> Vec<Result<VerifiedEntry, VerifyError>> {
    let mut alone = CheckedAlone::default();
    let checked: Vec<Result<Prechecked, VerifyError>> = (raws.into_iter())
        .map(|r| precheck(r, keys, cfg, &mut alone))
        .collect();
    let mut batch = signature::Batch::default();
    let mut queued: HashSet<BatchCheck> = HashSet::new();
    for p in checked.iter().filter_map(|c| c.as_ref().ok()) {
        if batch_check(p).is_none_or(|check| queued.insert(check)) {
            batch.queue(&p.key, &p.message, &p.signature);
        }
    }
    let all_good = batch.verify();
    let mut verdicts: HashMap<BatchCheck, bool> = HashMap::new();
    checked
        .into_iter()
        .map(|c| {
            let p = c?;
            if !all_good {
                let good = match batch_check(&p) {
                    None => verify_one(&p).is_ok(),
                    Some(check) => *verdicts
                        .entry(check)
                        .or_insert_with(|| verify_one(&p).is_ok()),
                };
                if !good {
                    return Err(bad_signature(&p));
                }
            }
            Ok(finish(p))
        })
        .collect()
}

/// [`verify_batch`] spread over all cores in chunks of `chunk` entries.
pub fn verify_batch_parallel(
    raws: Vec<pb::SignedEntry>,
    keys: &dyn KeyRegistry,
    cfg: &VerifyConfig,
    chunk: usize,
) -> Vec<Result<VerifiedEntry, VerifyError>> {
    let chunk = chunk.max(1);
    let count = raws.len();
    if count <= chunk {
        // One chunk: handing it to the pool and waiting costs two thread switches, more
        // than checking a few signatures (a link trickling entries sends one or two a frame).
        return verify_batch(raws, keys, cfg);
    }
    let mut chunks: Vec<Vec<pb::SignedEntry>> = Vec::with_capacity(count / chunk + 1);
    let mut it = raws.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(chunk).collect());
    }
    let verified: Vec<Vec<_>> = chunks
        .into_par_iter()
        .map(|c| verify_batch(c, keys, cfg))
        .collect();
    // Sized up front: results are a few hundred bytes each, and growing a vector of thousands
    // of them copies and page-faults more than the rest of the reassembly costs.
    let mut out = Vec::with_capacity(count);
    for v in verified {
        out.extend(v);
    }
    out
}
