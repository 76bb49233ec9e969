//! `intelmesh node join`: a node directory `node init` wrote, with the bundle the hub
//! operators issued, becomes a member's node: its certificate, the federation's CA and
//! genesis (checked against the pin given through another channel), and its config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use intelmesh_node::config::{ListenerConfig, NodeConfig, Role, RosterConfig};
use intelmesh_node::pki::write_pem;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::roster_hash;
use prost::Message;

use crate::enrol_cmd::{
    absolute, dir_org, distinct_listeners, write_config, write_file, ENCRYPTION_KEY_FILE,
};
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
    check_federation(&bundle, genesis, a.genesis_pin.as_deref())?;
    write_pem(&a.dir.join("node.pem"), &bundle.node_cert_pem, false)?;
    write_pem(
        &a.dir.join("federation-ca.pem"),
        &bundle.federation_ca_pem.join("\n"),
        false,
    )?;
    write_file(&a.dir.join("genesis.roster"), &genesis.encode_to_vec())?;
    let pin = hex::encode(&bundle.genesis_hash);
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
    write_config(&a.dir.join("node.toml"), &config)?;
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
    expected_pin: Option<&str>,
) -> anyhow::Result<()> {
    let pin = hex::encode(&bundle.genesis_hash);
    match expected_pin.map(|p| p.trim().to_ascii_lowercase()) {
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
    // The CA of the version the bundle was issued at (the genesis one, or since rotated).
    let version = bundle.current.as_ref().unwrap_or(genesis);
    let document = pb::RosterDocument::decode(version.document.as_slice())
        .map_err(|e| usage(format!("the bundle's roster does not decode: {e}")))?;
    let named: std::collections::BTreeSet<&str> =
        document.ca_certs_pem.iter().map(|p| p.trim()).collect();
    let given: std::collections::BTreeSet<&str> =
        bundle.federation_ca_pem.iter().map(|p| p.trim()).collect();
    if named != given {
        return Err(usage(
            "the bundle's federation CA certificates are not the ones its roster names: the bundle is not consistent; ask the hub operators for a new one",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(ca: &[&str]) -> pb::SignedRoster {
        let document = pb::RosterDocument {
            ca_certs_pem: ca.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        pb::SignedRoster {
            document: document.encode_to_vec(),
            signatures: Vec::new(),
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

    #[test]
    fn a_bundle_is_of_the_pinned_federation_and_gives_the_ca_its_roster_names() {
        let genesis = roster(&["CA-1"]);
        let pin = hex::encode(roster_hash(&genesis.document));
        let good = bundle(&genesis, None, &["CA-1"]);
        assert!(check_federation(&good, &genesis, Some(&pin)).is_ok());
        assert!(check_federation(&good, &genesis, Some(&pin.to_uppercase())).is_ok());
        assert!(
            check_federation(&good, &genesis, None).is_ok(),
            "warned, not refused"
        );
        let other = "ab".repeat(32);
        let e = check_federation(&good, &genesis, Some(&other)).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("genesis pin {pin}, not {other}")),
            "{e}"
        );
        // A CA swapped in: refused; a CA the current version rotated to: taken.
        let swapped = bundle(&genesis, None, &["ROGUE-CA"]);
        let e = check_federation(&swapped, &genesis, Some(&pin)).unwrap_err();
        assert!(
            e.to_string().contains("not the ones its roster names"),
            "{e}"
        );
        let rotated = bundle(&genesis, Some(roster(&["CA-1", "CA-2"])), &["CA-2", "CA-1"]);
        assert!(check_federation(&rotated, &genesis, Some(&pin)).is_ok());
    }
}
