//! `intelmesh run --check`: every mistake in a node's config and files that would make it fail
//! or misbehave at start, found without starting it, each naming the setting and the file and
//! saying what to do. All are reported, not only the first.

use std::net::SocketAddr;
use std::path::Path;

use intelmesh_core::{KeyId, OrgId};
use intelmesh_store::DiskStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cert_facts::unix_now_secs;
use crate::cert_times::certificate_time;
pub use crate::cert_times::{check_certificate_times, CertFile, CertificateTimeError};
use crate::config::{ListenerConfig, NodeConfig};
use crate::identity::{ca_role_of, identity_of, Identity};
use crate::pki::CaRole;
use crate::private_files::{check_key_file, key_files};

/// One mistake: the setting at fault, and what is wrong with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The config setting (`federation.key`, `limits.heartbeat_ms`), or `config` for the file.
    pub setting: String,
    /// What is wrong, naming the file or value, and what to do.
    pub problem: String,
}

impl Finding {
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Finding {
        Finding {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.problem)
    }
}

/// What a check of a config file found.
pub struct Preflight {
    /// The config, when it could be read and parsed.
    pub config: Option<NodeConfig>,
    /// Every mistake found; none means the node can start.
    pub findings: Vec<Finding>,
}

/// Checks the config at `config_path` and every file it names, the listen addresses and the
/// data directory. Reads and binds, and changes no more than a start would: a store it looks
/// into is opened and closed (a snapshot a crash left unfinished is removed, modes are made
/// private), nothing is recorded in it.
pub fn check(config_path: &Path) -> Preflight {
    let cfg = match NodeConfig::read(config_path) {
        Ok(cfg) => cfg,
        Err(e) => {
            return Preflight {
                config: None,
                findings: vec![Finding::new("config", e.to_string())],
            }
        }
    };
    let mut found = cfg.problems();
    for (setting, path) in key_files(&cfg) {
        if path.is_file() {
            if let Err(e) = check_key_file(path) {
                found.push(Finding::new(setting, e.to_string()));
            }
        }
    }
    // An org id that does not parse is reported above; the checks that need it are skipped.
    let org = cfg.org_id().ok();
    check_listener(
        &cfg.federation,
        Listener::Federation,
        org.as_ref(),
        &mut found,
    );
    check_listener(&cfg.api, Listener::Api, org.as_ref(), &mut found);
    check_ca_not_shared(&cfg, &mut found);
    if let Some(admin) = &cfg.admin {
        // Missing files are reported above; a hub signing with a key that is not its CA's
        // would hand out bundles no peer accepts.
        if admin.federation_ca_cert.is_file() && admin.federation_ca_key.is_file() {
            if let Err(e) =
                crate::pki::Ca::load(&admin.federation_ca_cert, &admin.federation_ca_key)
            {
                found.push(Finding::new("admin.federation_ca_key", format!("{e:#}")));
            }
        }
    }
    if let Some(org) = &org {
        check_signing_key(&cfg, org, &mut found);
        check_encryption_key(&cfg, &mut found);
        check_data_dir(&cfg.data_dir, org, &mut found);
    }
    let taxii = cfg.taxii.as_ref().map(|t| ("taxii.listen", t.listen));
    let metrics = cfg.metrics.as_ref().map(|m| ("metrics.listen", m.listen));
    let console = cfg.console.as_ref().map(|c| ("console.listen", c.listen));
    for (setting, addr) in [
        ("federation.listen", cfg.federation.listen),
        ("api.listen", cfg.api.listen),
    ]
    .into_iter()
    .chain(taxii)
    .chain(metrics)
    .chain(console)
    {
        check_free(setting, addr, &mut found);
    }
    Preflight {
        config: Some(cfg),
        findings: found,
    }
}

/// Which listener, and so which CA its clients and its own certificate must chain to.
#[derive(Clone, Copy)]
pub(crate) enum Listener {
    Federation,
    Api,
}

