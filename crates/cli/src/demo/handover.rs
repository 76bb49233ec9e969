//! The end of a successful demo: the summary, and with `--keep` the hand-over of the running
//! nodes (endpoints.json, the pids file, and how to use and stop them).

use std::path::Path;

use anyhow::Context;
use intelmesh_node::config::Role;

use super::enrol::{Operators, PROPOSER};
use super::{DemoNode, Outcome, AGENCIES, HUB};
use crate::conn::{EndpointsFile, NodeEndpoint};
use crate::fleet::Fleet;
use crate::probe::fmt_duration;

pub(super) fn summary(o: &Outcome, nodes: &[DemoNode]) {
    let orgs: Vec<&str> = nodes.iter().map(|n| n.api.org.as_str()).collect();
    println!("\nsummary");
    println!(
        "  {} nodes ({}), each its own process; every link and API call over mutual TLS",
        nodes.len(),
        orgs.join(", ")
    );
    println!(
        "  {} indicators signed at agencies and shared; reached every other node in p50 {}, max {} ({} batches)",
        o.shared,
        fmt_duration(o.latency_p50),
        fmt_duration(o.latency_max),
        o.batches
    );
    println!(
        "  {} was SIGKILLed, missed {} entries, and caught up {} after its restart",
        o.victim,
        o.missed,
        fmt_duration(o.catch_up)
    );
    let c = &o.control;
    println!(
        "  {} joined while everything ran, from its own enrolment request, and caught up in {}; no other node restarted or changed a file",
        c.newcomer,
        fmt_duration(c.newcomer_caught_up)
    );
    println!(
        "  {} rotated its signing key without a restart: key {} up to seq {}, key {} from there on",
        c.rotated,
        c.old_key,
        c.first_new_seq.saturating_sub(1),
        c.new_key
    );
    println!(
        "  {} was suspended: {} nodes ran the new roster and held no link with it in p50 {}, max {} from the publishing signature",
        c.suspended,
        c.cut_nodes,
        fmt_duration(c.cut_p50),
        fmt_duration(c.cut_max)
    );
    println!(
        "  converged: the {} active nodes hold {} with state digest {}",
        nodes.len() - 1,
        o.vector,
        o.digest
    );
}

/// Hands the running nodes over to the user: endpoints.json, pids, and how to stop them.
pub(super) fn keep(fleet: Fleet, dir: &Path, nodes: &[DemoNode]) -> anyhow::Result<()> {
    // Written before letting go: if writing fails, dropping the fleet still stops the nodes.
    let pids = fleet.pids();
    let endpoints = EndpointsFile {
        dir: dir.to_path_buf(),
        nodes: nodes
            .iter()
            .map(|n| {
                let taxii = n.files.taxii.as_ref();
                let console = n.files.console;
                let (admin_cert, admin_key) = Operators::admin_cert(dir, PROPOSER);
                NodeEndpoint {
                    org: n.api.org.to_string(),
                    role: match n.files.role {
                        Role::Hub => "hub".to_string(),
                        Role::Agency => "agency".to_string(),
                    },
                    federation: n.files.federation,
                    api: n.files.api,
                    client_cert: n.files.client_cert(),
                    client_key: n.files.client_key(),
                    api_ca: n.files.api_ca(),
                    taxii_url: taxii.map(|t| format!("https://{}/taxii2/", t.listen)),
                    taxii_user: taxii.map(|t| t.credentials.writer.0.clone()),
                    taxii_password: taxii.map(|t| t.credentials.writer.1.clone()),
                    taxii_ca: taxii.map(|_| n.files.api_ca()),
                    taxii_reader_user: taxii.map(|t| t.credentials.reader.0.clone()),
                    taxii_reader_password: taxii.map(|t| t.credentials.reader.1.clone()),
                    metrics_url: n.files.metrics.map(|m| format!("http://{m}/metrics")),
                    console_url: console.map(|c| format!("https://{c}/")),
                    console_cert: console.map(|_| admin_cert.clone()),
                    console_key: console.map(|_| admin_key.clone()),
                    config: n.files.config.clone(),
                    log: n.log.clone(),
                    pid: pids.get(&n.api.org).copied(),
                }
            })
            .collect(),
    };
    let endpoints_path = dir.join("endpoints.json");
    endpoints.write(&endpoints_path)?;
    let pid_list: Vec<String> = pids.values().map(ToString::to_string).collect();
    std::fs::write(dir.join("pids"), format!("{}\n", pid_list.join("\n")))
        .with_context(|| format!("writing {}", dir.join("pids").display()))?;
    fleet.detach();
    println!("\nthe federation keeps running:");
    for (o, pid) in &pids {
        println!("  {:<11} pid {pid}", o.as_str());
    }
    let file = endpoints_path.display();
    println!("  endpoints: {file}");
    println!("  try:  intelmesh status --endpoints {file} --node {HUB}");
    println!(
        "        intelmesh submit --endpoints {file} --node {} --tlp green 'evil[.]example' 198.51.100.7",
        AGENCIES[0].0
    );
    println!("        intelmesh watch --endpoints {file} --node {HUB} --from-start");
    if let Some((n, t)) = nodes
        .iter()
        .find_map(|n| n.files.taxii.as_ref().map(|t| (n, t)))
    {
        // Any TAXII 2.1 client works the same way (taxii2-client, OpenCTI, MISP's scripts).
        println!(
            "        curl --cacert {} -u {}:{} -H 'Accept: application/taxii+json;version=2.1' https://{}/taxii2/   # TAXII 2.1 at {}",
            n.files.api_ca().display(),
            t.credentials.reader.0,
            t.credentials.reader.1,
            t.listen,
            n.api.org
        );
    }
    if let Some(hub) = nodes.iter().find(|n| n.files.role == Role::Hub) {
        let (cert, key) = Operators::admin_cert(dir, PROPOSER);
        println!(
            "        intelmesh admin status --api {} --node-org {HUB} --ca {} --cert {} --key {}",
            hub.files.api,
            hub.files.api_ca().display(),
            cert.display(),
            key.display()
        );
        if let Some(console) = hub.files.console {
            console_hint(console, &hub.files.api_ca(), &cert, &key);
        }
    }
    println!("  stop: kill $(cat {})", dir.join("pids").display());
    Ok(())
}

/// How to open the hub console: in a browser (the operator's certificate as PKCS#12, the
/// hub's API CA trusted), or with curl.
fn console_hint(console: std::net::SocketAddr, ca: &Path, cert: &Path, key: &Path) {
    let p12 = cert.with_extension("p12");
    println!("  hub console (operators only: {PROPOSER}'s admin certificate):");
    println!(
        "        curl --cacert {} --cert {} --key {} https://{console}/api/federation.json",
        ca.display(),
        cert.display(),
        key.display()
    );
    println!(
        "        in a browser: openssl pkcs12 -export -in {} -inkey {} -out {} -passout pass:",
        cert.display(),
        key.display(),
        p12.display()
    );
    println!(
        "        import {} as your certificate and {} as a trusted CA, then open https://{console}/",
        p12.display(),
        ca.display()
    );
}
