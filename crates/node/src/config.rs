//! Node configuration: the TOML file `intelmesh run --config` reads, checked before anything
//! starts so a mistake is reported with what to fix.
//!
//! Relative paths are relative to the directory of the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use intelmesh_core::entry::InvalidOrgId;
use intelmesh_core::OrgId;
use serde::{Deserialize, Serialize};

use crate::preflight::Finding;

mod limits;
#[cfg(test)]
use limits::MAX_DURATION_MS;
pub use limits::{Limits, MAX_BATCH_ENTRIES, MAX_MESSAGE_BYTES, MIN_MESSAGE_BYTES};

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
    /// This org's X25519 encryption key (hex, 0600): opens AMBER+STRICT and RED payloads sealed
    /// to it; older keys kept beside it as `<file>.old-<KEYID>` open what was sealed before a
    /// rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<PathBuf>,
    /// TOML registry of the members' verifying keys (static mode; in roster mode the keys
    /// come from the roster and this is not needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<PathBuf>,
    /// Roster mode: keys and peers come from the federation's roster, which this node follows
    /// from the genesis named here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roster: Option<RosterConfig>,
    /// Hub only: what its `Admin` service needs to issue enrolment bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    /// Version of the configuration/roster, announced in hellos.
    #[serde(default)]
    pub roster_version: u64,
    pub federation: ListenerConfig,
    pub api: ListenerConfig,
    /// Services of this node's org, by the name in their certificate, that may read and not
    /// publish: a firewall pulling block lists, a SIEM looking values up. Their `Submit`,
    /// `ReportSighting` and TAXII POSTs are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only_services: Vec<String>,
    /// Client certificates (services, admins) this node refuses on its API, TAXII gateway and
    /// console, by serial (hex, colons allowed, or as `openssl x509 -noout -serial` prints it),
    /// whatever the roster says: a stolen certificate cut off by the node's own operator at
    /// the next start, with no roster version to wait for (in static mode, the only way short
    /// of a new client CA). A peer node's certificate is the roster's, or `[[peer]]`'s, to end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_serials: Vec<String>,
    #[serde(default)]
    pub peer: Vec<PeerConfig>,
    /// MISP warninglists (files, or directories of `*.json`) of known-benign values: Submit
    /// refuses upserts of listed values unless forced; Lookup and TAXII name the lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warninglists: Vec<PathBuf>,
    /// The TAXII 2.1 gateway; off without this section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxii: Option<crate::taxii::TaxiiConfig>,
    /// The Prometheus endpoint and the Kubernetes probes (`crate::metrics`); off without
    /// this section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// How the node writes its log lines (`intelmesh run --log-format` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// The hub console (operators' HTTPS page); off without this section, hubs in roster
    /// mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<crate::console::ConsoleConfig>,
    #[serde(default)]
    pub limits: Limits,
    /// The audit trail of API calls (on unless `enabled = false`).
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// How the store is tuned; every field has a default.
    #[serde(default)]
    pub store: StoreTuning,
}

/// How the store is tuned.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreTuning {
    /// Lookups read the lookup table (a compact copy of the indicator index, rebuilt in the
    /// background) once the index holds this many indicators; a smaller index stays in the
    /// block cache.
    pub lookup_table_min_indicators: u64,
    /// A due rebuild of the lookup table waits for this long without writes to the index, or
    /// five minutes, whichever comes first.
    pub lookup_table_quiet_ms: u64,
    /// A directory outside `data_dir` (another volume, ideally) where the node keeps the
    /// highest seq it signed of each log it signs (`ORG.own-log.mark`, and on a publisher hub
    /// `ORG.authority-log.mark`). With it, a node whose store was lost, moved aside or restored
    /// from an older backup signs nothing until its peers have sent those logs back, instead
    /// of signing a second entry at a seq they hold (a fork, for good). Unset: no marks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marks_dir: Option<PathBuf>,
}

