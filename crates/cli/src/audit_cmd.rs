//! `intelmesh audit`: searches the node's audit trail of API calls (by time, caller, method,
//! and value through the node's audit key), and `intelmesh audit verify` checks its whole hash
//! chain. Both only read, so they run beside the node.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use intelmesh_audit::{Filter, Record};
use intelmesh_node::audit::{dir_of, trail};
use intelmesh_node::NodeConfig;

use crate::{input, usage};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    which: Option<AuditCmd>,
    #[command(flatten)]
    search: SearchArgs,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the whole chain: OK with the count, or the file and line where it breaks (exit 1).
    Verify {
        /// The node's config file (the trail is in its data_dir/audit).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Args)]
struct SearchArgs {
    /// The node's config file (the trail is in its data_dir/audit).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Calls from this time: RFC 3339, Unix ms, or an age (15m, 12h, 7d).
    #[arg(long, value_parser = when)]
    since: Option<i64>,
    /// Calls before this time: RFC 3339, Unix ms, or an age.
    #[arg(long, value_parser = when)]
    until: Option<i64>,
    /// Calls by this org, or by one of its services or users (ORG/NAME).
    #[arg(long, value_name = "ORG[/NAME]")]
    caller: Option<String>,
    /// Calls to this method (Indicators/Lookup) or service (Indicators, Admin, TAXII).
    #[arg(long)]
    method: Option<String>,
    /// Calls that named this value (any spelling: defanged, any case); needs the node's audit
    /// key, in the trail's directory.
    #[arg(long)]
    value: Option<String>,
    /// One JSON record per line.
    #[arg(long)]
    json: bool,
}

/// A point in time: RFC 3339, Unix ms, or an age before now.
fn when(s: &str) -> Result<i64, String> {
    input::parse_time(s).or_else(|time| {
        input::parse_since(s).map_err(|age| match s.contains(['-', ':', 'T']) {
            // Meant as a time: say what is wrong with it as one.
            true => time,
            false => age,
        })
    })
}

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.which {
        Some(AuditCmd::Verify { config }) => verify(&config),
        None => search(args.search),
    }
}

fn trail_dir(config: &std::path::Path) -> anyhow::Result<PathBuf> {
    let cfg = NodeConfig::read(config)?;
    let dir = dir_of(&cfg.data_dir);
    if !dir.is_dir() {
        return Err(usage(format!(
            "{}: no audit trail (has the node run with [audit] enabled?)",
            dir.display()
        )));
    }
    Ok(dir)
}

fn verify(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let dir = trail_dir(config)?;
    match trail::read(&dir, |_| {}) {
        Ok(s) => {
            out!(
                "audit trail OK: {} records in {} files, last seq {} hash {}",
                s.records,
                s.files,
                s.last.seq,
                hex::encode(s.last.hash)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("audit trail BROKEN in {}: {e}", dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let config = args
        .config
        .ok_or_else(|| usage("--config: give the node's config file"))?;
    let dir = trail_dir(&config)?;
    let (org, name) = match args.caller.as_deref().map(|c| c.split_once('/')) {
        None => (None, None),
        Some(None) => (args.caller.clone(), None),
        Some(Some((org, name))) => (Some(org.to_string()), Some(name.to_string())),
    };
    let digests = match &args.value {
        Some(v) => {
            let key = trail::load_key(&dir)?;
            Some(key.search_digests(v).into_iter().collect())
        }
        None => None,
    };
    let filter = Filter {
        since_ms: args.since,
        until_ms: args.until,
        org,
        name,
        method: args.method,
        digests,
    };
    let json = args.json;
    let mut shown = 0u64;
    let read = trail::read(&dir, |r| {
        if filter.matches(r) {
            shown += 1;
            print_record(r, json);
        }
    });
    match read {
        Ok(s) => {
            // On stderr, so the records alone go to a pipe.
            eprintln!(
                "{shown} of {} records matched; the chain checks out to seq {}",
                s.records, s.last.seq
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "audit trail BROKEN in {} ({shown} records shown before it): {e}",
                dir.display()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_record(r: &Record, json: bool) {
    if json {
        out!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    let who = match (r.org.as_str(), r.name.as_str()) {
        ("", _) => "(nobody)".to_string(),
        (org, "") => org.to_string(),
        (org, name) => format!("{org}/{name}"),
    };
    let part = if r.parts > 1 {
        format!(" (part {}/{})", r.part, r.parts)
    } else {
        String::new()
    };
    out!(
        "{}  #{}  {who} ({})  {}  values={}{part}  {} ({})",
        intelmesh_interop::format_timestamp(r.time_ms),
        r.seq,
        r.role,
        r.method,
        r.values,
        r.result,
        r.code
    );
}
