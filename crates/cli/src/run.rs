//! `intelmesh run`: one node from its config file, until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use intelmesh_node::preflight::CertificateTimeError;
use intelmesh_node::private_files::KeyFileError;
use intelmesh_node::NodeConfig;

use crate::usage;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The node's TOML config (see deploy/agency.toml); relative paths in it are relative to
    /// the file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Only check the config and every file it names (certificates, keys and CAs match and
    /// are private where they must be, the signing key is listed, the listen addresses are
    /// free, the data directory is this node's), report every problem, and exit: 0 if none, 2
    /// otherwise.
    #[arg(long)]
    pub check: bool,
}

/// The `log_format` a config file sets, read before logging starts (a config that does not
/// read is reported once logging runs, by `run`).
pub fn configured_log_format(
    config: &std::path::Path,
) -> Option<intelmesh_node::config::LogFormat> {
    let text = std::fs::read_to_string(config).ok()?;
    let value: toml::Table = toml::from_str(&text).ok()?;
    value.get("log_format")?.as_str()?.parse().ok()
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.check {
        return check(args.config).await;
    }
    // A config mistake is the operator's to fix: exit code 2 with what is wrong.
    let cfg = NodeConfig::load(&args.config).map_err(|e| usage(e.to_string()))?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let node = intelmesh_node::start(cfg).await.map_err(|e| {
        // A key file others may read, or a certificate out of its validity period, is the
        // operator's to fix, as a config mistake is.
        if e.is::<KeyFileError>() || e.is::<CertificateTimeError>() {
            usage(e.to_string())
        } else {
            e.context(format!("starting the node of {}", args.config.display()))
        }
    })?;
    tracing::info!("running; stop with SIGINT (Ctrl-C) or SIGTERM");
    crate::systemd::ready();
    let signal = tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for SIGINT")?;
            "SIGINT"
        }
        _ = terminate.recv() => "SIGTERM",
        never = crate::systemd::feed_watchdog(&node) => match never {},
    };
    crate::systemd::stopping();
    tracing::info!(signal, "stopping");
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `--check`: every finding on standard error, one per line, and exit code 2 if there is any.
async fn check(config: PathBuf) -> anyhow::Result<ExitCode> {
    let path = config.clone();
    let report = tokio::task::spawn_blocking(move || intelmesh_node::preflight::check(&path))
        .await
        .context("checking the config")?;
    match (&report.config, report.findings.is_empty()) {
        (Some(cfg), true) => {
            out!(
                "config {} is valid: org {}, {} peers, federation on {}, API on {}",
                config.display(),
                cfg.org,
                cfg.peer.len(),
                cfg.federation.listen,
                cfg.api.listen
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            let n = report.findings.len();
            eprintln!(
                "config {}: {n} problem{} to fix before the node can start:",
                config.display(),
                if n == 1 { "" } else { "s" }
            );
            for finding in &report.findings {
                eprintln!("  {finding}");
            }
            Ok(ExitCode::from(2))
        }
    }
}
