//! Calling a node's TAXII gateway from tests as third-party software does: the Python of
//! `scripts/python-deps.sh` (`INTELMESH_PYTHON`) running `tests/taxii/tool.py` (raw HTTP with
//! requests) or `tests/taxii/client_check.py` (taxii2-client, stix2, stix2-validator).

use std::path::PathBuf;
use std::process::Command;

use intelmesh_core::OrgId;
use intelmesh_node::provision::ProvisionedNode;
use serde_json::Value;

use crate::net::TestNet;

pub fn python() -> PathBuf {
    match std::env::var_os("INTELMESH_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "INTELMESH_PYTHON is not set: run scripts/test.sh, or export \
             INTELMESH_PYTHON=$(scripts/python-deps.sh | tail -n 1) before cargo test"
        ),
    }
}

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("taxii")
        .join(name)
}

pub struct Gateway {
    pub collection: String,
    pub ca: PathBuf,
    pub writer: (String, String),
    pub reader: (String, String),
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub base: String,
}

pub async fn gateway(net: &TestNet, at: &OrgId) -> Gateway {
    let addr = net.node(at).taxii_addr.expect("the gateway listens");
    gateway_at(&net.fed.nodes[at], addr).await
}

/// The gateway of provisioned node `p` listening on `addr`, wherever the node runs (in this
/// process or a child).
pub async fn gateway_at(p: &ProvisionedNode, addr: std::net::SocketAddr) -> Gateway {
    let base = format!("https://{addr}");
    let credentials = p.taxii.clone().expect("provisioned credentials");
    let mut g = Gateway {
        collection: String::new(),
        ca: p.api_ca.clone(),
        writer: credentials.writer,
        reader: credentials.reader,
        client_cert: p.client_cert.clone(),
        client_key: p.client_key.clone(),
        base,
    };
    let collections = run_tool(
        &g,
        &["get", &format!("{}/intelmesh/collections/", g.base)],
        &g.reader,
    )
    .await;
    assert_eq!(collections["status"], 200, "{collections}");
    let body: Value = serde_json::from_str(collections["body"].as_str().unwrap()).unwrap();
    let id = body["collections"][0]["id"]
        .as_str()
        .expect("one collection")
        .to_string();
    g.collection = format!("{}/intelmesh/collections/{id}/", g.base);
    g
}

/// Runs `tool.py` with `args` as `user`, and returns its JSON answer.
pub async fn run_tool(g: &Gateway, args: &[&str], user: &(String, String)) -> Value {
    let mut all: Vec<String> = vec![script("tool.py").display().to_string()];
    all.push(args[0].to_string());
    all.push(args[1].to_string());
    all.push(g.ca.display().to_string());
    all.extend(args[2..].iter().map(|s| s.to_string()));
    if !user.0.is_empty() {
        all.extend([
            "--user".into(),
            user.0.clone(),
            "--password".into(),
            user.1.clone(),
        ]);
    }
    run_python(all).await
}

pub async fn run_python(args: Vec<String>) -> Value {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .args(&args)
            // requests lets these override the CA a client names.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

pub fn patterns(read: &Value) -> Vec<String> {
    read["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["pattern"].as_str().map(str::to_string))
        .collect()
}