impl Default for StoreTuning {
    fn default() -> StoreTuning {
        let d = intelmesh_store::StateTableConfig::default();
        StoreTuning {
            lookup_table_min_indicators: d.min_indicators,
            lookup_table_quiet_ms: d.quiet.as_millis() as u64,
            marks_dir: None,
        }
    }
}

impl StoreTuning {
    /// The store's configuration of its lookup table.
    pub fn state_table(&self) -> intelmesh_store::StateTableConfig {
        intelmesh_store::StateTableConfig {
            min_indicators: self.lookup_table_min_indicators,
            quiet: Duration::from_millis(self.lookup_table_quiet_ms),
            ..Default::default()
        }
    }
}

/// The plain-HTTP listener for `/metrics`, `/livez` and `/readyz`. It carries no indicator
/// and no credential: bind it to an interface only the monitoring and the orchestrator reach.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
    /// Names (besides IP addresses and `localhost`) the listener may be asked under, in the
    /// `Host` header: a request naming any other is refused, so a web page open in a browser
    /// that reaches the port cannot read it by rebinding its own name to the address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// One line per event: human text, or one JSON object per line for log collectors.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?}: use text or json")),
        }
    }
}

/// Where a node in roster mode starts: the genesis version and its pinned hash.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RosterConfig {
    /// A file holding the encoded `SignedRoster` of version 1.
    pub genesis: PathBuf,
    /// Hex roster hash of the genesis, as given at enrolment: a genesis with another hash is
    /// another federation's (or forged).
    pub genesis_hash: String,
    /// Hex header hashes of the roster log's entries from seq 1, from the enrolment bundle:
    /// the node takes no other entry at those seqs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_pins: Vec<String>,
}

/// A hub's Admin settings: the federation CA that signs members' node certificates.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub federation_ca_cert: PathBuf,
    /// The federation CA's private key (0600).
    pub federation_ca_key: PathBuf,
}

impl RosterConfig {
    /// The pinned hash, or what is wrong with the setting.
    pub fn pin(&self) -> Result<intelmesh_core::Hash, String> {
        hash_of(&self.genesis_hash, "the genesis hash")
    }

    /// The pinned roster log entries (header hashes, from seq 1), or what is wrong with one.
    pub fn log_pins(&self) -> Result<Vec<intelmesh_core::Hash>, String> {
        (self.log_pins.iter().enumerate())
            .map(|(i, pin)| {
                hash_of(pin, "a header hash").map_err(|why| format!("at seq {}: {why}", i + 1))
            })
            .collect()
    }
}

fn hash_of(text: &str, what: &str) -> Result<intelmesh_core::Hash, String> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| format!("is not hex ({e}): give the 64 hex digits of {what}"))?;
    intelmesh_core::Hash::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "has {} bytes: a hash is 32 bytes (64 hex digits)",
            bytes.len()
        )
    })
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {}: {}", path.display(), list(findings))]
    Invalid {
        path: PathBuf,
        findings: Vec<Finding>,
    },
    #[error("org: {0}")]
    Org(#[from] InvalidOrgId),
}

fn list(findings: &[Finding]) -> String {
    let texts: Vec<String> = findings.iter().map(Finding::to_string).collect();
    texts.join("; ")
}

