//! A node in a child process (`node-process`), for tests that kill a node outright: SIGKILL
//! ends it mid-write with no goodbye on its links, which an in-process shutdown cannot do.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use intelmesh_node::provision::ProvisionedNode;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::node_status_client::NodeStatusClient;

/// How long a child may take to open its store and bind its listeners.
const START_PATIENCE: Duration = Duration::from_secs(30);

pub struct NodeProcess {
    child: Child,
    node: ProvisionedNode,
}

impl NodeProcess {
    /// Starts `node` from its config file with `exe` (the test's
    /// `env!("CARGO_BIN_EXE_node-process")`, which only a test target sees) and waits until it
    /// serves.
    pub async fn spawn(exe: &str, node: &ProvisionedNode) -> NodeProcess {
        let mut child = Command::new(exe)
            .arg(&node.config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node-process starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let ready = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = tokio::time::timeout(START_PATIENCE, ready)
            .await
            .expect("the child node starts in time")
            .expect("reader joins")
            .expect("child stdout readable");
        assert_eq!(line.trim(), "READY", "the child node failed to start");
        NodeProcess {
            child,
            node: node.clone(),
        }
    }

    /// SIGKILL, and reaps the child.
    pub fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        // Already gone is fine: the point is that it is not running after this.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the node hangs with every socket open, so its peers' links stay up and only
    /// its silence (past `dead_after_ms`) tells them anything.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`NodeProcess::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let status = std::process::Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {which} failed: {status}");
    }

    /// The node's status over its API, with its provisioned service certificate.
    pub async fn status(&self) -> Result<pb::StatusResponse, String> {
        let channel = intelmesh_node::client::api_channel(
            self.node.config.api.listen,
            &self.node.spec.org,
            &self.node.api_ca,
            &self.node.client_cert,
            &self.node.client_key,
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
        NodeStatusClient::new(channel)
            .status(pb::StatusRequest::default())
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| s.to_string())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // A failed test must not leave a node running.
        self.kill_now();
    }
}
