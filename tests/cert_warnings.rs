//! Certificate expiry warnings in status, on real nodes in roster mode: a node whose own
//! federation certificate ends within the roster policy's window (30 days by default) says so,
//! naming the file; a member's certificate the roster records as ending within it shows at the
//! other nodes once the version recording it reaches them, and goes once a renewal is recorded.

use std::path::PathBuf;
use std::time::Duration;

use intelmesh_core::{now_unix_ms, OrgId};
use intelmesh_node::cert_watch::OWN_FEDERATION;
use intelmesh_node::pki::Issued;
use intelmesh_proto::v1 as pb;
use intelmesh_tests::net::{fast_limits, org};
use intelmesh_tests::pki::{issue_for_period, Leaf};
use intelmesh_tests::roster_net::{cert_serial, peer, RosterNet};

const PATIENCE: Duration = Duration::from_secs(20);
const DAY_SECS: i64 = 86_400;

/// A node certificate for `who` from the test federation's CA, valid from an hour ago for
/// `days`, written as `NAME.pem`/`.key` in the federation's directory; the certificate's path.
fn node_cert(net: &RosterNet, who: &OrgId, name: &str, days: i64) -> (PathBuf, PathBuf, i64) {
    let now = now_unix_ms() / 1000;
    let not_after = now + days * DAY_SECS;
    let issued: Issued = issue_for_period(
        &net.fed.federation_ca,
        &net.fed.dir.join("federation-ca.key"),
        Leaf::Node(who),
        now - 3600,
        not_after,
    );
    issued
        .write(&net.fed.dir, name)
        .expect("writing the certificate");
    (
        net.fed.dir.join(format!("{name}.pem")),
        net.fed.dir.join(format!("{name}.key")),
        not_after * 1000,
    )
}

fn record_cert(org: &OrgId, cert: &std::path::Path, not_after_unix_ms: i64) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RecordCert(pb::RecordCert {
            org: org.to_string(),
            cert: Some(pb::IssuedCert {
                serial: cert_serial(cert),
                not_after_unix_ms,
            }),
        })),
    }
}

/// The member warnings in a status, as (org, serial, expired).
fn member_warnings(s: &pb::StatusResponse) -> Vec<(String, String, bool)> {
    s.certificate_warnings
        .iter()
        .filter(|w| w.member)
        .map(|w| (w.subject.clone(), w.file_or_serial.clone(), w.expired))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_near_their_end_are_warned_about_in_status() {
    let (hub, au, br) = (org("HUB"), org("AU-AFP"), org("BR-PF"));
    let mut net = RosterNet::provisioned("HUB", &["AU-AFP", "BR-PF"], &fast_limits());
    // AU serves a federation certificate that ends in 10 days.
    let (cert, key, not_after) = node_cert(&net, &au, "au-short", 10);
    {
        let cfg = &mut net.fed.nodes.get_mut(&au).expect("AU").config;
        cfg.federation.cert = cert.clone();
        cfg.federation.key = key;
    }
    for o in [&hub, &au, &br] {
        net.start(o).await;
    }
    net.admit_all(&[&au, &br]).await;
    for o in [&au, &br] {
        net.wait_status(o, PATIENCE, |s| {
            s.roster_version == 2 && peer(s, &hub).is_some_and(|p| p.connected)
        })
        .await
        .unwrap();
    }

    // AU warns about its own certificate, read from its file; the others (365-day
    // certificates, nothing recorded in the roster yet) warn about nothing.
    let s = net.status(&au);
    assert_eq!(
        s.certificate_warnings,
        [pb::CertificateWarning {
            subject: OWN_FEDERATION.into(),
            file_or_serial: cert.display().to_string(),
            not_after_unix_ms: not_after,
            expired: false,
            member: false,
        }]
    );
    for o in [&hub, &br] {
        assert_eq!(net.status(o).certificate_warnings, [], "{o}");
    }

    // Version 3 records AU's certificate: every other node warns about it once it follows
    // that version; AU's own file already speaks for it (no second line about itself).
    let serial = cert_serial(&cert);
    net.apply(&[record_cert(&au, &cert, not_after)]).await;
    for o in [&hub, &br] {
        let s = net
            .wait_status(o, PATIENCE, |s| s.roster_version == 3)
            .await
            .unwrap();
        assert_eq!(
            member_warnings(&s),
            [(au.to_string(), serial.clone(), false)],
            "{o}"
        );
        let w = &s.certificate_warnings[0];
        assert_eq!(w.not_after_unix_ms, not_after);
        assert_eq!(s.certificate_warnings.len(), 1, "{o}: {s:#?}");
    }
    let s = net
        .wait_status(&au, PATIENCE, |s| s.roster_version == 3)
        .await
        .unwrap();
    assert_eq!(s.certificate_warnings.len(), 1);
    assert!(!s.certificate_warnings[0].member);

    // A renewal recorded in version 4 is AU's latest certificate: the warning goes.
    let (renewed, _, renewed_until) = node_cert(&net, &au, "au-renewed", 300);
    net.apply(&[record_cert(&au, &renewed, renewed_until)])
        .await;
    for o in [&hub, &br] {
        let s = net
            .wait_status(o, PATIENCE, |s| s.roster_version == 4)
            .await
            .unwrap();
        assert_eq!(s.certificate_warnings, [], "{o}");
    }
    for o in [&hub, &au, &br] {
        net.stop(o).await;
    }
}
