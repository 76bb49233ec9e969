//! `intelmesh audit`: searches the node's audit trail of API calls (by time, caller, method,
//! and value through the node's audit key), `intelmesh audit verify` checks its whole hash
//! chain, and `intelmesh audit archive` moves its earliest files into an archive that checks
//! on its own. All run beside the node; the first two only read, and read an archive too.

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
        #[command(flatten)]
        trail: TrailArgs,
        /// An archive the trail's earliest files went to: checked too, and that it ends where
        /// the trail begins (a trail's `start` alone proves nothing of what it cut). Give
        /// several, oldest first, when runs went to different directories: each must end
        /// where the next begins.
        #[arg(long, requires = "config")]
        archive: Vec<PathBuf>,
    },
    /// Move the trail's earliest files into an archive directory (to keep or take to other
    /// storage); both the archive and the trail kept check on their own, and the trail kept
    /// says where it begins. Refused, moving nothing, if the trail does not check out.
    Archive {
        /// The node's config file (the trail is in its data_dir/audit).
        #[arg(long)]
        config: PathBuf,
        /// The archive: an empty directory, or the one this trail was archived to before.
        #[arg(long)]
        to: PathBuf,
        /// How many of the most recent files stay (at least 1; the one the node writes and the
        /// last holding a record always stay).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        keep_files: u64,
    },
}

/// Which trail: a node's (by its config) or one in a directory (an archive).
#[derive(Args)]
#[group(required = true, multiple = false)]
struct TrailArgs {
    /// The node's config file (the trail is in its data_dir/audit).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A trail's directory: an archive made by `intelmesh audit archive`.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct SearchArgs {
    /// The node's config file (the trail is in its data_dir/audit).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A trail's directory instead: an archive made by `intelmesh audit archive`.
    #[arg(long, conflicts_with = "config")]
    dir: Option<PathBuf>,
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
        Some(AuditCmd::Verify { trail, archive }) => verify(&trail, &archive),
        Some(AuditCmd::Archive {
            config,
            to,
            keep_files,
        }) => archive(&config, &to, keep_files),
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

/// The directory of the trail `t` names.
fn dir_of_args(t: &TrailArgs) -> anyhow::Result<PathBuf> {
    match (&t.config, &t.dir) {
        (Some(config), _) => trail_dir(config),
        (None, Some(dir)) => trail_in(dir),
        (None, None) => Err(usage(
            "--config: give the node's config file (or --dir, an archive's directory)",
        )),
    }
}

/// `dir` if it holds a trail (a head or a trail file): an archive's directory.
fn trail_in(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let holds_one = (trail::read_head(dir).ok().flatten().is_some())
        || trail::trail_files(dir).is_ok_and(|f| !f.is_empty());
    match holds_one {
        true => Ok(dir.to_path_buf()),
        false => Err(usage(format!(
            "{}: no audit trail there (no head, no trail-NNNNNN.jsonl)",
            dir.display()
        ))),
    }
}

fn verify(t: &TrailArgs, archives: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let dir = dir_of_args(t)?;
    // The archives, oldest first: each checks out and begins where the one before ended.
    let (mut first_begins, mut ended) = (None, None);
    for (i, a) in archives.iter().enumerate() {
        let s = match trail::read(&trail_in(a)?, |_| {}) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("audit archive BROKEN in {}: {e}", a.display());
                return Ok(ExitCode::FAILURE);
            }
        };
        let begins = s.start.map(|st| st.after);
        if i == 0 {
            first_begins = begins;
        } else if begins != ended {
            eprintln!(
                "audit archive BROKEN in {}: it begins after seq {}, but the archive before it ends at seq {}",
                a.display(),
                begins.map_or(0, |h| h.seq),
                ended.map_or(0, |h: intelmesh_audit::Head| h.seq)
            );
            return Ok(ExitCode::FAILURE);
        }
        ended = Some(s.last);
    }
    match trail::read(&dir, |_| {}) {
        Ok(s) if !archives.is_empty() && ended != s.start.map(|s| s.after) => {
            eprintln!(
                "audit trail BROKEN in {}: the last archive ends at seq {}, but the trail begins after {}",
                dir.display(),
                ended.map_or(0, |h| h.seq),
                s.start.map_or("nothing (it was never archived)".to_string(), |s| format!("seq {}", s.after.seq))
            );
            Ok(ExitCode::FAILURE)
        }
        Ok(s) => {
            let begins = match s.start {
                None => String::new(),
                Some(start) => format!(
                    " from {} (the records up to seq {} were archived; the first here links to hash {})",
                    intelmesh_audit::file_name(start.file),
                    start.after.seq,
                    hex::encode(start.after.hash)
                ),
            };
            let joined = match (archives.len(), first_begins) {
                (0, _) => String::new(),
                (n, None) => format!(
                    "; {n} archive(s) check out from seq 1, each ending where the next part begins"
                ),
                // Runs went to another directory before: that one holds the rest.
                (n, Some(own)) => format!(
                    "; {n} archive(s) check out, each ending where the next part begins, from seq {} (an earlier archive not given holds those before)",
                    own.seq + 1
                ),
            };
            out!(
                "audit trail OK: {} records in {} files{begins}, last seq {} hash {}{joined}",
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

fn archive(config: &std::path::Path, to: &std::path::Path, keep: u64) -> anyhow::Result<ExitCode> {
    let dir = trail_dir(config)?;
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    match intelmesh_node::audit::archive::archive(&dir, to, keep) {
        Ok(None) => {
            out!(
                "nothing to archive: the trail in {} keeps its last {keep} file(s) and the last holding a record",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(Some(a)) => {
            let (first, last) = (a.files[0], a.files[a.files.len() - 1]);
            out!(
                "archived {} files ({} to {}, records up to seq {}) to {}; the trail in {} now begins at {}",
                a.files.len(),
                intelmesh_audit::file_name(first),
                intelmesh_audit::file_name(last),
                a.start.after.seq,
                to.display(),
                dir.display(),
                intelmesh_audit::file_name(a.start.file)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("audit trail not archived: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let dir = dir_of_args(&TrailArgs {
        config: args.config,
        dir: args.dir,
    })?;
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
