//! Keyed digests of the values a call asked about. A plain hash of an IP address is undone by
//! hashing all 2^32 of them; an HMAC-SHA-256 under a node-local random key is not, so the trail
//! alone tells nothing about the values, while whoever holds the key on the node can answer
//! "who asked about X". Values are put in canonical form first (`intelmesh_core`), so a search
//! for `1.2.3.4` finds a call that asked `1[.]2.3.4`.

use hmac::{Hmac, Mac};
use intelmesh_core::indicator::{detect, normalize};
use intelmesh_core::IndicatorType;
use sha2::Sha256;

/// Bytes of an audit key.
pub const KEY_LEN: usize = 32;
/// Digest bytes kept (hex in the record): 128 bits, far beyond any accidental match, half the
/// line size of a full digest.
const DIGEST_BYTES: usize = 16;
/// Domain separation of a value digest.
const VALUE_CONTEXT: &[u8] = b"intelmesh/v1 audit-value\0";

/// A value's digest under the audit key, before it is written as hex: held inline, so a call
/// naming 10,000 values hands the trail's writer no string of each to free on another thread
/// (each such free left a block the answering thread later took back cold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueDigest([u8; DIGEST_BYTES]);

impl ValueDigest {
    /// The digest whose bytes are `bytes`.
    pub fn from_bytes(bytes: [u8; DIGEST_BYTES]) -> ValueDigest {
        ValueDigest(bytes)
    }

    /// The digest a record's hex names; `None` for anything but 32 hex digits.
    pub fn from_hex(hex: &str) -> Option<ValueDigest> {
        let mut bytes = [0u8; DIGEST_BYTES];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        Some(ValueDigest(bytes))
    }

    /// The digest as the trail records it: lower-case hex.
    pub fn hex(&self) -> String {
        let mut digits = [0u8; 2 * DIGEST_BYTES];
        self.hex_digits(&mut digits).to_owned()
    }

    /// [`ValueDigest::hex`] written into `digits`, with no allocation: a record is serialized
    /// straight from a call's digests, a thousand a record.
    fn hex_digits<'d>(&self, digits: &'d mut [u8; 2 * DIGEST_BYTES]) -> &'d str {
        // Digit by digit, not `hex::encode`, whose collect of chars was a third of a digest's
        // time (a lookup of 10,000 values digests each).
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (pair, b) in digits.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        // Hex digits are ASCII.
        std::str::from_utf8(digits).unwrap_or_default()
    }
}

impl serde::Serialize for ValueDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut digits = [0u8; 2 * DIGEST_BYTES];
        serializer.serialize_str(self.hex_digits(&mut digits))
    }
}

