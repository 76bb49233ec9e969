//! Certificates outside their validity period, on real nodes over mutual TLS on loopback with
//! certificates made at test time: a peer's expired (or not yet valid) node certificate is
//! refused on the federation port and a service's on the API port, in the handshake, with the
//! TLS alert `certificate_expired` the client reports in plain words; and a node whose own
//! certificate or client CA is out of its period does not start, naming the setting, the file
//! and the date (as `run --check` does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use intelmesh_core::OrgId;
use intelmesh_node::config::{Limits, NodeConfig};
use intelmesh_node::connect::{error_line, node_channel, ChannelOptions};
use intelmesh_node::preflight::{check, CertFile, CertificateTimeError, Finding};
use intelmesh_node::provision::{loopback_specs, star_links};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use intelmesh_tests::net::{fast_limits, org, TestNet};
use intelmesh_tests::pki::{
    ca_for_period, issue_for_period, Leaf, JAN_2023, JAN_2024, JAN_2090, JAN_2091,
};
use tonic::transport::Channel;

const HUB: &str = "SG-IGCI";
const AU: &str = "AU-AFP";

/// What a client whose certificate a node refuses as out of its period is told.
fn refused_as_expired(addr: std::net::SocketAddr) -> String {
    format!(
        "{addr} refused our certificate (TLS alert CertificateExpired: it has expired or is not \
         valid yet; a certificate valid now is needed)"
    )
}

/// Periods outside now: one that ended, one that has not begun.
const OUT_OF_PERIOD: [(&str, i64, i64); 2] = [
    ("expired", JAN_2023, JAN_2024),
    ("not-yet-valid", JAN_2090, JAN_2091),
];

