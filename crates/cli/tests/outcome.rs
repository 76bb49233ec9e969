//! Client commands tell the truth: each failure names its real cause (node not running,
//! certificate refused, node certificate not trusted, timeout, connection lost after the request
//! was sent), and a submit whose answer is lost is retried with its idempotency key, or ends as
//! "outcome unknown" (exit 3) with the key that finishes it safely.
//!
//! The client is the real binary. The node is a real one run in this process (mutual TLS on
//! 127.0.0.1, a store in a temp dir), so a test can see the moment its entry is durable; a TCP
//! relay in front of it cuts the connection at that moment, as a node killed mid-call would.

#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use intelmesh_core::OrgId;
use intelmesh_node::provision::{loopback_specs, provision, ProvisionedNode};
use intelmesh_node::RunningNode;
use intelmesh_store::Store;
use serde_json::Value;
use support::{intelmesh_owned, one_error_line};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ORG: &str = "AU-AFP";

/// One node (a hub of its own) serving in this process.
struct Node {
    rt: tokio::runtime::Runtime,
    prov: ProvisionedNode,
    node: RunningNode,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        intelmesh_node::tls::install_crypto_provider();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let specs = loopback_specs(ORG, &[]).unwrap();
        let fed = provision(dir.path(), &specs, &[], &Default::default()).unwrap();
        let prov = fed.nodes[&org()].clone();
        let node = rt
            .block_on(intelmesh_node::start(prov.config.clone()))
            .unwrap();
        Node {
            rt,
            prov,
            node,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.node.api_addr
    }

    /// The seq of the node's last own entry.
    fn head(&self) -> u64 {
        own_head(self.node.state())
    }

    /// Connection options for the node's API at `addr` (the node's own, or a relay's).
    fn conn(&self, addr: SocketAddr) -> Vec<String> {
        self.conn_with(addr, &self.prov.client_cert, &self.prov.client_key)
    }

    fn conn_with(&self, addr: SocketAddr, cert: &Path, key: &Path) -> Vec<String> {
        let s = |p: &Path| p.to_str().unwrap().to_string();
        vec![
            "--api".into(),
            addr.to_string(),
            "--node-org".into(),
            ORG.into(),
            "--ca".into(),
            s(&self.prov.api_ca),
            "--cert".into(),
            s(cert),
            "--key".into(),
            s(key),
        ]
    }

    /// A relay to the node's API that cuts a connection whenever `cut()` holds as the node
    /// sends something on it.
    fn relay(&self, cut: impl Fn() -> bool + Send + Sync + 'static) -> SocketAddr {
        let listener = self.rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (upstream, cut) = (self.addr(), Arc::new(cut) as Cut);
        self.rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, Arc::clone(&cut)));
            }
        });
        addr
    }

    /// A relay that cuts once the node holds more than `after` own entries: the answer to the
    /// call that published is never passed on. With `once`, only the first connection is cut.
    fn cut_after_publishing(&self, after: u64, once: bool) -> SocketAddr {
        let state = Arc::clone(self.node.state());
        let done = AtomicBool::new(false);
        self.relay(move || {
            if own_head(&state) <= after || (once && done.load(Ordering::SeqCst)) {
                return false;
            }
            done.store(true, Ordering::SeqCst);
            true
        })
    }
}

type Cut = Arc<dyn Fn() -> bool + Send + Sync>;

fn org() -> OrgId {
    OrgId::parse(ORG).unwrap()
}

fn own_head(state: &intelmesh_node::NodeState) -> u64 {
    state
        .store
        .vector()
        .unwrap()
        .get(&org())
        .copied()
        .unwrap_or(0)
}

