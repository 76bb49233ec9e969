//! `next` tokens sealed under a key of this process: opaque to callers (a resume point is a
//! position in the index, which names the indicator there, one the caller may not be allowed
//! to see), bound to the caller's org, and refused when made up or altered.
//!
//! A token stays valid for as long as the node runs, so a retried request pages on; after a
//! restart the caller is told the token is not this server's (400) and starts over.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use intelmesh_core::OrgId;
use rand::RngCore;

const NONCE_BYTES: usize = 12;

/// Longest token text opened (positions are index keys: at most a few KiB).
const MAX_TOKEN_CHARS: usize = 8 * 1024;

/// The key `next` tokens are sealed under.
pub struct TokenKey(ChaCha20Poly1305);

impl TokenKey {
    /// A new random key (tokens of an earlier process no longer open).
    pub fn random() -> TokenKey {
        let mut key = Key::default();
        rand::thread_rng().fill_bytes(&mut key);
        TokenKey(ChaCha20Poly1305::new(&key))
    }

    /// `plain` sealed for `org`, as URL-safe text.
    pub fn seal(&self, org: &OrgId, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plain,
            aad: org.as_str().as_bytes(),
        };
        // Sealing in memory cannot fail for inputs this small; an empty token would be
        // refused on its way back, never misread.
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// What `token` holds, if this key sealed it for `org`.
    pub fn open(&self, org: &OrgId, token: &str) -> Result<Vec<u8>, &'static str> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err("too long");
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| "not base64url")?;
        let (nonce, sealed) = bytes.split_at_checked(NONCE_BYTES).ok_or("too short")?;
        let payload = Payload {
            msg: sealed,
            aad: org.as_str().as_bytes(),
        };
        self.0
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| "not issued by this server for this caller")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).unwrap()
    }

    #[test]
    fn a_token_opens_for_its_org_only_and_reveals_nothing() {
        let key = TokenKey::random();
        let position = b"Qm\x80\0\0\0\0\0\0\x01I\x04hidden.example";
        let token = key.seal(&org("AU-AFP"), position);
        assert!(!token.contains("hidden"));
        let decoded = URL_SAFE_NO_PAD.decode(&token).unwrap();
        assert!(!decoded.windows(6).any(|w| w == b"hidden"));
        assert_eq!(key.open(&org("AU-AFP"), &token).unwrap(), position);
        assert!(key.open(&org("BR-PF"), &token).is_err());
        assert!(TokenKey::random().open(&org("AU-AFP"), &token).is_err());
        // Any one character changed, or cut short: refused.
        let mut altered = token.clone().into_bytes();
        altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(key.open(&org("AU-AFP"), &altered).is_err());
        for bad in [
            "",
            "!!",
            "AAAA",
            &token[..token.len() - 2],
            &"A".repeat(MAX_TOKEN_CHARS + 1),
        ] {
            assert!(key.open(&org("AU-AFP"), bad).is_err(), "{bad:?}");
        }
    }
}
