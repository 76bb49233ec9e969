//! `intelmesh node join`: a node directory `node init` wrote, with the bundle the hub
//! operators issued, becomes a member's node: its certificate, the federation's CA and
//! genesis (checked against the pin given through another channel), and its config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use intelmesh_node::config::{ListenerConfig, NodeConfig, Role, RosterConfig};
use intelmesh_node::pki::write_pem;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::roster::Roster;
use intelmesh_roster::roster_hash;
use prost::Message;

use crate::enrol_cmd::{absolute, dir_org, distinct_listeners, write_config, ENCRYPTION_KEY_FILE};
use crate::usage;

#[derive(Args, Debug)]
pub struct NodeJoin {
    /// The directory `node init` wrote.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The bundle file from the hub operators (`intelmesh admin members bundle`).
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// This node's federation listen address.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7700")]
    federation_listen: std::net::SocketAddr,
    /// This node's API listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7701")]
    api_listen: std::net::SocketAddr,
    /// This node is a further hub (admitted with `admin members add --role hub`): it relays
    /// and holds every payload. Its peers take its role from the roster, not from this flag.
    #[arg(long)]
    hub: bool,
    /// The federation's genesis pin (hex), as `federation init` printed it, from the hub
    /// operators through another channel than the bundle: a bundle for another federation
    /// (a rogue one, swapped in transit) is refused. Without it, join warns and trusts the
    /// bundle's own.
    #[arg(long, value_name = "HEX")]
    genesis_pin: Option<String>,
    /// SHA-256 fingerprint (hex, colons allowed) of a federation CA certificate the bundle
    /// gives, from the hub operators through another channel: needed only when the bundle's
    /// CA is not one join can check (the authority changed since the genesis, and the CA too).
    #[arg(long = "federation-ca-sha256", value_name = "HEX")]
    federation_ca_sha256: Vec<String>,
}