impl Listener {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Listener::Federation => "federation",
            Listener::Api => "api",
        }
    }

    /// The CA this listener's clients must come from (the API's: this node's service CA).
    fn ca_role(self, org: &OrgId) -> CaRole {
        match self {
            Listener::Federation => CaRole::Federation,
            Listener::Api => CaRole::Service(org.clone()),
        }
    }

    /// Who would refuse this listener's certificate if it did not chain to its CA.
    fn refused_by(self) -> &'static str {
        match self {
            Listener::Federation => "peers would refuse it",
            Listener::Api => "services that trust that CA would refuse it",
        }
    }

    /// What to do about an expired certificate file of this listener.
    pub(crate) fn renew(self, file: CertFile) -> &'static str {
        match (self, file) {
            (Listener::Federation, CertFile::Own) => {
                "peers refuse an expired certificate; get a renewed node certificate from the federation CA's holder (`intelmesh pki request-node`, then `sign-node` on their side)"
            }
            (Listener::Api, CertFile::Own) => {
                "services refuse an expired certificate; issue a new API certificate with this node's service CA (`intelmesh pki issue-node`)"
            }
            (Listener::Federation, CertFile::ClientCa) => {
                "the node certificates it issued are no longer valid with it; the federation needs a new CA (and certificates from it), or this file holds an old CA"
            }
            (Listener::Api, CertFile::ClientCa) => {
                "the certificates it issued are no longer valid with it; make a new service CA (`intelmesh pki init-ca --service ORG`) and issue the API and service certificates again"
            }
        }
    }

    /// The CA file to give instead of a wrong one.
    fn right_ca(self) -> &'static str {
        match self {
            Listener::Federation => {
                "give the federation CA's ca.pem (the hub operator sends it to every member)"
            }
            Listener::Api => {
                "give this node's service CA's ca.pem (`intelmesh pki init-ca --service ORG`)"
            }
        }
    }
}

/// A listener's certificate, key and client CA: that each parses, that the key is the
/// certificate's, that the certificate names this node and chains to the CA, and that the CA
/// is the one for this listener.
fn check_listener(
    l: &ListenerConfig,
    which: Listener,
    org: Option<&OrgId>,
    found: &mut Vec<Finding>,
) {
    let name = which.name();
    let setting = |field: &str| format!("{name}.{field}");
    let cert = read_cert(&setting("cert"), &l.cert, found);
    let ca = read_cert(&setting("client_ca"), &l.client_ca, found);
    let key = read_key(&setting("key"), &l.key, found);
    for file in [CertFile::Own, CertFile::ClientCa] {
        if let Some(e) = certificate_time(l, which, file, unix_now_secs()) {
            found.push(Finding::new(e.setting(), e.problem()));
        }
    }

    if let (Some(cert), Some(key)) = (&cert, key) {
        let certified = rustls::sign::CertifiedKey::new(vec![cert.clone()], key);
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            certified.keys_match()
        {
            found.push(Finding::new(
                setting("key"),
                format!(
                    "{} is not the key of {name}.cert {}: give the key that was made with that certificate",
                    l.key.display(),
                    l.cert.display()
                ),
            ));
        }
    }
    if let Some(ca) = &ca {
        let expected = org.map(|org| which.ca_role(org));
        check_ca(
            &setting("client_ca"),
            &l.client_ca,
            ca,
            which,
            expected,
            found,
        );
    }
    let Some(cert) = &cert else { return };
    let Ok((_, x509)) = X509Certificate::from_der(cert) else {
        return; // read_cert reported it
    };
    if let Some(ca) = &ca {
        if let Ok((_, ca_x509)) = X509Certificate::from_der(ca) {
            if x509.verify_signature(Some(ca_x509.public_key())).is_err() {
                found.push(Finding::new(
                    setting("cert"),
                    format!(
                        "{} is not signed by {name}.client_ca {}: {}; give the certificate that CA issued for this node",
                        l.cert.display(),
                        l.client_ca.display(),
                        which.refused_by()
                    ),
                ));
            }
        }
    }
    if let Some(org) = org {
        let problem = match identity_of(cert) {
            Ok(Identity::Node(named)) if &named == org => None,
            Ok(Identity::Node(other)) => Some(format!(
                "{} is the certificate of {other}'s node, not {org}'s: give this node's certificate",
                l.cert.display()
            )),
            Ok(id @ (Identity::Service { .. } | Identity::Admin { .. })) => Some(format!(
                "{} is the {} certificate of {id}, not a node's: give the node certificate of {org}",
                l.cert.display(),
                id.role()
            )),
            Err(e) => Some(format!(
                "{}: {e}: give the node certificate of {org}",
                l.cert.display()
            )),
        };
        if let Some(problem) = problem {
            found.push(Finding::new(setting("cert"), problem));
        }
    }
}

