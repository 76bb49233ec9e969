//! Provisioning a federation in a directory: CAs, node and service certificates, signing keys,
//! the key registry and one config per node. Used by `intelmesh demo`, the benches and tests;
//! real deployments do the same steps with `intelmesh pki` and hand-edited configs. Roster
//! mode builds on it (`provision_roster`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::SigningKey;
use intelmesh_core::sealed::EncryptionSecret;
use intelmesh_core::OrgId;

use crate::config::{Limits, ListenerConfig, NodeConfig, PeerConfig, Role};
use crate::pki::{Ca, CaRole, Validity};
use crate::taxii::{hash_password, random_password, Permission, TaxiiConfig, TaxiiUser};

/// One node to provision.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub org: OrgId,
    pub role: Role,
    pub federation: SocketAddr,
    pub api: SocketAddr,
    /// The TAXII gateway's address, if the node serves one.
    pub taxii: Option<SocketAddr>,
}

/// HTTP basic credentials provisioned for a node's TAXII gateway.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TaxiiCredentials {
    /// A user who may read and add objects.
    pub writer: (String, String),
    /// A user who may only read.
    pub reader: (String, String),
}

/// What was written for one node.
#[derive(Clone, Debug)]
pub struct ProvisionedNode {
    pub spec: NodeSpec,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub config: NodeConfig,
    /// A service client certificate for calling this node's API.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The CA that signed this node's API server certificate (to trust when calling it).
    pub api_ca: PathBuf,
    /// The certificate request the node certificate was issued from (what an enrolment
    /// request carries).
    pub node_csr_pem: String,
    /// The gateway's users and passwords, when the spec asks for a gateway.
    pub taxii: Option<TaxiiCredentials>,
}

pub struct Federation {
    pub dir: PathBuf,
    pub nodes: BTreeMap<OrgId, ProvisionedNode>,
    pub federation_ca: PathBuf,
}

/// Writes everything for `nodes` linked by `links` (dialer, acceptor) under `dir`.
pub fn provision(
    dir: &Path,
    nodes: &[NodeSpec],
    links: &[(OrgId, OrgId)],
    limits: &Limits,
) -> anyhow::Result<Federation> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let fed_ca = Ca::generate(&CaRole::Federation)?;
    fed_ca.write(dir, "federation-ca")?;
    let federation_ca = dir.join("federation-ca.pem");

    let mut keys = Vec::new();
    for n in nodes {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        keys.push((n.org.clone(), key));
    }
    let public: Vec<(OrgId, ed25519_dalek::VerifyingKey)> = keys
        .iter()
        .map(|(o, k)| (o.clone(), k.verifying_key()))
        .collect();
    let sealing: Vec<EncryptionSecret> =
        nodes.iter().map(|_| EncryptionSecret::generate()).collect();
    let mut registry = crate::keys::registry_toml(public.iter().map(|(o, k)| (o, k)));
    registry.push_str(&crate::keys::encryption_registry_toml(
        nodes
            .iter()
            .map(|n| &n.org)
            .zip(sealing.iter().map(|s| s.public())),
    ));
    std::fs::write(dir.join("registry.toml"), registry)?;

    let role_of = |org: &OrgId| {
        nodes
            .iter()
            .find(|n| &n.org == org)
            .map(|n| n.role)
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    for ((n, (_, key)), secret) in nodes.iter().zip(&keys).zip(&sealing) {
        let nd = dir.join(n.org.as_str());
        std::fs::create_dir_all(&nd)?;
        crate::keys::write_private(&nd.join("signing.key"), key)?;
        crate::encryption_keys::write(&nd.join("encryption.key"), secret)?;
        // As members of a real federation do: the node makes its key and a request, and the
        // federation CA's holder certifies the request; the key never leaves the member.
        let request = crate::pki::request_node(&n.org)?;
        crate::pki::Issued {
            cert_pem: fed_ca.sign_node_request(&n.org, &request.csr_pem, Validity::default())?,
            key_pem: request.key_pem,
        }
        .write(&nd, "node")?;
        let node_csr_pem = request.csr_pem;
        let service_ca = Ca::generate(&CaRole::Service(n.org.clone()))?;
        service_ca.write(&nd, "service-ca")?;
        service_ca.issue_node(&n.org)?.write(&nd, "api")?;
        service_ca
            .issue_service(&n.org, "client")?
            .write(&nd, "client")?;

        let mut peer = Vec::new();
        for (dialer, acceptor) in links {
            if dialer == &n.org {
                let target = nodes
                    .iter()
                    .find(|x| &x.org == acceptor)
                    .with_context(|| format!("link to unknown node {acceptor}"))?;
                peer.push(PeerConfig {
                    org: acceptor.to_string(),
                    dial: Some(target.federation),
                    relay: role_of(acceptor) == Role::Hub,
                });
            } else if acceptor == &n.org {
                peer.push(PeerConfig {
                    org: dialer.to_string(),
                    dial: None,
                    relay: role_of(dialer) == Role::Hub,
                });
            }
        }
        let taxii = n.taxii.map(|listen| taxii_users(listen, &nd)).transpose()?;
        let config = NodeConfig {
            org: n.org.to_string(),
            role: n.role,
            data_dir: nd.join("data"),
            signing_key: nd.join("signing.key"),
            encryption_key: Some(nd.join("encryption.key")),
            keys: Some(dir.join("registry.toml")),
            roster: None,
            admin: None,
            roster_version: 1,
            federation: ListenerConfig {
                listen: n.federation,
                client_ca: federation_ca.clone(),
                cert: nd.join("node.pem"),
                key: nd.join("node.key"),
            },
            api: ListenerConfig {
                listen: n.api,
                client_ca: nd.join("service-ca.pem"),
                cert: nd.join("api.pem"),
                key: nd.join("api.key"),
            },
            read_only_services: Vec::new(),
            revoked_serials: Vec::new(),
            peer,
            warninglists: Vec::new(),
            taxii: taxii.as_ref().map(|(c, _)| c.clone()),
            metrics: None,
            log_format: None,
            console: None,
            limits: limits.clone(),
            audit: Default::default(),
            store: Default::default(),
        };
        let config_path = nd.join("node.toml");
        std::fs::write(&config_path, toml::to_string_pretty(&config)?)?;
        out.insert(
            n.org.clone(),
            ProvisionedNode {
                spec: n.clone(),
                dir: nd.clone(),
                config_path,
                config,
                client_cert: nd.join("client.pem"),
                client_key: nd.join("client.key"),
                api_ca: nd.join("service-ca.pem"),
                node_csr_pem,
                taxii: taxii.map(|(_, credentials)| credentials),
            },
        );
    }
    Ok(Federation {
        dir: dir.to_path_buf(),
        nodes: out,
        federation_ca,
    })
}

