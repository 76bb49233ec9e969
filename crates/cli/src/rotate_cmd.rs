//! `intelmesh node rotate-key`: a new signing key for a node in roster mode, without a restart. The
//! key goes next to the configured one (`<signing_key>.next`); a running node takes it within
//! a poll, a stopped one is switched here on its store's head, with the node's own code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use intelmesh_core::KeyId;
use intelmesh_node::config::NodeConfig;
use intelmesh_node::rotate_key::{rotate_offline, OfflineError};
use intelmesh_node::rotation::{request_on_disk, stage_new_key, RotationFiles};

#[derive(clap::Args, Debug)]
pub struct RotateKeyArgs {
    /// The node's config file (roster mode).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// How long to wait for a running node to take the new key.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout_secs: u64,
}

pub async fn rotate_key(args: RotateKeyArgs) -> anyhow::Result<ExitCode> {
    let cfg = NodeConfig::load(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    if cfg.roster.is_none() {
        return Err(crate::usage(format!(
            "{} has no [roster] section: in static mode, add the new key to every member's key list instead",
            args.config.display()
        )));
    }
    let files = RotationFiles::of(&cfg.signing_key);
    let new = stage_new_key(&files)?;
    let public = cfg.signing_key.with_extension("pub");
    match rotate_offline(cfg).await {
        Ok(_) => {}
        Err(OfflineError::NodeRunning(_)) => wait_taken(&files, args.timeout_secs).await?,
        Err(e) => {
            // Nothing runs to take it later: leave no key behind that a start would pick up.
            let _ = std::fs::remove_file(files.next());
            return Err(e.into());
        }
    }
    let request = files.request();
    let taken = request_on_disk(&files)?.filter(|p| p.new_key == new);
    let Some(rotated) = taken else {
        anyhow::bail!(
            "{} was removed but {} is not the request for the new key: the rotation was cancelled",
            files.next().display(),
            request.display()
        );
    };
    // What the operators and `report-compromise --key` may need: the public key in use.
    intelmesh_node::durable::replace_public(
        &public,
        format!("{}\n", hex::encode(rotated.new_key.as_bytes())).as_bytes(),
    )?;
    out!(
        "{} now signs with key {} from seq {} (the old key is kept as {}).\nSend {} to the hub operators: `intelmesh admin members rotate-key --request FILE`. Until they publish it, peers hold this node's new entries; none is lost.",
        rotated.org,
        KeyId::of(&rotated.new_key),
        rotated.first_seq(),
        files.old(KeyId::of(&rotated.old_key)).display(),
        request.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Waits for the running node to move `.next` in place (it writes the request first).
async fn wait_taken(files: &RotationFiles, timeout_secs: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    while files.next().exists() {
        if Instant::now() > deadline {
            anyhow::bail!(
                "the running node did not take {} within {timeout_secs} s: its log says why (ERROR \"new signing key not taken\"); the key stays there and the node keeps trying; remove the file to cancel",
                files.next().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
