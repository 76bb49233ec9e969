//! Node configuration: the TOML file `intelmesh run --config` reads, checked before anything
//! starts so a mistake is reported with what to fix.
//!
//! Relative paths are relative to the directory of the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use intelmesh_core::OrgId;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's org id, e.g. "SG-IGCI".
    pub org: String,
    #[serde(default)]
    pub role: Role,
    pub data_dir: PathBuf,
    /// The org's ed25519 signing key (hex seed, 0600).
    pub signing_key: PathBuf,
    /// TOML registry of the members' verifying keys.
    pub keys: PathBuf,
    /// Version of the configuration/roster, announced in hellos.
    #[serde(default)]
    pub roster_version: u64,
    pub federation: ListenerConfig,
    pub api: ListenerConfig,
    #[serde(default)]
    pub peer: Vec<PeerConfig>,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Hub,
    #[default]
    Agency,
}

/// A TLS listener: where it listens, the CA its clients must chain to, its own certificate.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    /// CA that client certificates must chain to (federation CA, or this node's service CA).
    pub client_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub org: String,
    /// Address to dial; without one this node waits for the peer to dial in.
    #[serde(default)]
    pub dial: Option<SocketAddr>,
    /// The peer relays to every member (a hub): restricted payloads for any recipient may go
    /// through it. Otherwise only payloads the peer itself may read go to it in full.
    #[serde(default)]
    pub relay: bool,
}

/// Bounds that keep a node's memory and time in check whatever its peers do.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message accepted, either direction.
    pub max_message_bytes: usize,
    /// Most entries in one EntryBatch frame, either direction.
    pub max_batch_entries: usize,
    /// Frames queued towards one peer before its sender waits.
    pub peer_queue_frames: usize,
    pub heartbeat_ms: u64,
    /// A link that hears nothing for this long is cut.
    pub dead_after_ms: u64,
    /// A peer that does not take a queued frame for this long is cut.
    pub stall_after_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Deadline for a whole connection set-up, either side: TCP connect, TLS handshake and the
    /// opening of the Federation stream. A peer that accepts TCP and never finishes TLS must not
    /// hold a dialer (or an acceptor's slot) forever.
    pub connect_timeout_ms: u64,
    /// Entries kept per origin that cannot be verified yet (their signing key is not in this
    /// node's key list); checked again when the key list changes.
    pub unverified_per_origin: usize,
    /// Bytes of such entries kept across all origins.
    pub unverified_total_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 8 << 20,
            max_batch_entries: 1024,
            peer_queue_frames: 8,
            heartbeat_ms: 2_000,
            dead_after_ms: 10_000,
            stall_after_ms: 10_000,
            backoff_min_ms: 100,
            backoff_max_ms: 5_000,
            connect_timeout_ms: 10_000,
            unverified_per_origin: 1_024,
            unverified_total_bytes: 16 << 20,
        }
    }
}

impl Limits {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    pub fn dead_after(&self) -> Duration {
        Duration::from_millis(self.dead_after_ms)
    }
    pub fn stall_after(&self) -> Duration {
        Duration::from_millis(self.stall_after_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

impl NodeConfig {
    /// Reads, resolves relative paths and validates a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.signing_key);
        fix(&mut self.keys);
        for l in [&mut self.federation, &mut self.api] {
            fix(&mut l.client_ca);
            fix(&mut l.cert);
            fix(&mut l.key);
        }
    }

    /// Checks what can be checked without starting: ids, peers, files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let org = self.org_id()?;
        let mut seen = std::collections::HashSet::new();
        for p in &self.peer {
            let peer = OrgId::parse(&p.org)
                .map_err(|e| ConfigError::Invalid(format!("[[peer]] org: {e}")))?;
            if peer == org {
                return Err(ConfigError::Invalid(format!(
                    "[[peer]] {peer} is this node itself"
                )));
            }
            if !seen.insert(peer.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "[[peer]] {peer} is listed twice"
                )));
            }
        }
        for (what, path) in [
            ("signing_key", &self.signing_key),
            ("keys", &self.keys),
            ("federation.client_ca", &self.federation.client_ca),
            ("federation.cert", &self.federation.cert),
            ("federation.key", &self.federation.key),
            ("api.client_ca", &self.api.client_ca),
            ("api.cert", &self.api.cert),
            ("api.key", &self.api.key),
        ] {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "{what} = {}: no such file",
                    path.display()
                )));
            }
        }
        if self.federation.listen == self.api.listen && self.api.listen.port() != 0 {
            return Err(ConfigError::Invalid(
                "federation.listen and api.listen must differ: peers and services never share a listener"
                    .into(),
            ));
        }
        let l = &self.limits;
        if l.max_batch_entries == 0 || l.peer_queue_frames == 0 || l.max_message_bytes < 64 << 10 {
            return Err(ConfigError::Invalid(
                "limits: max_batch_entries and peer_queue_frames must be at least 1, max_message_bytes at least 65536"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn org_id(&self) -> Result<OrgId, ConfigError> {
        OrgId::parse(&self.org).map_err(|e| ConfigError::Invalid(format!("org: {e}")))
    }
}