pub fn node_join(mut a: NodeJoin) -> anyhow::Result<ExitCode> {
    distinct_listeners(a.federation_listen, a.api_listen)?;
    a.dir = absolute("--dir", &a.dir)?;
    let org = dir_org(&a.dir)?;
    let bytes = std::fs::read(&a.bundle)
        .map_err(|e| usage(format!("--bundle {}: {e}", a.bundle.display())))?;
    let bundle = pb::EnrolmentBundle::decode(bytes.as_slice()).map_err(|e| {
        usage(format!(
            "--bundle {}: not an enrolment bundle: {e}",
            a.bundle.display()
        ))
    })?;
    if bundle.org.is_empty() {
        return Err(usage(format!(
            "--bundle {}: not an enrolment bundle (it names no org): give the file `intelmesh admin members bundle` wrote",
            a.bundle.display()
        )));
    }
    if bundle.org != org.as_str() {
        return Err(usage(format!(
            "--bundle {} is for {}, but {} holds the keys of {org}",
            a.bundle.display(),
            bundle.org,
            a.dir.display()
        )));
    }
    let genesis = bundle
        .genesis
        .as_ref()
        .ok_or_else(|| usage("the bundle holds no genesis"))?;
    if roster_hash(&genesis.document).as_slice() != bundle.genesis_hash.as_slice() {
        return Err(usage(
            "the bundle's genesis does not have the bundle's genesis hash",
        ));
    }
    if bundle.federation_ca_pem.is_empty() {
        return Err(usage("the bundle holds no federation CA certificate"));
    }
    // Joined before (a renewal's bundle is installed by joining again): the config stays as the
    // operator left it, and the federation it follows is the one the bundle must be of.
    let config_path = a.dir.join("node.toml");
    let joined = match config_path.exists() {
        true => Some(NodeConfig::read(&config_path).map_err(|e| {
            usage(format!(
                "{}: {e}: fix it, or move it aside to join afresh",
                config_path.display()
            ))
        })?),
        false => None,
    };
    let followed = (joined.as_ref())
        .and_then(|c| c.roster.as_ref())
        .map(|r| r.genesis_hash.trim().to_ascii_lowercase());
    let pin = match (&a.genesis_pin, &followed) {
        (Some(given), Some(followed)) if given.trim().to_ascii_lowercase() != *followed => {
            return Err(usage(format!(
                "--genesis-pin {given}, but {} follows the federation with pin {followed}",
                config_path.display()
            )));
        }
        (Some(given), _) => Some(given.clone()),
        (None, followed) => followed.clone(),
    };
    check_federation(
        &bundle,
        genesis,
        &Expected {
            pin: pin.as_deref(),
            ca_sha256: &a.federation_ca_sha256,
        },
    )?;
    // The key the node serves (the kept config's, else the directory's): a certificate of
    // another key would fail every handshake once installed over the working one.
    let key_path =
        (joined.as_ref()).map_or_else(|| a.dir.join("node.key"), |c| c.federation.key.clone());
    if let Ok(key_pem) = std::fs::read_to_string(&key_path) {
        match intelmesh_node::pki::cert_matches_key(&bundle.node_cert_pem, &key_pem) {
            Ok(true) => {}
            Ok(false) => {
                return Err(usage(format!(
                    "the bundle's certificate is not of the key in {}: it was issued for another request",
                    key_path.display()
                )))
            }
            Err(e) => return Err(usage(format!("the bundle's certificate: {e:#}"))),
        }
    }
    write_pem(&a.dir.join("node.pem"), &bundle.node_cert_pem, false)?;
    write_pem(
        &a.dir.join("federation-ca.pem"),
        &bundle.federation_ca_pem.join("\n"),
        false,
    )?;
    // Read by the node's own user, whoever runs join (root under umask 027 would keep it out).
    intelmesh_node::durable::replace_public(
        &a.dir.join("genesis.roster"),
        &genesis.encode_to_vec(),
    )?;
    let pin = hex::encode(&bundle.genesis_hash);
    if let Some(joined) = &joined {
        // Where the kept config reads them from, if not where join wrote them.
        let same =
            |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            };
        let elsewhere: Vec<String> = [
            (&joined.federation.cert, a.dir.join("node.pem")),
            (
                &joined.federation.client_ca,
                a.dir.join("federation-ca.pem"),
            ),
        ]
        .into_iter()
        .filter(|(read, written)| !same(read, written))
        .map(|(read, written)| format!("copy {} to {}", written.display(), read.display()))
        .collect();
        if elsewhere.is_empty() {
            out!(
                "{org}: the bundle's certificate is installed in {}; {} is kept as it was, role and listeners included (--hub and --*-listen apply to a first join); restart the node to serve the certificate",
                a.dir.join("node.pem").display(),
                config_path.display()
            );
        } else {
            out!(
                "{org}: the bundle's files are written in {}, but {} (kept as it was) reads them elsewhere: {}; then restart the node",
                a.dir.display(),
                config_path.display(),
                elsewhere.join("; ")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config = NodeConfig {
        org: org.to_string(),
        role: if a.hub { Role::Hub } else { Role::Agency },
        data_dir: a.dir.join("data"),
        signing_key: a.dir.join("signing.key"),
        // A directory `node init` wrote before members had encryption keys has none.
        encryption_key: Some(a.dir.join(ENCRYPTION_KEY_FILE)).filter(|p| p.exists()),
        keys: None,
        roster: Some(RosterConfig {
            genesis: a.dir.join("genesis.roster"),
            genesis_hash: pin.clone(),
            // The roster log as the issuing hub held it: a hub key in other hands cannot hand
            // this node entries of its own at those seqs.
            log_pins: bundle.roster_log.iter().map(hex::encode).collect(),
        }),
        admin: None,
        roster_version: 0,
        federation: ListenerConfig {
            listen: a.federation_listen,
            client_ca: a.dir.join("federation-ca.pem"),
            cert: a.dir.join("node.pem"),
            key: a.dir.join("node.key"),
        },
        api: ListenerConfig {
            listen: a.api_listen,
            client_ca: a.dir.join("service-ca/ca.pem"),
            cert: a.dir.join("api.pem"),
            key: a.dir.join("api.key"),
        },
        read_only_services: Vec::new(),
        revoked_serials: Vec::new(),
        peer: Vec::new(),
        warninglists: Vec::new(),
        taxii: None,
        metrics: None,
        log_format: None,
        console: None,
        limits: Default::default(),
        audit: Default::default(),
        store: Default::default(),
    };
    write_config(&config_path, &config)?;
    out!(
        "{org} joined the federation (genesis pin {pin}); hubs: {}",
        bundle
            .hubs
            .iter()
            .map(|h| format!("{} at {}", h.org, h.address))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out!(
        "start it: intelmesh run --config {}",
        a.dir.join("node.toml").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// That the bundle is of the federation the caller expects: its genesis has `expected_pin`
/// (warned about when none is given), and the CA it gives is the one its roster names.
fn check_federation(
    bundle: &pb::EnrolmentBundle,
    genesis: &pb::SignedRoster,
    expected: &Expected<'_>,
) -> anyhow::Result<()> {
    let pin = hex::encode(&bundle.genesis_hash);
    match expected.pin.map(|p| p.trim().to_ascii_lowercase()) {
        Some(expected) if expected == pin => {}
        Some(expected) => {
            return Err(usage(format!(
                "the bundle is of the federation with genesis pin {pin}, not {expected}: it may have been swapped in transit; ask the hub operators for a new one"
            )))
        }
        None => eprintln!(
            "warning: the federation of the bundle (genesis pin {pin}) was not checked: compare the pin with the one the hub operators gave you through another channel, or give it with --genesis-pin"
        ),
    }
    Roster::genesis(genesis, None)
        .map_err(|e| usage(format!("the bundle's genesis is not valid: {e}")))?;
    if let Some(seq) = bundle.roster_log.iter().position(|h| h.len() != 32) {
        return Err(usage(format!(
            "the bundle's roster log names seq {} by {} bytes, not a 32-byte hash: ask the hub operators for a new bundle",
            seq + 1,
            bundle.roster_log[seq].len()
        )));
    }
    // The CAs the pinned genesis names. Not those of the bundle's later version: the genesis
    // authority's signatures on a document say nothing of which federation, version or chain
    // it belongs to (a document made up and signed by a genesis threshold since lowered in
    // the roster, or by the same keys for another federation, would name any CA), and no
    // roster change moves the CAs a genesis named.
    let document = pb::RosterDocument::decode(genesis.document.as_slice())
        .map_err(|e| usage(format!("the bundle's roster does not decode: {e}")))?;
    let named: std::collections::BTreeSet<&str> =
        document.ca_certs_pem.iter().map(|p| p.trim()).collect();
    let given: std::collections::BTreeSet<&str> =
        bundle.federation_ca_pem.iter().map(|p| p.trim()).collect();
    if named == given {
        return Ok(());
    }
    // Not a CA join can check: taken only when the operators vouched for each, out of band.
    let fingerprints = bundle
        .federation_ca_pem
        .iter()
        .map(|p| intelmesh_node::cert_facts::sha256_fingerprint_pem(p))
        .collect::<anyhow::Result<Vec<String>>>()
        .map_err(|e| usage(format!("the bundle's federation CA certificate: {e:#}")))?;
    let vouched: Vec<String> = expected
        .ca_sha256
        .iter()
        .map(|f| f.replace(':', "").trim().to_ascii_lowercase())
        .collect();
    if !fingerprints.iter().all(|f| vouched.contains(f)) {
        return Err(usage(format!(
            "the bundle's federation CA certificates (SHA-256 {}) are not the ones named by its genesis (the bundle was changed, or the CA changed since the genesis): compare them with the hub operators through another channel and give them with --federation-ca-sha256",
            fingerprints.join(", ")
        )));
    }
    Ok(())
}

/// What the caller learned through another channel than the bundle.
struct Expected<'a> {
    pin: Option<&'a str>,
    ca_sha256: &'a [String],
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use intelmesh_core::OrgId;
    use intelmesh_roster::{build_genesis, sign_document, AuthorityKey, GenesisSpec, HubMember};

    const NOW: i64 = 1_800_000_000_000;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn genesis(ca: &str) -> pb::SignedRoster {
        let spec = GenesisSpec {
            federation_id: OrgId::parse("TEST-FED").unwrap(),
            authority: vec![AuthorityKey {
                name: "alice".into(),
                key: key(1).verifying_key(),
            }],
            threshold: 1,
            hub_members: vec![HubMember {
                org: OrgId::parse("HUB").unwrap(),
                display_name: "hub".into(),
                country: String::new(),
                signing_key: key(2).verifying_key(),
                encryption_key: None,
            }],
            ca_certs_pem: vec![ca.to_string()],
            hubs: Vec::new(),
            policy: pb::Policy::default(),
            proposed_by: "test".into(),
        };
        let document = build_genesis(&spec, NOW).unwrap();
        pb::SignedRoster {
            signatures: vec![sign_document(&document, &key(1), NOW)],
            document,
        }
    }

    /// A later version naming `ca`, signed by `signer` (none for unsigned).
    fn later(
        genesis: &pb::SignedRoster,
        ca: &str,
        signer: Option<&SigningKey>,
    ) -> pb::SignedRoster {
        let mut doc = pb::RosterDocument::decode(genesis.document.as_slice()).unwrap();
        doc.version = 2;
        doc.ca_certs_pem = vec![ca.to_string()];
        let document = doc.encode_to_vec();
        pb::SignedRoster {
            signatures: signer
                .map(|k| sign_document(&document, k, NOW))
                .into_iter()
                .collect(),
            document,
        }
    }

    fn bundle(
        genesis: &pb::SignedRoster,
        current: Option<pb::SignedRoster>,
        ca: &[&str],
    ) -> pb::EnrolmentBundle {
        pb::EnrolmentBundle {
            genesis_hash: roster_hash(&genesis.document).to_vec(),
            genesis: Some(genesis.clone()),
            current,
            federation_ca_pem: ca.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }
    }

    fn pinned(pin: &str) -> Expected<'_> {
        Expected {
            pin: Some(pin),
            ca_sha256: &[],
        }
    }

    fn pinned_none() -> Expected<'static> {
        Expected {
            pin: None,
            ca_sha256: &[],
        }
    }

    fn ca() -> String {
        let ca = intelmesh_node::pki::Ca::generate(&intelmesh_node::pki::CaRole::Federation);
        ca.unwrap().cert_pem().to_string()
    }

    #[test]
    fn a_bundle_is_of_the_pinned_federation_and_gives_the_ca_its_genesis_names() {
        let (ca_1, ca_2, rogue) = (ca(), ca(), ca());
        let g = genesis(&ca_1);
        let pin = hex::encode(roster_hash(&g.document));
        let good = bundle(&g, None, &[ca_1.as_str()]);
        assert!(check_federation(&good, &g, &pinned(&pin)).is_ok());
        assert!(check_federation(&good, &g, &pinned(&pin.to_uppercase())).is_ok());
        assert!(
            check_federation(&good, &g, &pinned_none()).is_ok(),
            "warned, not refused"
        );
        let other = "ab".repeat(32);
        let e = check_federation(&good, &g, &pinned(&other)).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("genesis pin {pin}, not {other}")),
            "{e}"
        );
        // A CA swapped in: refused, also under a version added unsigned or signed by another
        // key.
        let not_named = "not the ones named by its genesis";
        let swapped = bundle(&g, None, &[rogue.as_str()]);
        let e = check_federation(&swapped, &g, &pinned(&pin)).unwrap_err();
        assert!(e.to_string().contains(not_named), "{e}");
        for signer in [None, Some(&key(9))] {
            let forged = bundle(&g, Some(later(&g, &rogue, signer)), &[rogue.as_str()]);
            let e = check_federation(&forged, &g, &pinned(&pin)).unwrap_err();
            assert!(e.to_string().contains(not_named), "{e}");
        }
        // One the operators vouch for by its fingerprint: taken (an authority and a CA both
        // changed since the genesis leave join nothing else to check it by).
        let fingerprint = intelmesh_node::cert_facts::sha256_fingerprint_pem(&rogue).unwrap();
        let colons: Vec<String> = fingerprint
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_uppercase())
            .collect();
        let vouched = [colons.join(":")];
        let with = Expected {
            pin: Some(&pin),
            ca_sha256: &vouched,
        };
        assert!(check_federation(&swapped, &g, &with).is_ok());
        let e = check_federation(&swapped, &g, &pinned(&pin)).unwrap_err();
        assert!(e.to_string().contains(&fingerprint), "{e}");
        // Nor by a version the genesis authority signed: its signatures say nothing of the
        // version's federation or chain.
        let rotated = bundle(&g, Some(later(&g, &ca_2, Some(&key(1)))), &[ca_2.as_str()]);
        let e = check_federation(&rotated, &g, &pinned(&pin)).unwrap_err();
        assert!(e.to_string().contains(not_named), "{e}");
        // A genesis its authority did not sign is no federation's.
        let mut unsigned = g.clone();
        unsigned.signatures.clear();
        let e = check_federation(
            &bundle(&unsigned, None, &[ca_1.as_str()]),
            &unsigned,
            &pinned_none(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("genesis is not valid"), "{e}");
    }
}