/// Dials the federation listener at `addr` as the node dialer does (TCP, TLS with our
/// certificate, the node's first bytes), expecting `node` there; the failure in one line.
async fn dial(
    addr: std::net::SocketAddr,
    node: &OrgId,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Channel, String> {
    intelmesh_node::tls::install_crypto_provider();
    let tls = intelmesh_node::tls::client_for(node, ca, cert, key).expect("client TLS config");
    let options = ChannelOptions {
        deadline: Duration::from_secs(5),
        window: None,
    };
    node_channel(addr, tls, options)
        .await
        .map_err(|e| error_line(&e))
}

/// Writes `issued` as `NAME.pem`/`NAME.key` in `dir`; returns the two paths.
fn write(issued: &intelmesh_node::pki::Issued, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    issued.write(dir, name).unwrap();
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_node_certificate_is_refused_on_the_federation_port() {
    let (hub, au) = (org(HUB), org(AU));
    let specs = loopback_specs(HUB, &[AU]).unwrap();
    let mut net = TestNet::provisioned(&specs, &star_links(&specs), &fast_limits());
    net.start(&hub).await;
    let addr = net.node(&hub).federation_addr;
    let fed_ca = net.fed.federation_ca.clone();
    let fed_key = net.fed.dir.join("federation-ca.key");
    let certs = tempfile::tempdir().unwrap();

    // AU's node certificate from the federation CA, right in every way but its period.
    for (name, from, to) in OUT_OF_PERIOD {
        let issued = issue_for_period(&fed_ca, &fed_key, Leaf::Node(&au), from, to);
        let (cert, key) = write(&issued, certs.path(), name);
        let err = dial(addr, &hub, &fed_ca, &cert, &key)
            .await
            .expect_err("a certificate out of its period is refused in the handshake");
        assert_eq!(err, refused_as_expired(addr), "{name}");
    }
    assert!(
        !net.peer_state(&hub, &au).connected,
        "no link was opened for AU"
    );

    // AU's certificate as provisioned, valid now, gets through the same way.
    let au_dir = net.fed.nodes[&au].dir.clone();
    dial(
        addr,
        &hub,
        &fed_ca,
        &au_dir.join("node.pem"),
        &au_dir.join("node.key"),
    )
    .await
    .expect("a valid node certificate is accepted");
    net.stop(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_service_certificate_is_refused_on_the_api_port() {
    let au = org(AU);
    let specs = loopback_specs(HUB, &[AU]).unwrap();
    let mut net = TestNet::provisioned(&specs, &star_links(&specs), &fast_limits());
    net.start(&au).await;
    let addr = net.node(&au).api_addr;
    let p = net.fed.nodes[&au].clone();
    let service_key = p.dir.join("service-ca.key");
    let certs = tempfile::tempdir().unwrap();

    for (name, from, to) in OUT_OF_PERIOD {
        let issued = issue_for_period(&p.api_ca, &service_key, Leaf::Service(&au, "soc"), from, to);
        let (cert, key) = write(&issued, certs.path(), name);
        let err = intelmesh_node::client::api_channel(addr, &au, &p.api_ca, &cert, &key)
            .await
            .expect_err("a service certificate out of its period is refused in the handshake");
        assert_eq!(error_line(err.as_ref()), refused_as_expired(addr), "{name}");
    }

    // The provisioned service certificate, valid now, is answered.
    let channel =
        intelmesh_node::client::api_channel(addr, &au, &p.api_ca, &p.client_cert, &p.client_key)
            .await
            .expect("a valid service certificate is accepted");
    IndicatorsClient::new(channel)
        .lookup(pb::LookupRequest::default())
        .await
        .expect("the API answers");
    net.stop(&au).await;
}

/// AU's config with `change` applied; also written to a file for `run --check`.
fn au_config(net: &TestNet, change: impl FnOnce(&mut NodeConfig)) -> (NodeConfig, PathBuf) {
    let p = &net.fed.nodes[&org(AU)];
    let mut cfg = p.config.clone();
    change(&mut cfg);
    let path = p.dir.join("changed.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    (cfg, path)
}

/// Starts a node with `cfg`, which must be refused for a certificate out of its period; the
/// error, after checking that the node opened nothing and that `run --check` reports the same
/// problem (and only it) from `path`.
async fn refused_start(cfg: NodeConfig, path: &Path) -> CertificateTimeError {
    let Err(err) = intelmesh_node::start(cfg.clone()).await else {
        panic!("a node with a certificate out of its period started");
    };
    let refusal = err
        .downcast_ref::<CertificateTimeError>()
        .unwrap_or_else(|| panic!("not a certificate time error: {err:#}"))
        .clone();
    assert_eq!(format!("{err:#}"), refusal.to_string());
    assert!(
        !cfg.data_dir.exists(),
        "the refusal comes before the store is opened"
    );
    let report = check(path);
    assert_eq!(
        report.findings,
        vec![Finding::new(refusal.setting(), refusal.problem())],
        "run --check reports the same, and nothing else"
    );
    refusal
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_certificate_or_ca_is_out_of_its_period_does_not_start() {
    let au = org(AU);
    let specs = loopback_specs(HUB, &[AU]).unwrap();
    let net = TestNet::provisioned(&specs, &star_links(&specs), &Limits::default());
    let p = net.fed.nodes[&au].clone();
    let fed_key = net.fed.dir.join("federation-ca.key");

    // Its federation certificate expired.
    let issued = issue_for_period(
        &net.fed.federation_ca,
        &fed_key,
        Leaf::Node(&au),
        JAN_2023,
        JAN_2024,
    );
    let (cert, key) = write(&issued, &p.dir, "expired-node");
    let (cfg, path) = au_config(&net, |cfg| {
        cfg.federation.cert = cert.clone();
        cfg.federation.key = key.clone();
    });
    let refusal = refused_start(cfg, &path).await;
    assert!(matches!(
        &refusal,
        CertificateTimeError::Expired {
            file: CertFile::Own,
            ..
        }
    ));
    assert_eq!(refusal.path(), cert);
    let text = refusal.to_string();
    assert!(
        text.starts_with(&format!(
            "federation.cert: the certificate {} expired on 2024-01-01 00:00:00 UTC: peers refuse \
             an expired certificate; get a renewed node certificate",
            cert.display()
        )),
        "{text}"
    );

    // Its API certificate is not valid yet (a clock far behind, or a mistaken issue).
    let issued = issue_for_period(
        &p.api_ca,
        &p.dir.join("service-ca.key"),
        Leaf::Node(&au),
        JAN_2090,
        JAN_2091,
    );
    let (cert, key) = write(&issued, &p.dir, "future-api");
    let (cfg, path) = au_config(&net, |cfg| {
        cfg.api.cert = cert.clone();
        cfg.api.key = key.clone();
    });
    let text = refused_start(cfg, &path).await.to_string();
    assert!(
        text.starts_with(&format!(
            "api.cert: the certificate {} is not valid until 2090-01-01 00:00:00 UTC (this \
             machine's clock says 20",
            cert.display()
        )),
        "{text}"
    );
    assert!(text.ends_with("is the clock right? otherwise use a certificate valid now"));

    // The federation CA it trusts expired.
    let old_ca = ca_for_period("intelmesh federation CA", JAN_2023, JAN_2024);
    let (old_ca_path, _) = write(&old_ca, &p.dir, "expired-ca");
    let (cfg, path) = au_config(&net, |cfg| {
        cfg.federation.client_ca = old_ca_path.clone();
        // Its certificate is from that CA and valid now, so nothing else is wrong.
        let leaf = issue_for_period(
            &old_ca_path,
            &p.dir.join("expired-ca.key"),
            Leaf::Node(&au),
            JAN_2023 + 1,
            JAN_2091,
        );
        let (cert, key) = write(&leaf, &p.dir, "node-of-old-ca");
        cfg.federation.cert = cert;
        cfg.federation.key = key;
    });
    let refusal = refused_start(cfg, &path).await;
    assert!(matches!(
        &refusal,
        CertificateTimeError::Expired {
            file: CertFile::ClientCa,
            ..
        }
    ));
    assert!(
        refusal.to_string().starts_with(&format!(
            "federation.client_ca: the CA certificate {} expired on 2024-01-01 00:00:00 UTC",
            old_ca_path.display()
        )),
        "{refusal}"
    );

    // A CA file holding the CA in force and an expired one (a CA being replaced) is fine.
    let bundle = p.dir.join("ca-bundle.pem");
    let current = std::fs::read_to_string(&net.fed.federation_ca).unwrap();
    std::fs::write(&bundle, format!("{current}{}", old_ca.cert_pem)).unwrap();
    let (cfg, path) = au_config(&net, |cfg| cfg.federation.client_ca = bundle.clone());
    assert_eq!(check(&path).findings, vec![]);
    assert_eq!(
        intelmesh_node::preflight::check_certificate_times(&cfg),
        Ok(())
    );
}