/// A client CA must be a CA, and, when it carries its role, the `expected` one.
fn check_ca(
    setting: &str,
    path: &Path,
    ca: &[u8],
    which: Listener,
    expected: Option<CaRole>,
    found: &mut Vec<Finding>,
) {
    let Ok((_, x509)) = X509Certificate::from_der(ca) else {
        return; // read_cert reported it
    };
    if !x509.is_ca() {
        found.push(Finding::new(
            setting,
            format!(
                "{} is not a CA certificate: {}",
                path.display(),
                which.right_ca()
            ),
        ));
        return;
    }
    let Some(expected) = expected else { return };
    match ca_role_of(ca) {
        Ok(Some(role)) if role != expected => {
            let risk = match (which, &role) {
                (Listener::Api, CaRole::Federation) => "any member's node could call this API",
                (Listener::Api, CaRole::Service(_)) => "that member's services could call this API",
                (Listener::Federation, _) => "no peer could connect",
            };
            found.push(Finding::new(
                setting,
                format!(
                    "{} is {role}, not {expected}: {risk}; {}",
                    path.display(),
                    which.right_ca()
                ),
            ));
        }
        // A CA made before roles were marked (or by other tools) cannot say; the chain check
        // of the listener's own certificate still applies.
        Ok(_) | Err(_) => {}
    }
}

/// The service CA must not be the federation CA, even when neither carries its role.
fn check_ca_not_shared(cfg: &NodeConfig, found: &mut Vec<Finding>) {
    let (Ok(fed), Ok(api)) = (
        std::fs::read(&cfg.federation.client_ca),
        std::fs::read(&cfg.api.client_ca),
    ) else {
        return;
    };
    let (Ok(fed), Ok(api)) = (
        CertificateDer::from_pem_slice(&fed),
        CertificateDer::from_pem_slice(&api),
    ) else {
        return;
    };
    if fed == api && matches!(ca_role_of(&api), Ok(None)) {
        found.push(Finding::new(
            "api.client_ca",
            format!(
                "{} is the same CA as federation.client_ca: any member's node could call this API; give this node's service CA",
                cfg.api.client_ca.display()
            ),
        ));
    }
}

/// The first certificate of a PEM file, or a finding saying why there is none. A missing file
/// is left to `NodeConfig::problems`, which reports it.
fn read_cert(
    setting: &str,
    path: &Path,
    found: &mut Vec<Finding>,
) -> Option<CertificateDer<'static>> {
    let bytes = std::fs::read(path).ok()?;
    match CertificateDer::from_pem_slice(&bytes) {
        Ok(der) if X509Certificate::from_der(&der).is_ok() => Some(der),
        Ok(_) => {
            found.push(Finding::new(
                setting,
                format!("{}: the certificate does not parse", path.display()),
            ));
            None
        }
        Err(e) => {
            found.push(Finding::new(
                setting,
                format!("{} is not a PEM certificate: {e}", path.display()),
            ));
            None
        }
    }
}

/// The private key of a PEM file, loaded as the TLS listener would load it.
fn read_key(
    setting: &str,
    path: &Path,
    found: &mut Vec<Finding>,
) -> Option<std::sync::Arc<dyn rustls::sign::SigningKey>> {
    let bytes = std::fs::read(path).ok()?;
    let loaded = PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|der| {
            rustls::crypto::ring::default_provider()
                .key_provider
                .load_private_key(der)
                .map_err(|e| e.to_string())
        });
    match loaded {
        Ok(key) => Some(key),
        Err(e) => {
            found.push(Finding::new(
                setting,
                format!("{} is not a usable PEM private key: {e}", path.display()),
            ));
            None
        }
    }
}

