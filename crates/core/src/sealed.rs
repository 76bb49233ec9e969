//! Payloads sealed to their readers: members' encryption keys, and the HPKE envelope that lets a
//! relay carry an AMBER+STRICT or RED payload it cannot read.
//!
//! The origin pads the payload as for any restricted entry ([`crate::payload::seal`]), encrypts
//! it once with a fresh content key (ChaCha20-Poly1305), and gives the content key to each
//! reader (itself and every recipient) wrapped under a key that reader shares with it through
//! one HPKE encapsulation (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, the
//! export-only AEAD: the wrap key is the context's exported secret). The header commits to the
//! envelope bytes, so every node still verifies the chain and the envelope's shape, while only a
//! reader learns the payload.
//!
//! One encapsulation per reader serves a whole publication (every entry one call of
//! [`seal_batch`] seals): each envelope carries it, so each opens alone, and a reader
//! decapsulates once per publication ([`Sessions`] keeps what it derived), not once per entry.
//! An X25519 operation costs as much as everything else the receiving path does for an entry.
//!
//! Two things no AEAD gives by itself are added: the envelope commits to the content key (a
//! hash of it), so a dishonest origin cannot make one ciphertext open to two different payloads
//! for two recipients; and the origin is bound into the HPKE info, the wraps' and the content's
//! associated data, so an envelope copied into another origin's entry does not open.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::ChaCha20Poly1305;
use hpke::{
    aead::ExportOnlyAead, kdf::HkdfSha256, kem::X25519HkdfSha256, Deserializable, OpModeR, OpModeS,
    Serializable,
};
use intelmesh_proto::v1 as pb;
use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::entry::OrgId;
use crate::payload::is_bucket;

/// The one suite: HPKE with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and the export-only AEAD
/// for the wrap keys; ChaCha20-Poly1305 for the wraps and the content.
pub const SUITE: u32 = 1;
/// The largest padded payload that may be sealed: the envelope around it (a wrap per reader)
/// must stay within the entry's 64 KiB payload cap.
pub const MAX_SEALED_PLAINTEXT: usize = 32 * 1024;
/// Readers of one envelope at most (the origin and its recipients); a header of 4 KiB cannot
/// name more recipients than this anyway.
pub const MAX_READERS: usize = 128;

/// Sessions a reader keeps at most (see [`Sessions`]); peers choose how many there are.
pub const MAX_SESSIONS: usize = 4096;

const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// A wrap: its nonce, then the content key sealed under the session's wrap key.
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;
const INFO_CONTEXT: &[u8] = b"intelmesh/v1 payload-key\0";
const EXPORT_CONTEXT: &[u8] = b"intelmesh/v1 wrap-key";
const WRAP_CONTEXT: &[u8] = b"intelmesh/v1 wrapped-key\0";
const AAD_CONTEXT: &[u8] = b"intelmesh/v1 sealed-payload\0";
const COMMIT_CONTEXT: &[u8] = b"intelmesh/v1 content-key\0";

type Kem = X25519HkdfSha256;

/// Which encryption key of a member: the first 8 bytes of SHA-256 of its public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EncKeyId(pub [u8; 8]);

impl fmt::Display for EncKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A member's X25519 encryption public key, as the roster publishes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EncryptionPublic {
    bytes: [u8; 32],
}

impl fmt::Debug for EncryptionPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionPublic({})", self.id())
    }
}

/// Why bytes are not a usable encryption key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("an encryption key is 32 bytes, got {0}")]
    Length(usize),
    /// A point of small order: every shared secret with it is known in advance.
    #[error("the encryption key is a point of small order")]
    SmallOrder,
    #[error("an encryption key file holds 64 hex digits")]
    NotHex,
}

impl EncryptionPublic {
    /// Reads a public key, refusing points of small order (X25519 would give a shared secret
    /// anyone can compute).
    pub fn from_bytes(bytes: &[u8]) -> Result<EncryptionPublic, KeyError> {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        let probe = curve25519_dalek::montgomery::MontgomeryPoint(bytes).mul_clamped([7; 32]);
        if probe.0 == [0; 32] {
            return Err(KeyError::SmallOrder);
        }
        Ok(EncryptionPublic { bytes })
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub fn id(&self) -> EncKeyId {
        let digest = Sha256::digest(self.bytes);
        let mut id = [0; 8];
        id.copy_from_slice(&digest[..8]);
        EncKeyId(id)
    }

    fn hpke(&self) -> Result<<Kem as hpke::Kem>::PublicKey, KeyError> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.bytes).map_err(|_| KeyError::SmallOrder)
    }
}

/// A member's X25519 encryption private key. Never printed; wiped when dropped.
pub struct EncryptionSecret {
    key: <Kem as hpke::Kem>::PrivateKey,
    public: EncryptionPublic,
}