/// A gateway on `listen` with a writer and a reader, their passwords drawn at random and
/// kept in `DIR/taxii-credentials.json` (0600) for whoever runs the federation.
fn taxii_users(listen: SocketAddr, dir: &Path) -> anyhow::Result<(TaxiiConfig, TaxiiCredentials)> {
    let credentials = TaxiiCredentials {
        writer: ("analyst".to_string(), random_password()),
        reader: ("reader".to_string(), random_password()),
    };
    let user = |(name, password): &(String, String), permission| -> anyhow::Result<TaxiiUser> {
        Ok(TaxiiUser {
            name: name.clone(),
            password_hash: hash_password(password)?,
            permission,
        })
    };
    let config = TaxiiConfig {
        listen,
        user: vec![
            user(&credentials.writer, Permission::Submit)?,
            user(&credentials.reader, Permission::Read)?,
        ],
        ..TaxiiConfig::new(listen)
    };
    let path = dir.join("taxii-credentials.json");
    crate::pki::write_pem(&path, &serde_json::to_string_pretty(&credentials)?, true)?;
    Ok((config, credentials))
}

/// Ports handed out by this process, so two nodes of one process never get the same one.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A free loopback address for a node to listen on later.
///
/// Ports come from below the kernel's ephemeral range (Linux: 32768 and up), so the outgoing
/// connections of other nodes cannot take the port between this check and the node's bind,
/// and never twice within one process.
pub fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    use rand::Rng;
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        if handed.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            handed.insert(port);
            return Ok(l.local_addr()?);
        }
    }
    anyhow::bail!("no free loopback port found in 20000..32000")
}

/// Specs for a hub and agencies on free loopback ports.
pub fn loopback_specs(hub: &str, agencies: &[&str]) -> anyhow::Result<Vec<NodeSpec>> {
    loopback_specs_hubs(&[hub], agencies)
}

/// Specs for hubs (the first listed publishes the roster log in roster mode) and agencies on
/// free loopback ports.
pub fn loopback_specs_hubs(hubs: &[&str], agencies: &[&str]) -> anyhow::Result<Vec<NodeSpec>> {
    let roles = hubs
        .iter()
        .map(|h| (*h, Role::Hub))
        .chain(agencies.iter().map(|a| (*a, Role::Agency)));
    let mut specs = Vec::new();
    for (name, role) in roles {
        specs.push(NodeSpec {
            org: OrgId::parse(name)?,
            role,
            federation: free_loopback_addr()?,
            api: free_loopback_addr()?,
            taxii: None,
        });
    }
    Ok(specs)
}

/// Every agency dials every hub, and the hubs link with each other (the one whose org sorts
/// first dials, as in roster mode), so each hub holds everything and either can carry the
/// federation alone.
pub fn star_links(specs: &[NodeSpec]) -> Vec<(OrgId, OrgId)> {
    let hubs: Vec<&OrgId> = specs
        .iter()
        .filter(|s| s.role == Role::Hub)
        .map(|s| &s.org)
        .collect();
    let to_hubs = specs
        .iter()
        .filter(|s| s.role != Role::Hub)
        .flat_map(|s| hubs.iter().map(|h| (s.org.clone(), (*h).clone())));
    let between_hubs = hubs.iter().flat_map(|a| {
        hubs.iter()
            .filter(move |b| a < b)
            .map(move |b| ((*a).clone(), (*b).clone()))
    });
    to_hubs.chain(between_hubs).collect()
}
