//! The hub console in tests: a roster-mode federation whose hub serves `[console]`, operator
//! certificates from the hub's service CA, and HTTPS requests from a real rustls client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use intelmesh_core::OrgId;
use intelmesh_node::console::ConsoleConfig;
use intelmesh_node::pki::{Ca, Validity};
use intelmesh_node::provision::free_loopback_addr;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::http1::{self, Answer};
use crate::net::fast_limits;
use crate::roster_net::{peer, RosterNet};

/// A certificate and its key, as PEM files.
pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct ConsoleNet {
    pub net: RosterNet,
    pub addr: SocketAddr,
    /// The CA the console's server certificate chains to (the hub's service CA).
    pub ca: PathBuf,
    certs: tempfile::TempDir,
}

impl ConsoleNet {
    /// Hub `HUB` with its console on, and `agencies` admitted (version 2), running and linked.
    pub async fn start(agencies: &[&str]) -> ConsoleNet {
        let mut net = RosterNet::provisioned("HUB", agencies, &fast_limits());
        let hub = net.hub.clone();
        let listen = free_loopback_addr().expect("a port");
        let node = net.fed.nodes.get_mut(&hub).expect("hub provisioned");
        node.config.console = Some(ConsoleConfig { listen });
        let ca = node.api_ca.clone();
        net.start(&hub).await;
        let orgs: Vec<OrgId> = agencies
            .iter()
            .map(|a| OrgId::parse(a).expect("org id"))
            .collect();
        for org in &orgs {
            net.start(org).await;
        }
        net.admit_all(&orgs.iter().collect::<Vec<_>>()).await;
        net.wait_status(&hub, Duration::from_secs(30), |s| {
            orgs.iter()
                .all(|o| peer(s, o).is_some_and(|p| p.connected && p.roster_version == 2))
        })
        .await
        .expect("every agency links to the hub at version 2");
        let addr = net.node(&hub).console_addr.expect("the console listens");
        ConsoleNet {
            net,
            addr,
            ca,
            certs: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }

    /// An admin certificate for operator `name` of `org`, from the hub's service CA.
    pub fn admin(&self, org: &str, name: &str) -> Pem {
        let dir = &self.net.fed.nodes[&self.net.hub].dir;
        let ca = Ca::load(&dir.join("service-ca.pem"), &dir.join("service-ca.key"))
            .expect("hub service CA");
        let org = OrgId::parse(org).expect("org id");
        let issued = ca
            .issue_admin(&org, name, Validity::default())
            .expect("admin certificate");
        let stem = format!("admin-{org}-{name}");
        issued.write(self.certs.path(), &stem).expect("written");
        Pem {
            cert: self.certs.path().join(format!("{stem}.pem")),
            key: self.certs.path().join(format!("{stem}.key")),
        }
    }

    /// The hub's provisioned service certificate (role service, of the hub's org).
    pub fn service(&self) -> Pem {
        let node = &self.net.fed.nodes[&self.net.hub];
        Pem {
            cert: node.client_cert.clone(),
            key: node.client_key.clone(),
        }
    }

    /// `GET path` over TLS (trusting [`ConsoleNet::ca`]), presenting `client` if given. An
    /// error is a failed connection or handshake (no HTTP answer came).
    pub async fn get(&self, client: Option<&Pem>, path: &str) -> Result<Answer, String> {
        get(self.addr, &self.ca, client, path).await
    }
}

fn tls_client(ca: &Path, client: Option<&Pem>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(der.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let mut config = match client {
        Some(pem) => {
            let certs = CertificateDer::pem_file_iter(&pem.cert)
                .expect("certificate file")
                .collect::<Result<Vec<_>, _>>()
                .expect("certificate PEM");
            let key = PrivateKeyDer::from_pem_file(&pem.key).expect("key PEM");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A TLS connection to `addr` (trusting `ca`, presenting `client` if given), HTTP/1.1 agreed.
pub async fn tls_stream(
    addr: SocketAddr,
    ca: &Path,
    client: Option<&Pem>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tls_over(tcp, addr, ca, client).await
}

/// [`tls_stream`] over `tcp`, a connection to `addr` already made (from a chosen address).
pub async fn tls_over(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    ca: &Path,
    client: Option<&Pem>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client(ca, client)));
    let name = ServerName::IpAddress(addr.ip().into());
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// `GET path` from `addr` over TLS: see [`ConsoleNet::get`].
pub async fn get(
    addr: SocketAddr,
    ca: &Path,
    client: Option<&Pem>,
    path: &str,
) -> Result<Answer, String> {
    let mut tls = tls_stream(addr, ca, client).await?;
    http1::exchange(&mut tls, &addr.to_string(), "GET", path, None)
        .await
        .map_err(|e| format!("exchange: {e}"))
}