impl fmt::Debug for EncryptionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionSecret(public {})", self.public.id())
    }
}

impl EncryptionSecret {
    pub fn generate() -> EncryptionSecret {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(seed.as_mut());
        // 32 random bytes are a valid X25519 private key (clamped when used).
        Self::from_bytes(seed.as_ref()).expect("32 random bytes are a key")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<EncryptionSecret, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::Length(bytes.len()));
        }
        let key = <Kem as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .map_err(|_| KeyError::Length(bytes.len()))?;
        let public_bytes = <Kem as hpke::Kem>::sk_to_pk(&key).to_bytes();
        let public = EncryptionPublic::from_bytes(&public_bytes)?;
        Ok(EncryptionSecret { key, public })
    }

    /// The private key as 64 hex digits and a newline, the key file's content.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        self.key.write_exact(bytes.as_mut());
        Zeroizing::new(format!("{}\n", hex::encode(bytes.as_ref())))
    }

    /// Reads a key file's content written by [`EncryptionSecret::to_hex`].
    pub fn from_hex(text: &str) -> Result<EncryptionSecret, KeyError> {
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| KeyError::NotHex)?);
        Self::from_bytes(&bytes)
    }

    pub fn public(&self) -> EncryptionPublic {
        self.public
    }
}

/// The private keys a member can open envelopes with: its current key and the older ones it
/// keeps, so entries sealed to a key before a rotation stay readable; and the sessions derived
/// with them.
#[derive(Debug, Default)]
pub struct DecryptionKeys {
    by_id: BTreeMap<EncKeyId, EncryptionSecret>,
    sessions: Sessions,
}

impl DecryptionKeys {
    pub fn insert(&mut self, secret: EncryptionSecret) {
        self.by_id.insert(secret.public.id(), secret);
    }
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
    pub fn ids(&self) -> impl Iterator<Item = &EncKeyId> {
        self.by_id.keys()
    }
    /// The sessions derived so far (one decapsulation each).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }
    fn get(&self, id: &EncKeyId) -> Option<&EncryptionSecret> {
        self.by_id.get(id)
    }
}

/// A reader an origin seals to: its org and its current encryption key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reader {
    pub org: OrgId,
    pub key: EncryptionPublic,
}

/// Why an origin could not seal a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a sealed payload is at most {max} bytes before encryption, this one is {len}")]
    TooLarge { len: usize, max: usize },
    #[error("{count} readers; a sealed payload has at most {max}")]
    TooManyReaders { count: usize, max: usize },
    #[error("{0} is named twice among the readers")]
    DuplicateReader(OrgId),
    #[error("{0} has no encryption key: a restricted entry cannot be sealed to it")]
    NoKey(OrgId),
    #[error("the encryption key of {0} is unusable")]
    BadKey(OrgId),
    #[error("encryption failed")]
    Encrypt,
}

/// What is wrong with an envelope's shape (checked by every node, reader or not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeDefect {
    #[error("does not decode: {0}")]
    Undecodable(String),
    #[error("suite {0} is not the one suite (1)")]
    Suite(u32),
    #[error("readers are {found:?}, the header's origin and recipients are {expected:?}")]
    Readers {
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("a reader's {field} is {len} bytes, expected {expected}")]
    FieldLength {
        field: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("ciphertext of {0} bytes is not a padding bucket and its tag")]
    CiphertextLength(usize),
}

/// Why a reader could not open an envelope addressed to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the envelope does not name {0} as a reader")]
    NotAReader(OrgId),
    #[error("sealed to encryption key {0}, which this node does not hold")]
    NoKey(EncKeyId),
    #[error("the content key does not open with this node's key")]
    Unwrap,
    #[error("the content key does not match the envelope's commitment")]
    KeyCommitment,
    #[error("the ciphertext does not open with the content key")]
    Decrypt,
    #[error("malformed envelope: {0}")]
    Malformed(EnvelopeDefect),
}

fn context(prefix: &[u8], origin: &OrgId) -> Vec<u8> {
    [prefix, origin.as_str().as_bytes()].concat()
}

fn key_commitment(key: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(COMMIT_CONTEXT);
    h.update(key);
    h.finalize().to_vec()
}

/// The key a reader and an origin share for the wraps of one publication: exported from the
/// HPKE context of one encapsulation to the reader's key.
#[derive(Clone)]
pub struct Session {
    wrap_key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Session(..)")
    }
}

fn export(ctx_export: impl FnOnce(&mut [u8]) -> Result<(), hpke::HpkeError>) -> Option<Session> {
    let mut wrap_key = Zeroizing::new([0u8; KEY_LEN]);
    ctx_export(wrap_key.as_mut()).ok()?;
    Some(Session { wrap_key })
}