/// Passes bytes both ways; when the node sends something while `cut()` holds, closes both
/// sides instead.
async fn relay(mut client: TcpStream, upstream: SocketAddr, cut: Cut) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            n = from_client.read(&mut up) => match n {
                Ok(n) if n > 0 => {
                    if to_server.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            n = from_server.read(&mut down) => match n {
                Ok(n) if n > 0 && !cut() => {
                    if to_client.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
        }
    }
}

fn run(args: &[&str], conn: &[String]) -> Output {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend_from_slice(conn);
    intelmesh_owned(&all)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_lost_answer_is_retried_with_the_same_key_and_signs_once() {
    let node = Node::start();
    let before = node.head();
    let relay = node.cut_after_publishing(before, true);
    let out = run(
        &["submit", "--tlp", "green", "--json", "retried.example"],
        &node.conn(relay),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        answer["replayed"], true,
        "the retry was answered from the receipt"
    );
    assert_eq!(answer["assigned"][0]["seq"], before + 1);
    assert_eq!(node.head(), before + 1, "signed once: {answer}");
}

#[test]
fn an_answer_lost_for_good_is_an_unknown_outcome_with_the_key_to_finish_it() {
    let node = Node::start();
    let before = node.head();
    let relay = node.cut_after_publishing(before, false);
    let out = run(
        &["submit", "--tlp", "green", "lost.example"],
        &node.conn(relay),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let line = one_error_line(&out);
    let expected = format!(
        "error: outcome unknown: the connection to {ORG} ({relay}) broke after the request was sent; it may have been published. Re-run with --idempotency-key "
    );
    assert!(line.starts_with(&expected), "{line}");
    assert!(
        line.contains("to finish it safely (nothing is signed twice), or check with `intelmesh get lost.example`"),
        "{line}"
    );
    let key = line[expected.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        node.head(),
        before + 1,
        "published once, retries signed nothing"
    );

    // The key finishes it: nothing is signed again, and the answer is the first one.
    let direct = node.conn(node.addr());
    let out = run(
        &[
            "submit",
            "--tlp",
            "green",
            "--idempotency-key",
            &key,
            "lost.example",
        ],
        &direct,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.contains(&format!("{ORG}#{}", before + 1)), "{text}");
    assert!(
        text.contains(&format!(
            "published by an earlier request with idempotency key {key}, nothing signed again"
        )),
        "{text}"
    );
    assert_eq!(node.head(), before + 1);

    // The key belongs to that request: other values under it are refused as bad input.
    let out = run(
        &[
            "submit",
            "--tlp",
            "green",
            "--idempotency-key",
            &key,
            "other.example",
        ],
        &direct,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        one_error_line(&out).contains("idempotency key reused for a different request"),
        "{}",
        one_error_line(&out)
    );
    assert_eq!(node.head(), before + 1);

    let help = stdout(&run(&["submit", "--help"], &[]));
    assert!(help.contains("3 outcome unknown"), "{help}");
}

/// A CA the node does not know, and a service certificate of `ORG` it issued: (CA, cert, key).
fn foreign(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = intelmesh_node::pki::Ca::generate_named(
        &intelmesh_node::pki::CaRole::Federation,
        "some other service CA",
    )
    .unwrap();
    ca.write(dir, "foreign-ca").unwrap();
    ca.issue_service(&org(), "soc")
        .unwrap()
        .write(dir, "foreign")
        .unwrap();
    (
        dir.join("foreign-ca.pem"),
        dir.join("foreign.pem"),
        dir.join("foreign.key"),
    )
}

#[test]
fn each_failure_names_its_cause() {
    let node = Node::start();
    let dir = tempfile::tempdir().unwrap();

    // Nothing listens: the node is not running there.
    let closed = intelmesh_node::provision::free_loopback_addr().unwrap();
    let out = run(&["status"], &node.conn(closed));
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&out);
    assert!(
        line.contains(&format!(
            "nothing is listening at {closed}: is the node running"
        )),
        "{line}"
    );

    // A certificate from another CA: the node refuses it in the handshake. A read says so, and
    // so does a submit (which then knows that nothing was published, so it is no unknown).
    let (other_ca, cert, key) = foreign(dir.path());
    let foreign = node.conn_with(node.addr(), &cert, &key);
    let refused = format!("{ORG} refused this client's certificate (TLS alert ");
    for args in [&["status"][..], &["submit", "--tlp", "green", "x.example"]] {
        let out = run(args, &foreign);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let line = one_error_line(&out);
        assert!(line.contains(&refused), "{args:?}: {line}");
        assert!(line.contains("issued by AU-AFP's service CA"), "{line}");
    }
    assert_eq!(node.head(), 0);

    // The node's certificate is not one --ca vouches for.
    let mut wrong_ca = node.conn(node.addr());
    wrong_ca[5] = other_ca.to_str().unwrap().to_string();
    let line = one_error_line(&run(&["status"], &wrong_ca));
    assert!(
        line.contains("does not check out")
            && line.contains("is --ca the CA of AU-AFP's API certificate"),
        "{line}"
    );

    // Something accepts connections and never answers.
    let silent = node.rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let silent_addr = silent.local_addr().unwrap();
    node.rt.spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let out = run(&["status", "--timeout", "1"], &node.conn(silent_addr));
    let line = one_error_line(&out);
    assert!(
        line.contains(&format!(
            "no answer from {silent_addr} within 1 s while connecting"
        )),
        "{line}"
    );
}
