//! Certificates no honest CA holder would issue, made with the test federation's CA key (or
//! a node's service CA key): for tests of what a dialer accepts from the node it reached, and
//! of certificates outside their validity period.

use std::path::Path;

use intelmesh_core::OrgId;
use intelmesh_node::pki::{node_dns_name, node_uri, service_uri, Issued};
use intelmesh_node::provision::Federation;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A node certificate signed by `fed`'s federation CA whose DNS name is `named`'s
/// (`<org>.node.intelmesh`) but whose identity (the URI SAN) certifies `certifies`: what a
/// member whose id collided with another's under the DNS mapping would hold.
pub fn node_cert_named_as(fed: &Federation, named: &OrgId, certifies: &OrgId) -> Issued {
    let ca_pem = std::fs::read_to_string(&fed.federation_ca).expect("federation CA certificate");
    let ca_key = std::fs::read_to_string(fed.dir.join("federation-ca.key")).expect("CA key");
    let issuer =
        Issuer::from_ca_cert_pem(&ca_pem, KeyPair::from_pem(&ca_key).expect("CA key parses"))
            .expect("CA certificate parses");
    let mut params =
        CertificateParams::new(vec![node_dns_name(named), "localhost".into()]).expect("names");
    params
        .subject_alt_names
        .push(SanType::URI(node_uri(certifies).try_into().expect("URI")));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("signing");
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Unix seconds of 2023-01-01 00:00:00 UTC.
pub const JAN_2023: i64 = 1_672_531_200;
/// Unix seconds of 2024-01-01 00:00:00 UTC.
pub const JAN_2024: i64 = 1_704_067_200;
/// Unix seconds of 2090-01-01 00:00:00 UTC.
pub const JAN_2090: i64 = 3_786_912_000;
/// Unix seconds of 2091-01-01 00:00:00 UTC.
pub const JAN_2091: i64 = 3_818_448_000;

/// What a certificate made by [`issue_for_period`] certifies.
pub enum Leaf<'a> {
    /// A node of the org, as `pki::Ca::issue_node` makes one (federation or API listener).
    Node(&'a OrgId),
    /// A local service of the org, as `pki::Ca::issue_service` makes one.
    Service(&'a OrgId, &'a str),
}

/// A certificate for `leaf` valid only from `not_before` to `not_after` (unix seconds),
/// issued by the CA whose certificate and key are at `ca_cert` and `ca_key`: an expired
/// certificate, or one not valid yet, otherwise as the node's PKI issues them.
pub fn issue_for_period(
    ca_cert: &Path,
    ca_key: &Path,
    leaf: Leaf<'_>,
    not_before: i64,
    not_after: i64,
) -> Issued {
    let ca_pem = std::fs::read_to_string(ca_cert).expect("CA certificate");
    let ca_key = std::fs::read_to_string(ca_key).expect("CA key");
    let issuer =
        Issuer::from_ca_cert_pem(&ca_pem, KeyPair::from_pem(&ca_key).expect("CA key parses"))
            .expect("CA certificate parses");
    let mut params = match leaf {
        Leaf::Node(org) => {
            let mut p = CertificateParams::new(vec![node_dns_name(org), "localhost".into()])
                .expect("names");
            p.subject_alt_names
                .push(SanType::URI(node_uri(org).try_into().expect("URI")));
            p.subject_alt_names
                .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
            p.distinguished_name.push(DnType::CommonName, org.as_str());
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            p
        }
        Leaf::Service(org, name) => {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("no names");
            p.subject_alt_names.push(SanType::URI(
                service_uri(org, name).try_into().expect("URI"),
            ));
            p.distinguished_name
                .push(DnType::CommonName, format!("{org}/{name}"));
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p
        }
    };
    set_period(&mut params, not_before, not_after);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("signing");
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A self-signed CA certificate (no role recorded) valid only from `not_before` to `not_after`.
pub fn ca_for_period(common_name: &str, not_before: i64, not_after: i64) -> Issued {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_period(&mut params, not_before, not_after);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signing");
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn set_period(params: &mut CertificateParams, not_before: i64, not_after: i64) {
    let at = |secs| {
        x509_parser::time::ASN1Time::from_timestamp(secs)
            .expect("a representable time")
            .to_datetime()
    };
    params.not_before = at(not_before);
    params.not_after = at(not_after);
}
