//! The `[taxii]` section of a node's config: where the gateway listens and who may call it
//! with HTTP basic credentials (callers with a service certificate need no entry).

use std::net::SocketAddr;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use crate::preflight::Finding;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaxiiConfig {
    /// The HTTPS listener. Its certificate and key are the API listener's, and client
    /// certificates are checked against the API listener's client CA.
    pub listen: SocketAddr,
    /// Users who authenticate with HTTP basic credentials; they read as this node's org.
    #[serde(default)]
    pub user: Vec<TaxiiUser>,
    /// Most objects one page returns, whatever `limit` asks.
    #[serde(default = "default_max_page")]
    pub max_page_objects: usize,
    /// Largest POST body accepted, in bytes (the API root's `max_content_length`).
    #[serde(default = "default_max_content")]
    pub max_content_length: usize,
}

fn default_max_page() -> usize {
    1000
}

fn default_max_content() -> usize {
    10 << 20
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaxiiUser {
    pub name: String,
    /// The password's argon2 hash in PHC form (`intelmesh taxii hash-password`); the
    /// password itself is never in the config.
    pub password_hash: String,
    #[serde(default)]
    pub permission: Permission,
}

/// What a caller may do through the gateway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    #[default]
    Read,
    /// Read, and add objects (signed by this node).
    Submit,
}

impl TaxiiConfig {
    /// A gateway on `listen` with no basic users and the default bounds.
    pub fn new(listen: SocketAddr) -> TaxiiConfig {
        TaxiiConfig {
            listen,
            user: Vec::new(),
            max_page_objects: default_max_page(),
            max_content_length: default_max_content(),
        }
    }

    /// Mistakes visible without starting: listeners shared, users unusable.
    pub fn problems(&self, other_listeners: &[(&str, SocketAddr)]) -> Vec<Finding> {
        let mut found = Vec::new();
        for (setting, addr) in other_listeners {
            if crate::config::clashes(*addr, self.listen) {
                found.push(Finding::new(
                    "taxii.listen",
                    format!("{addr} is also {setting}: give the gateway its own port"),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for u in &self.user {
            if u.name.is_empty() || u.name.contains(':') || u.name.len() > 128 {
                found.push(Finding::new(
                    "[[taxii.user]] name",
                    format!("{:.40?}: 1 to 128 characters, no ':'", u.name),
                ));
            } else if !names.insert(u.name.as_str()) {
                found.push(Finding::new(
                    "[[taxii.user]] name",
                    format!("{} is listed twice", u.name),
                ));
            }
            if PasswordHash::new(&u.password_hash).is_err() {
                found.push(Finding::new(
                    "[[taxii.user]] password_hash",
                    format!(
                        "of {} is not a PHC hash: make one with `intelmesh taxii hash-password`",
                        u.name
                    ),
                ));
            }
        }
        if self.max_page_objects == 0 {
            found.push(Finding::new("taxii.max_page_objects", "is 0: at least 1"));
        }
        if self.max_content_length < 1024 {
            found.push(Finding::new(
                "taxii.max_content_length",
                "is under 1024 bytes: no envelope fits",
            ));
        }
        found
    }
}

/// A password of 24 random letters and digits (about 143 bits).
pub fn random_password() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
}

/// The argon2id PHC hash of a password, with a fresh salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}