/// The signing key must load and be in the key list under this node's org: members verify
/// its entries with the list's keys.
fn check_signing_key(cfg: &NodeConfig, org: &OrgId, found: &mut Vec<Finding>) {
    if let Some(roster) = &cfg.roster {
        // The key itself must load in either mode.
        if cfg.signing_key.is_file() {
            if let Err(e) = crate::keys::load_signing_key(&cfg.signing_key) {
                found.push(Finding::new("signing_key", format!("{e:#}")));
            }
        }
        // A member enrolled after the genesis is not in it: the node starts and waits for the
        // roster version that admits it. What can be checked here is the genesis itself.
        if roster.genesis.is_file() {
            if let Err(problem) = crate::roster_follow::load_genesis(roster) {
                found.push(Finding::new("roster.genesis", problem.to_string()));
            }
        }
        return;
    }
    let Some(keys) = cfg.keys.as_ref().filter(|k| k.is_file()) else {
        return;
    };
    if !cfg.signing_key.is_file() {
        return;
    }
    let key = crate::keys::load_signing_key(&cfg.signing_key)
        .map_err(|e| found.push(Finding::new("signing_key", format!("{e:#}"))));
    let registry = crate::keys::load_registry(keys)
        .map_err(|e| found.push(Finding::new("keys", format!("{e:#}"))));
    let (Ok(key), Ok(registry)) = (key, registry) else {
        return;
    };
    let public = key.verifying_key();
    if !registry.holds(org, &public) {
        found.push(Finding::new(
            "signing_key",
            format!(
                "the key in {} (key id {}, public key {}) is not in the key list {} for {org}: \
                 every member would refuse what it signs; add that public key to the list, or \
                 use the key the list holds",
                cfg.signing_key.display(),
                KeyId::of(&public),
                hex::encode(public.as_bytes()),
                keys.display()
            ),
        ));
    }
}

/// The encryption key (and the old keys kept beside it) must load: a node that cannot open
/// what is sealed to it would store payloads it can never show.
fn check_encryption_key(cfg: &NodeConfig, found: &mut Vec<Finding>) {
    // A missing file, or one open to others, is reported with the other files and key files.
    let Some(path) = cfg
        .encryption_key
        .as_ref()
        .filter(|p| p.is_file() && check_key_file(p).is_ok())
    else {
        return;
    };
    if let Err(e) = crate::encryption_keys::load(path) {
        found.push(Finding::new("encryption_key", format!("{e:#}")));
    }
}

/// A data directory that holds another org's store, or one a running node holds.
fn check_data_dir(dir: &Path, org: &OrgId, found: &mut Vec<Finding>) {
    match std::fs::metadata(dir) {
        // The node creates it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => found.push(Finding::new("data_dir", format!("{}: {e}", dir.display()))),
        Ok(meta) if !meta.is_dir() => found.push(Finding::new(
            "data_dir",
            format!("{} is not a directory", dir.display()),
        )),
        Ok(_) => {
            if let Err(e) = DiskStore::check_owner_at(dir, org) {
                found.push(Finding::new("data_dir", e.to_string()));
            }
        }
    }
}

/// A listen address another process holds (port 0, any free port, always is free).
fn check_free(setting: &str, addr: SocketAddr, found: &mut Vec<Finding>) {
    if addr.port() == 0 {
        return;
    }
    if let Err(e) = std::net::TcpListener::bind(addr) {
        let problem = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "{addr} is already in use: is this node already running? (`ss -ltnp 'sport = :{}'` shows which process holds it)",
                addr.port()
            )
        } else {
            format!("cannot listen on {addr}: {e}")
        };
        found.push(Finding::new(setting, problem));
    }
}
