//! `intelmesh run`: one node from its config file, until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use intelmesh_node::NodeConfig;

use crate::usage;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The node's TOML config (see deploy/agency.toml); relative paths in it are relative to
    /// the file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Only check the config (ids, peers, that every file exists) and exit.
    #[arg(long)]
    pub check: bool,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // A config mistake is the operator's to fix: exit code 2 with what is wrong.
    let cfg = NodeConfig::load(&args.config).map_err(|e| usage(e.to_string()))?;
    if args.check {
        println!(
            "config {} is valid: org {}, {} peers, federation on {}, API on {}",
            args.config.display(),
            cfg.org,
            cfg.peer.len(),
            cfg.federation.listen,
            cfg.api.listen
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let node = intelmesh_node::start(cfg)
        .await
        .with_context(|| format!("starting the node of {}", args.config.display()))?;
    tracing::info!("running; stop with SIGINT (Ctrl-C) or SIGTERM");
    let signal = tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for SIGINT")?;
            "SIGINT"
        }
        _ = terminate.recv() => "SIGTERM",
    };
    tracing::info!(signal, "stopping");
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
