//! Child process of the hub failover test: one node run from its config file until it is
//! killed, so the test can SIGKILL it (no orderly end of its links, its store left as a crash
//! leaves it) and start it again on the same data directory.
//!
//! Usage: `node-process CONFIG`. Prints `READY` once both listeners are bound.

use std::io::Write;

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: node-process CONFIG")?;
    let cfg = intelmesh_node::NodeConfig::load(std::path::Path::new(&path))?;
    let _node = intelmesh_node::start(cfg).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY")?;
    out.flush()?;
    drop(out);
    // Runs until the test kills it.
    std::future::pending::<()>().await;
    Ok(())
}
