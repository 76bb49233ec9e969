//! Certificates no honest CA holder would issue, made with the test federation's CA key: for
//! tests of what a dialer accepts from the node it reached.

use intelmesh_core::OrgId;
use intelmesh_node::pki::{node_dns_name, node_uri, Issued};
use intelmesh_node::provision::Federation;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};

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