/// Encrypts each of `padded` (payloads already sealed and padded by [`crate::payload::seal`])
/// to `readers` (the origin itself and every recipient), with one encapsulation per reader for
/// the whole batch; returns the envelope bytes each entry carries as its payload, in order.
pub fn seal_batch(
    origin: &OrgId,
    padded: &[Vec<u8>],
    readers: &[Reader],
) -> Result<Vec<Vec<u8>>, SealError> {
    if let Some(big) = padded.iter().find(|p| p.len() > MAX_SEALED_PLAINTEXT) {
        return Err(SealError::TooLarge {
            len: big.len(),
            max: MAX_SEALED_PLAINTEXT,
        });
    }
    if readers.len() > MAX_READERS {
        return Err(SealError::TooManyReaders {
            count: readers.len(),
            max: MAX_READERS,
        });
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = readers.iter().find(|r| !seen.insert(&r.org)) {
        return Err(SealError::DuplicateReader(dup.org.clone()));
    }
    let mut rng = rand::rngs::OsRng;
    let info = context(INFO_CONTEXT, origin);
    let mut sessions = Vec::with_capacity(readers.len());
    for reader in readers {
        let bad = || SealError::BadKey(reader.org.clone());
        let public = reader.key.hpke().map_err(|_| bad())?;
        let (encapsulated, ctx) = hpke::setup_sender::<ExportOnlyAead, HkdfSha256, Kem, _>(
            &OpModeS::Base,
            &public,
            &info,
            &mut rng,
        )
        .map_err(|_| bad())?;
        let session = export(|out| ctx.export(EXPORT_CONTEXT, out)).ok_or_else(bad)?;
        sessions.push((reader, encapsulated.to_bytes().to_vec(), session));
    }
    let (aad, wrap_aad) = (context(AAD_CONTEXT, origin), context(WRAP_CONTEXT, origin));
    padded
        .iter()
        .map(|plain| {
            let mut content_key = Zeroizing::new([0u8; KEY_LEN]);
            rng.fill_bytes(content_key.as_mut());
            // The content key is fresh for every envelope, so one fixed nonce never repeats
            // under it.
            let ciphertext = ChaCha20Poly1305::new(content_key.as_ref().into())
                .encrypt(
                    &[0u8; NONCE_LEN].into(),
                    AeadPayload {
                        msg: plain,
                        aad: &aad,
                    },
                )
                .map_err(|_| SealError::Encrypt)?;
            let mut wraps = Vec::with_capacity(sessions.len());
            for (reader, encapsulated, session) in &sessions {
                let mut nonce = [0u8; NONCE_LEN];
                rng.fill_bytes(&mut nonce);
                let sealed = ChaCha20Poly1305::new(session.wrap_key.as_ref().into())
                    .encrypt(
                        &nonce.into(),
                        AeadPayload {
                            msg: content_key.as_ref(),
                            aad: &wrap_aad,
                        },
                    )
                    .map_err(|_| SealError::Encrypt)?;
                wraps.push(pb::WrappedKey {
                    org: reader.org.to_string(),
                    key_id: reader.key.id().0.to_vec(),
                    encapsulated: encapsulated.clone(),
                    wrapped: [&nonce[..], &sealed].concat(),
                });
            }
            Ok(pb::SealedPayload {
                suite: SUITE,
                readers: wraps,
                key_commitment: key_commitment(content_key.as_ref()),
                ciphertext,
            }
            .encode_to_vec())
        })
        .collect()
}

/// [`seal_batch`] of one payload.
pub fn seal_to(origin: &OrgId, padded: &[u8], readers: &[Reader]) -> Result<Vec<u8>, SealError> {
    let mut sealed = seal_batch(origin, &[padded.to_vec()], readers)?;
    sealed.pop().ok_or(SealError::Encrypt)
}

/// Checks an envelope's shape against its header: the suite, exactly one wrap for the origin
/// and for each recipient, field lengths, and a ciphertext that hides a padding bucket. Any
/// node runs this; it needs no key.
pub fn check_envelope(
    origin: &OrgId,
    recipients: &[OrgId],
    bytes: &[u8],
) -> Result<pb::SealedPayload, EnvelopeDefect> {
    let envelope =
        pb::SealedPayload::decode(bytes).map_err(|e| EnvelopeDefect::Undecodable(e.to_string()))?;
    if envelope.suite != SUITE {
        return Err(EnvelopeDefect::Suite(envelope.suite));
    }
    let expected: BTreeSet<&str> = std::iter::once(origin.as_str())
        .chain(recipients.iter().map(OrgId::as_str))
        .collect();
    let found: Vec<&str> = envelope.readers.iter().map(|r| r.org.as_str()).collect();
    let found_set: BTreeSet<&str> = found.iter().copied().collect();
    if found.len() != found_set.len() || found_set != expected {
        return Err(EnvelopeDefect::Readers {
            found: found
                .iter()
                .take(MAX_READERS)
                .map(|s| s.chars().take(64).collect())
                .collect(),
            expected: expected.iter().map(|s| s.to_string()).collect(),
        });
    }
    for reader in &envelope.readers {
        for (field, len, want) in [
            ("key_id", reader.key_id.len(), 8),
            ("encapsulated", reader.encapsulated.len(), 32),
            ("wrapped", reader.wrapped.len(), WRAPPED_LEN),
        ] {
            if len != want {
                return Err(EnvelopeDefect::FieldLength {
                    field,
                    len,
                    expected: want,
                });
            }
        }
    }
    if envelope.key_commitment.len() != 32 {
        return Err(EnvelopeDefect::FieldLength {
            field: "key_commitment",
            len: envelope.key_commitment.len(),
            expected: 32,
        });
    }
    let inner = envelope.ciphertext.len().checked_sub(TAG_LEN);
    if !inner.is_some_and(|n| n <= MAX_SEALED_PLAINTEXT && is_bucket(n as u64)) {
        return Err(EnvelopeDefect::CiphertextLength(envelope.ciphertext.len()));
    }
    Ok(envelope)
}

/// Which session a wrap belongs to: the origin, the reader's key and the encapsulation.
type SessionId = (OrgId, EncKeyId, [u8; 32]);

/// The sessions a reader derived (one decapsulation each), so the envelopes of one publication
/// cost one X25519 operation, not one each. Bounded by [`MAX_SESSIONS`]: when full it starts
/// over, so a peer sending envelopes of many sessions costs decapsulations, never memory.
#[derive(Debug, Default)]
pub struct Sessions {
    known: Mutex<HashMap<SessionId, Session>>,
}

impl Sessions {
    fn get(&self, id: &SessionId) -> Option<Session> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn put(&self, id: SessionId, session: Session) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_SESSIONS {
            known.clear();
        }
        known.insert(id, session);
    }

    /// How many sessions are kept now.
    pub fn len(&self) -> usize {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Opens an envelope of `origin`'s as reader `me`: finds or derives (with the private key its
/// wrap names) the session, unwraps the content key, checks it against the envelope's
/// commitment, and decrypts. Returns the padded payload bytes (to decode and check as any
/// payload).
pub fn open(
    origin: &OrgId,
    recipients: &[OrgId],
    me: &OrgId,
    bytes: &[u8],
    keys: &DecryptionKeys,
) -> Result<Vec<u8>, OpenError> {
    let sessions = &keys.sessions;
    let envelope = check_envelope(origin, recipients, bytes).map_err(OpenError::Malformed)?;
    let wrap = envelope
        .readers
        .iter()
        .find(|r| r.org == me.as_str())
        .ok_or_else(|| OpenError::NotAReader(me.clone()))?;
    let mut id = [0; 8];
    id.copy_from_slice(&wrap.key_id);
    let key_id = EncKeyId(id);
    let mut encapsulated = [0; 32];
    encapsulated.copy_from_slice(&wrap.encapsulated);
    let session_id = (origin.clone(), key_id, encapsulated);
    let session = match sessions.get(&session_id) {
        Some(session) => session,
        None => {
            let secret = keys.get(&key_id).ok_or(OpenError::NoKey(key_id))?;
            let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&encapsulated)
                .map_err(|_| OpenError::Unwrap)?;
            let ctx = hpke::setup_receiver::<ExportOnlyAead, HkdfSha256, Kem>(
                &OpModeR::Base,
                &secret.key,
                &enc,
                &context(INFO_CONTEXT, origin),
            )
            .map_err(|_| OpenError::Unwrap)?;
            let session = export(|out| ctx.export(EXPORT_CONTEXT, out)).ok_or(OpenError::Unwrap)?;
            sessions.put(session_id, session.clone());
            session
        }
    };
    let (nonce, sealed) = wrap.wrapped.split_at(NONCE_LEN);
    let content_key = Zeroizing::new(
        ChaCha20Poly1305::new(session.wrap_key.as_ref().into())
            .decrypt(
                nonce.into(),
                AeadPayload {
                    msg: sealed,
                    aad: &context(WRAP_CONTEXT, origin),
                },
            )
            .map_err(|_| OpenError::Unwrap)?,
    );
    if content_key.len() != KEY_LEN || key_commitment(&content_key) != envelope.key_commitment {
        return Err(OpenError::KeyCommitment);
    }
    ChaCha20Poly1305::new(content_key.as_slice().into())
        .decrypt(
            &[0u8; NONCE_LEN].into(),
            AeadPayload {
                msg: &envelope.ciphertext,
                aad: &context(AAD_CONTEXT, origin),
            },
        )
        .map_err(|_| OpenError::Decrypt)
}

#[cfg(test)]
#[path = "sealed_tests.rs"]
mod tests;
