//! Signing-key files and the TOML registry of verifying keys (until the hub roster replaces it).
//!
//! Registry format:
//! ```toml
//! [[origin]]
//! org = "SG-IGCI"
//! keys = ["<64 hex digits of the ed25519 public key>"]
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ed25519_dalek::{SigningKey, VerifyingKey};
use intelmesh_core::sealed::EncryptionPublic;
use intelmesh_core::{OrgId, StaticKeys};
use serde::Deserialize;

/// Writes `DIR/ORG.key` (hex seed, mode 0600, never overwritten) and `DIR/ORG.pub`.
pub fn generate(org: &OrgId, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let private = dir.join(format!("{org}.key"));
    let public = dir.join(format!("{org}.pub"));
    write_private(&private, &key)?;
    crate::durable::replace_public(
        &public,
        format!("{}\n", hex::encode(key.verifying_key().as_bytes())).as_bytes(),
    )?;
    Ok((private, public))
}

/// Creates the file with mode 0600 from the start, so the key is never readable by others.
pub fn write_private(path: &Path, key: &SigningKey) -> anyhow::Result<()> {
    let text = zeroize::Zeroizing::new(format!("{}\n", hex::encode(key.to_bytes())));
    write_secret(path, text.as_bytes())
}

/// Writes a key file: created 0600 from the start, never over an existing file, synced.
pub fn write_secret(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    crate::durable::create_new(path, content, 0o600).map_err(|e| {
        let why = match e.source.kind() {
            std::io::ErrorKind::AlreadyExists => "it exists: refusing to overwrite a key",
            std::io::ErrorKind::NotFound => "its directory does not exist",
            _ => "",
        };
        anyhow::anyhow!(
            "creating {}: {}{}{why}",
            path.display(),
            e.source,
            if why.is_empty() { "" } else { "; " }
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    origin: Vec<OriginKeys>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginKeys {
    org: String,
    #[serde(default)]
    keys: Vec<String>,
    /// The X25519 key restricted payloads for this org are sealed to (hex).
    #[serde(default)]
    encryption_key: Option<String>,
}

/// Reads a private signing key written by [`generate`] or [`write_private`].
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    let bytes = hex::decode(text.trim())
        .with_context(|| format!("signing key {} is not hex", path.display()))?;
    let Ok(seed) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!(
            "signing key {} must hold 32 bytes (64 hex digits)",
            path.display()
        );
    };
    Ok(SigningKey::from_bytes(&seed))
}

/// The registry file text for a set of (org, public key) pairs.
pub fn registry_toml<'a>(
    entries: impl IntoIterator<Item = (&'a OrgId, &'a VerifyingKey)>,
) -> String {
    let mut out = String::new();
    for (org, key) in entries {
        out.push_str(&format!(
            "[[origin]]\norg = \"{org}\"\nkeys = [\"{}\"]\n\n",
            hex::encode(key.as_bytes())
        ));
    }
    out
}

/// Registry entries naming each org's encryption key (an org may be listed twice: once with
/// its signing keys, once with this).
pub fn encryption_registry_toml<'a>(
    entries: impl IntoIterator<Item = (&'a OrgId, EncryptionPublic)>,
) -> String {
    let mut out = String::new();
    for (org, key) in entries {
        out.push_str(&format!(
            "[[origin]]\norg = \"{org}\"\nencryption_key = \"{}\"\n\n",
            hex::encode(key.as_bytes())
        ));
    }
    out
}

pub fn load_registry(path: &Path) -> anyhow::Result<StaticKeys> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_registry(&text).with_context(|| format!("in key registry {}", path.display()))
}

pub fn parse_registry(text: &str) -> anyhow::Result<StaticKeys> {
    let file: RegistryFile = toml::from_str(text)?;
    let mut keys = StaticKeys::default();
    for entry in file.origin {
        let org = OrgId::parse(&entry.org)?;
        if let Some(text) = &entry.encryption_key {
            let bytes = hex::decode(text.trim())
                .with_context(|| format!("{org}: encryption_key is not hex"))?;
            let key = EncryptionPublic::from_bytes(&bytes)
                .with_context(|| format!("{org}: encryption_key"))?;
            keys.set_encryption_key(org.clone(), key);
        }
        for (i, k) in entry.keys.iter().enumerate() {
            keys.insert(
                org.clone(),
                parse_public_key(k).with_context(|| format!("{org}: key {}", i + 1))?,
            );
        }
    }
    Ok(keys)
}

pub fn parse_public_key(hex_text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes = hex::decode(hex_text.trim()).context("not hex")?;
    let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!(
            "an ed25519 public key is 32 bytes (64 hex digits), got {}",
            bytes.len()
        );
    };
    VerifyingKey::from_bytes(&arr).context("not a valid ed25519 public key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_parses_and_rejects_with_reasons() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let good = format!(
            "[[origin]]\norg = \"SG-IGCI\"\nkeys = [\"{}\"]\n",
            hex::encode(key.as_bytes())
        );
        let reg = parse_registry(&good).expect("valid registry");
        assert_eq!(reg.iter().count(), 1);

        let short = "[[origin]]\norg = \"SG-IGCI\"\nkeys = [\"abcd\"]\n";
        let err = format!(
            "{:#}",
            parse_registry(short).expect_err("short key refused")
        );
        assert!(err.contains("32 bytes"), "{err}");

        let bad_org = format!(
            "[[origin]]\norg = \"SG IGCI\"\nkeys = [\"{}\"]\n",
            hex::encode(key.as_bytes())
        );
        let err = format!(
            "{:#}",
            parse_registry(&bad_org).expect_err("bad org refused")
        );
        assert!(err.contains("invalid org id"), "{err}");

        let unknown = "[[origin]]\norg = \"A\"\nkeys = []\ncolour = 1\n";
        assert!(parse_registry(unknown).is_err());
    }

    #[test]
    fn private_key_file_is_0600_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let org = OrgId::parse("SG-IGCI").expect("valid");
        let (private, _) = generate(&org, dir.path()).expect("generate");
        let mode = std::fs::metadata(&private)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            generate(&org, dir.path()).is_err(),
            "second keygen must not overwrite"
        );
    }
}
