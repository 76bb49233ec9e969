//! Paging tokens (gRPC `Query`'s `page_token`, TAXII's `next`) sealed under a key of this
//! process: opaque to callers (a resume point is a position in the index, which names the
//! indicator there, one the caller may not be allowed to see), bound to the caller's org, and
//! refused when made up or altered.
//!
//! The key is kept in the data directory (`token.key`, 0600), so a token stays valid across
//! restarts: a retried request pages on. Removing the file ends every token issued before.

use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use intelmesh_core::OrgId;
use rand::RngCore;

const NONCE_BYTES: usize = 12;

/// Longest token text opened: a TAXII resume point holds two index keys (each up to about
/// 2 KiB, hex inside the token), sealed and in base64.
const MAX_TOKEN_CHARS: usize = 32 * 1024;
/// The lengths a token's sealed bytes are padded to (an index key, or its text, is at most a
/// few KiB).
const PADDED_LENGTHS: [usize; 5] = [64, 256, 1024, 4096, 8192];

/// The key paging tokens are sealed under.
pub struct TokenKey(ChaCha20Poly1305);

/// The key's file in a node's data directory.
pub const KEY_FILE: &str = "token.key";

impl TokenKey {
    /// A new random key, kept nowhere (tokens end with it).
    #[cfg(test)]
    pub(crate) fn random() -> TokenKey {
        let mut key = Key::default();
        rand::thread_rng().fill_bytes(&mut key);
        TokenKey(ChaCha20Poly1305::new(&key))
    }

    /// The key in `dir`'s [`KEY_FILE`], made (0600) when there is none.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<TokenKey> {
        let path = dir.join(KEY_FILE);
        let mut key = Key::default();
        if path.exists() {
            crate::private_files::check_key_file(&path)?;
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if bytes.len() != key.len() {
                anyhow::bail!(
                    "{} holds {} bytes, not {}: remove it and a new key is made (paging \
                     tokens issued before stop working)",
                    path.display(),
                    bytes.len(),
                    key.len()
                );
            }
            key.copy_from_slice(&bytes);
        } else {
            // Written whole or not at all: a crash while it is made leaves no short file.
            rand::thread_rng().fill_bytes(&mut key);
            crate::durable::replace(&path, &key, 0o600)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(TokenKey(ChaCha20Poly1305::new(&key)))
    }

    /// `plain` sealed for `org`, as URL-safe text.
    pub fn seal(&self, org: &OrgId, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::thread_rng().fill_bytes(&mut nonce);
        // Framed (length, then the text) and padded to a bucket, so a token's length says
        // nothing of the position's within it: a page may end on a record the caller does not
        // see, whose value's length would otherwise show.
        let len = u16::try_from(plain.len()).unwrap_or(u16::MAX);
        let plain = &plain[..usize::from(len)];
        let framed_len = 2 + plain.len();
        let padded = PADDED_LENGTHS
            .into_iter()
            .find(|&b| b >= framed_len)
            .unwrap_or(framed_len);
        let mut framed = Vec::with_capacity(padded);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(plain);
        framed.resize(padded, 0);
        let payload = Payload {
            msg: &framed,
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
        let framed = self
            .0
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| "not issued by this server for this caller")?;
        let (len, padded) = framed.split_at_checked(2).ok_or("too short")?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        Ok(padded.get(..len).ok_or("too short")?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).unwrap()
    }

    #[test]
    fn the_kept_key_opens_tokens_after_a_restart_and_a_bad_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let token = TokenKey::load_or_create(dir.path())
            .unwrap()
            .seal(&org("AU-AFP"), b"position");
        let path = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = TokenKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&org("AU-AFP"), &token).unwrap(), b"position");
        std::fs::write(&path, b"short").unwrap();
        let e = TokenKey::load_or_create(dir.path()).err().unwrap();
        assert!(e.to_string().contains("holds 5 bytes, not 32"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = TokenKey::load_or_create(dir.path()).err().unwrap();
        assert!(e.to_string().contains("readable by others"), "{e}");
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
        // Its length says nothing of the position's within a bucket.
        let sealed_len = |n: usize| key.seal(&org("AU-AFP"), &vec![b'a'; n]).len();
        assert_eq!(sealed_len(1), sealed_len(60));
        assert_eq!(sealed_len(100), sealed_len(250));
        assert_ne!(sealed_len(60), sealed_len(100));
        let long = vec![b'z'; 3000];
        assert_eq!(
            key.open(&org("AU-AFP"), &key.seal(&org("AU-AFP"), &long))
                .unwrap(),
            long
        );
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