impl NodeConfig {
    /// Reads, resolves relative paths and validates a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let cfg = NodeConfig::read(path)?;
        let findings = cfg.problems();
        if !findings.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                findings,
            });
        }
        Ok(cfg)
    }

    /// Reads a config file and resolves its relative paths, without validating it.
    pub fn read(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        NodeConfig::from_text(&text, path)
    }

    /// Parses the text of the config file at `path` and resolves its relative paths against
    /// the file's folder, without reading anything (the fuzzer feeds it text).
    pub fn from_text(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let mut cfg: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // Resolved against the file's folder, an empty path would put the store among the
        // config and key files.
        if cfg.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: "data_dir is empty: give the directory that holds the node's store".into(),
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
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
        if let Some(key) = &mut self.encryption_key {
            fix(key);
        }
        if let Some(keys) = &mut self.keys {
            fix(keys);
        }
        if let Some(roster) = &mut self.roster {
            fix(&mut roster.genesis);
        }
        if let Some(admin) = &mut self.admin {
            fix(&mut admin.federation_ca_cert);
            fix(&mut admin.federation_ca_key);
        }
        for w in &mut self.warninglists {
            fix(w);
        }
        if let Some(marks) = &mut self.store.marks_dir {
            fix(marks);
        }
        for l in [&mut self.federation, &mut self.api] {
            fix(&mut l.client_ca);
            fix(&mut l.cert);
            fix(&mut l.key);
        }
    }

    /// The files the node reads at start, each with the setting that names it.
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        let mut files = vec![("signing_key", self.signing_key.as_path())];
        if let Some(key) = &self.encryption_key {
            files.push(("encryption_key", key));
        }
        if let Some(keys) = &self.keys {
            files.push(("keys", keys));
        }
        if let Some(roster) = &self.roster {
            files.push(("roster.genesis", &roster.genesis));
        }
        if let Some(admin) = &self.admin {
            files.push(("admin.federation_ca_cert", &admin.federation_ca_cert));
            files.push(("admin.federation_ca_key", &admin.federation_ca_key));
        }
        files.extend([
            ("federation.client_ca", self.federation.client_ca.as_path()),
            ("federation.cert", &self.federation.cert),
            ("federation.key", &self.federation.key),
            ("api.client_ca", &self.api.client_ca),
            ("api.cert", &self.api.cert),
            ("api.key", &self.api.key),
        ]);
        files
    }

    /// Whether keys and peers come from a roster (`[roster]`) rather than `keys`/`[[peer]]`.
    pub fn follows_roster(&self) -> bool {
        self.roster.is_some()
    }

    /// Where the key list comes from, as one of the two modes needs.
    fn source_problems(&self, found: &mut Vec<Finding>) {
        match &self.roster {
            None if self.keys.is_none() => found.push(Finding::new(
                "keys",
                "is missing: give the key list file (static mode), or a [roster] section with genesis and genesis_hash (roster mode)",
            )),
            None => {}
            Some(roster) => {
                if let Err(problem) = roster.pin() {
                    found.push(Finding::new("roster.genesis_hash", problem));
                }
                if let Err(problem) = roster.log_pins() {
                    found.push(Finding::new("roster.log_pins", problem));
                }
                if !self.peer.is_empty() {
                    found.push(Finding::new(
                        "[[peer]]",
                        "is set with [roster]: in roster mode peers come from the roster; remove the [[peer]] blocks",
                    ));
                }
            }
        }
    }

    /// Every mistake that shows without reading the files: ids, peers, missing files,
    /// listeners, limits. `intelmesh run --check` looks deeper (`crate::preflight`).
    pub fn problems(&self) -> Vec<Finding> {
        let mut found = Vec::new();
        let org = match OrgId::parse(&self.org) {
            Ok(org) => Some(org),
            Err(e) => {
                // The finding names the setting; the error alone says what is wrong with it.
                found.push(Finding::new("org", e.to_string()));
                None
            }
        };
        let mut seen = std::collections::HashSet::new();
        for p in &self.peer {
            let peer = match OrgId::parse(&p.org) {
                Ok(peer) => peer,
                Err(e) => {
                    found.push(Finding::new("[[peer]] org", e.to_string()));
                    continue;
                }
            };
            if Some(&peer) == org.as_ref() {
                found.push(Finding::new(
                    "[[peer]] org",
                    format!("{peer} is this node itself: remove that [[peer]]"),
                ));
            } else if !seen.insert(peer.clone()) {
                found.push(Finding::new(
                    "[[peer]] org",
                    format!("{peer} is listed twice: keep one [[peer]] for it"),
                ));
            }
        }
        for serial in &self.revoked_serials {
            let hex = revoked_serial(serial);
            if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) || hex.len() > 40 {
                found.push(Finding::new(
                    "revoked_serials",
                    format!("{serial:?} is not a certificate serial: give it in hex, as `openssl x509 -noout -serial` prints it (serial=4F3A0019)"),
                ));
            }
        }
        if let Some(marks) = &self.store.marks_dir {
            if marks.starts_with(&self.data_dir) {
                found.push(Finding::new(
                    "[store] marks_dir",
                    format!(
                        "{} is inside data_dir: the marks must survive the store's loss, so put them outside it",
                        marks.display()
                    ),
                ));
            }
        }
        self.source_problems(&mut found);
        for (setting, path) in self.files() {
            if !path.is_file() {
                found.push(Finding::new(
                    setting,
                    format!("{}: no such file", path.display()),
                ));
            }
        }
        if self.encryption_key.as_ref() == Some(&self.signing_key) {
            found.push(Finding::new(
                "encryption_key",
                "is the signing key's file: give the encryption key `intelmesh node init` (or `node rotate-encryption-key`) made; one key never serves both",
            ));
        }
        if clashes(self.federation.listen, self.api.listen) {
            found.push(Finding::new(
                "api.listen",
                format!(
                    "{} is also federation.listen: give each its own port (peers and services never share a listener)",
                    self.api.listen
                ),
            ));
        }
        for w in &self.warninglists {
            if !w.exists() {
                found.push(Finding::new(
                    "warninglists",
                    format!("{}: no such file or directory", w.display()),
                ));
            }
        }
        let mut listeners = vec![
            ("federation.listen", self.federation.listen),
            ("api.listen", self.api.listen),
        ];
        if let Some(t) = &self.taxii {
            found.extend(t.problems(&listeners));
            listeners.push(("taxii.listen", t.listen));
        }
        if let Some(c) = &self.console {
            listeners.push(("console.listen", c.listen));
        }
        if let Some(m) = &self.metrics {
            for (setting, addr) in &listeners {
                if clashes(*addr, m.listen) {
                    found.push(Finding::new(
                        "metrics.listen",
                        format!("{addr} is also {setting}: give the metrics listener its own port"),
                    ));
                }
            }
        }
        if let Some(c) = &self.console {
            let taxii = self.taxii.as_ref().map(|t| ("taxii.listen", t.listen));
            let others: Vec<_> = [
                ("federation.listen", self.federation.listen),
                ("api.listen", self.api.listen),
            ]
            .into_iter()
            .chain(taxii)
            .collect();
            found.extend(c.problems(self.role, self.roster.is_some(), &others));
        }
        found.extend(self.limits.problems());
        if self.audit.enabled && self.audit.max_file_bytes < crate::audit::MIN_FILE_BYTES {
            found.push(Finding::new(
                "audit.max_file_bytes",
                format!(
                    "is {}: at least {} (a smaller one would close, sync and begin a file at every call)",
                    self.audit.max_file_bytes,
                    crate::audit::MIN_FILE_BYTES
                ),
            ));
        }
        found
    }

    pub fn org_id(&self) -> Result<OrgId, ConfigError> {
        Ok(OrgId::parse(&self.org)?)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

/// Whether two listeners cannot both bind: the same port (not 0, which picks a free one) on
/// the same address, or where one listens on every address of the other's family
/// (`0.0.0.0` for IPv4, `[::]` for both).
pub fn clashes(a: SocketAddr, b: SocketAddr) -> bool {
    // `[::]` takes IPv4 too (dual stack); `0.0.0.0` only IPv4.
    let covers = |all: SocketAddr, one: SocketAddr| match all.ip() {
        std::net::IpAddr::V4(v4) => v4.is_unspecified() && one.is_ipv4(),
        std::net::IpAddr::V6(v6) => v6.is_unspecified(),
    };
    a.port() == b.port() && a.port() != 0 && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// A serial as `revoked_serials` lists it, in the roster's form (hex, lower case, no colons or
/// leading zeros); `serial=`, as openssl prints it, left out.
pub fn revoked_serial(listed: &str) -> String {
    let listed = listed.trim();
    let hex = listed.strip_prefix("serial=").unwrap_or(listed);
    intelmesh_roster::model::normalize_serial(hex)
}