/// The node's audit key. Its bytes are never shown, not even by `Debug`.
///
/// Held as the HMAC state after the key's inner and outer blocks, copied for each value: a
/// lookup of 10,000 values digests each, and setting the key up again for each doubled the
/// hashing.
#[derive(Clone)]
pub struct AuditKey(Hmac<Sha256>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> AuditKey {
        // HMAC pads a key shorter than the hash's block with zeros: this is that padding.
        let mut block = [0u8; 64];
        block[..KEY_LEN].copy_from_slice(&bytes);
        AuditKey(<Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into()))
    }

    /// The digest of a value already in canonical form, as bytes: what a call that names many
    /// values makes where it answers them, the writer writing each as hex
    /// ([`ValueDigest::hex`], what [`AuditKey::digest_canonical`] gives).
    pub fn value_digest(&self, canonical: &str) -> ValueDigest {
        let mut mac = self.0.clone();
        mac.update(VALUE_CONTEXT);
        mac.update(canonical.as_bytes());
        let mut kept = [0u8; DIGEST_BYTES];
        kept.copy_from_slice(&mac.finalize().into_bytes()[..DIGEST_BYTES]);
        ValueDigest(kept)
    }

    /// The digest of a value a call named: of its canonical form under `ty` (detected when
    /// `None`), or of the trimmed text when it is no valid indicator (a refused value is still
    /// found by its exact spelling).
    pub fn digest(&self, ty: Option<IndicatorType>, raw: &str) -> String {
        self.raw_digest(ty, raw).hex()
    }

    /// [`AuditKey::digest`] as bytes.
    pub fn raw_digest(&self, ty: Option<IndicatorType>, raw: &str) -> ValueDigest {
        let canonical = match ty {
            Some(ty) => normalize(ty, raw),
            None => detect(raw),
        };
        match canonical {
            Ok(i) => self.value_digest(i.value()),
            Err(_) => self.value_digest(raw.trim()),
        }
    }

    /// The digest of a value already in canonical form: what [`AuditKey::digest`] gives for any
    /// spelling of it.
    pub fn digest_canonical(&self, canonical: &str) -> String {
        self.value_digest(canonical).hex()
    }

    /// Whether `other` is this key: two keys agree on a digest only if they are one.
    pub fn same_as(&self, other: &AuditKey) -> bool {
        self.value_digest("") == other.value_digest("")
    }

    /// Every digest a call naming `raw` may have recorded: its detected canonical form, its
    /// canonical form under each type that takes it (a call may have named the type), and
    /// its trimmed text.
    pub fn search_digests(&self, raw: &str) -> Vec<String> {
        let mut forms: Vec<String> = detect(raw).map(|i| i.into_value()).into_iter().collect();
        forms.extend(
            IndicatorType::ALL
                .into_iter()
                .filter_map(|ty| normalize(ty, raw).ok().map(|i| i.into_value())),
        );
        forms.push(raw.trim().to_string());
        forms.sort();
        forms.dedup();
        forms.iter().map(|f| self.digest_canonical(f)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_reads_back_from_its_hex_and_serializes_as_it() {
        let d = AuditKey::from_bytes([7; KEY_LEN]).value_digest("1.2.3.4");
        let hex = d.hex();
        assert_eq!(hex.len(), 32);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(ValueDigest::from_hex(&hex), Some(d));
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{hex}\""));
        let n = 0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128;
        assert_eq!(
            ValueDigest::from_bytes(n.to_be_bytes()).hex(),
            format!("{n:032x}")
        );
        for bad in ["", "zz", &"a".repeat(30), &"a".repeat(34), &"g".repeat(32)] {
            assert_eq!(ValueDigest::from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hmac_is_rfc_4231() {
        // RFC 4231 test case 2 ("Jefe"), through the same HMAC construction.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_kept_key_state_digests_as_hmac_under_the_key_bytes() {
        // Trails written before the key state was kept stay searchable.
        let mut mac = Hmac::<Sha256>::new_from_slice(&[7; KEY_LEN]).unwrap();
        mac.update(VALUE_CONTEXT);
        mac.update(b"1.2.3.4");
        let expected = hex::encode(&mac.finalize().into_bytes()[..DIGEST_BYTES]);
        let key = AuditKey::from_bytes([7; KEY_LEN]);
        assert_eq!(key.digest(None, "1.2.3.4"), expected);
        assert_eq!(key.digest_canonical("1.2.3.4"), expected);
    }

    #[test]
    fn a_key_is_the_same_as_itself_and_its_copies_only() {
        let key = AuditKey::from_bytes([7; KEY_LEN]);
        assert!(key.same_as(&key.clone()));
        assert!(key.same_as(&AuditKey::from_bytes([7; KEY_LEN])));
        assert!(!key.same_as(&AuditKey::from_bytes([8; KEY_LEN])));
    }

    #[test]
    fn a_defanged_spelling_has_the_canonical_digest_and_keys_differ() {
        let key = AuditKey::from_bytes([7; KEY_LEN]);
        let other = AuditKey::from_bytes([8; KEY_LEN]);
        let plain = key.digest(None, "1.2.3.4");
        assert_eq!(plain.len(), 2 * DIGEST_BYTES);
        assert_eq!(key.digest(None, "1[.]2.3.4"), plain);
        assert_eq!(key.digest(Some(IndicatorType::Ipv4), " 1.2.3.4 "), plain);
        assert_ne!(other.digest(None, "1.2.3.4"), plain);
        assert_ne!(key.digest(None, "1.2.3.5"), plain);
        // The digest is not the plain hash of the value.
        use sha2::Digest;
        assert!(!hex::encode(sha2::Sha256::digest(b"1.2.3.4")).starts_with(&plain));
        assert!(key.search_digests("1[.]2[.]3[.]4").contains(&plain));
        assert!(format!("{key:?}").contains(".."));
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn a_value_that_is_no_indicator_is_found_by_its_spelling() {
        let key = AuditKey::from_bytes([1; KEY_LEN]);
        let d = key.digest(None, "not a value!");
        assert!(key.search_digests(" not a value! ").contains(&d));
        assert!(!key.search_digests("1.2.3.4").contains(&d));
    }
}
