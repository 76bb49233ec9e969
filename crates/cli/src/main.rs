//! The `intelmesh` command: runs a node, talks to one, provisions certificates, runs the demo
//! federation, checks stores and measures throughput.

/// `println!` for a command's results. A reader that went away (`intelmesh query … | head`)
/// ends the command quietly, as Unix tools do, where `println!` would panic. (Restoring the
/// default SIGPIPE instead would also kill a command whose gRPC connection closes mid-write.)
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print_result(format_args!($($arg)*))
    };
}

mod admin_cmd;
mod admin_hub;
mod admin_settings;
mod audit_cmd;
mod bench;
mod client_cmd;
mod conn;
mod corpus_sample;
mod demo;
mod enc_key_cmd;
mod enrol_cmd;
mod export_benign;
mod export_cmd;
mod export_rpz;
mod failure;
mod fleet;
mod import_cmd;
mod import_known;
mod import_read;
mod import_shape;
mod input;
mod join_cmd;
mod lookup_cmd;
mod pki_cmd;
mod probe;
mod profile;
mod publish;
mod render;
mod replacement_cmd;
mod rotate_cmd;
mod run;
mod submit_cmd;
mod systemd;
mod taxii_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

// glibc malloc spent about a tenth of `bench ingest` in its arena locks and free-list upkeep
// while verifier threads and the store thread allocated at once.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "intelmesh",
    version,
    about = "Federated threat-intelligence sharing mesh",
    after_help = "Try `intelmesh demo` for a local federation of four nodes, no set-up needed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as `text` or `json` (one object per line, for log collectors). For `run`,
    /// the config's `log_format` applies when this is not given.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<intelmesh_node::config::LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node from its config file until SIGINT or SIGTERM.
    Run(run::RunArgs),
    /// Sign and publish indicators (or revocations) as the node's org; exit 3 if the outcome is
    /// unknown (see --help).
    Submit(submit_cmd::SubmitArgs),
    /// Report having seen a value (count, when, TLP) as the node's org; exit 3 if the outcome
    /// is unknown.
    Sighting(submit_cmd::SightingArgs),
    /// Import indicator files (STIX, MISP event or feed, CSV, plain lists) through the node's
    /// API: per-value TLP and metadata from the file, idempotent, with a summary (see --help).
    Import(import_cmd::ImportArgs),
    /// Write the node's indicators matching filters as a STIX 2.1 bundle, a MISP feed, a DNS
    /// RPZ zone, a plain list or CSV.
    Export(export_cmd::ExportArgs),
    /// Show the merged view of one indicator: `get TYPE VALUE` or `get VALUE`.
    Get(client_cmd::GetArgs),
    /// List indicators matching filters, a page at a time or --all.
    Query(client_cmd::QueryArgs),
    /// Check raw values (defanged, any case) in bulk: known or not, with a verdict.
    Lookup(lookup_cmd::LookupArgs),
    /// Follow changes matching filters; each line carries a cursor to resume from.
    Watch(client_cmd::WatchArgs),
    /// A node's version vector, state digest and peers.
    Status(client_cmd::StatusArgs),
    /// Create a federation: its CA, the first hub and the signed genesis roster.
    Federation {
        #[command(subcommand)]
        which: enrol_cmd::Federation,
    },
    /// A member's node: enrolment (init, join) and key rotation.
    Node {
        #[command(subcommand)]
        which: enrol_cmd::NodeCmd,
    },
    /// The hub operators' commands (an admin certificate of the hub): members, roster,
    /// federation status, audit.
    Admin(admin_cmd::AdminArgs),
    /// Who called the node's API: search its audit trail (`--since`, `--caller`, `--method`,
    /// `--value`), or `audit verify` its hash chain.
    Audit(audit_cmd::AuditArgs),
    /// The node's TAXII 2.1 gateway: turn it on, add and remove its basic-auth users.
    Taxii {
        #[command(subcommand)]
        which: taxii_cmd::Taxii,
    },
    /// Certificate authorities and certificates for a real federation.
    Pki {
        #[command(subcommand)]
        which: pki_cmd::Pki,
    },
    /// Start a hub and agencies as local processes, share real indicators, crash and restart
    /// one agency, and check that every node converges.
    Demo(demo::DemoArgs),
    /// Generate an org's ed25519 signing key (private file created 0600).
    Keygen {
        /// Org id, e.g. SG-IGCI.
        #[arg(long)]
        org: String,
        /// Directory to write ORG.key (private) and ORG.pub into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-verify every chain and signature in a node's store and rebuild its index.
    VerifyStore {
        /// The node's data directory.
        #[arg(long)]
        data: PathBuf,
        /// TOML key registry to verify against, instead of the keys recorded in the store.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Roster mode: the federation id, whose log in the store is the roster log (its
        /// entries are roster versions; everyone else's may not be).
        #[arg(long, value_name = "ID", value_parser = input::parse_org)]
        federation: Option<intelmesh_core::OrgId>,
    },
    /// Measure throughput on this machine.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

/// An error the caller fixes by changing the command line or its input files: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Exit code of an interrupted command (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    // A node logs what it does; the other commands print their results and log only problems.
    let default_level = match &cli.command {
        // `run --check` prints its findings alone.
        Command::Run(args) if !args.check => "info",
        _ => "warn",
    };
    let format = cli
        .log_format
        .or_else(|| match &cli.command {
            Command::Run(args) => run::configured_log_format(&args.config),
            _ => None,
        })
        .unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        intelmesh_node::config::LogFormat::Json => lines.json().init(),
        // Node logs usually go to files (the demo's, journald): colour codes only on a
        // terminal.
        intelmesh_node::config::LogFormat::Text => lines
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    intelmesh_node::tls::install_crypto_provider();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let text = one_line(&e);
            // One line whatever the cause: a TOML error draws its source under it.
            eprintln!("error: {}", without_snippets(&text));
            if e.chain().any(|c| c.is::<publish::OutcomeUnknown>()) {
                ExitCode::from(publish::EXIT_OUTCOME_UNKNOWN)
            } else if e.chain().any(|c| c.is::<UsageError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes joined with `: `, leaving out a cause whose text is already
/// there (tonic and hyper repeat their sources in their own messages).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Joins a multi-line message into one line, leaving out the source excerpts that parsers
/// such as toml's draw under a location (`2 | listen = "x"`, `  | ^^^`): the location and the
/// reason stay.
fn without_snippets(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            let gutter = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !l.is_empty() && !gutter.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join(": ")
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => multi_thread()?.block_on(run::run(args)),
        Command::Submit(args) => current_thread()?.block_on(submit_cmd::submit(args)),
        Command::Sighting(args) => current_thread()?.block_on(submit_cmd::sighting(args)),
        Command::Import(args) => current_thread()?.block_on(import_cmd::import(args)),
        Command::Export(args) => current_thread()?.block_on(export_cmd::export(args)),
        Command::Get(args) => current_thread()?.block_on(client_cmd::get(args)),
        Command::Query(args) => current_thread()?.block_on(client_cmd::query(args)),
        Command::Lookup(args) => current_thread()?.block_on(lookup_cmd::lookup(args)),
        Command::Watch(args) => current_thread()?.block_on(client_cmd::watch(args)),
        Command::Status(args) => current_thread()?.block_on(client_cmd::status(args)),
        Command::Pki { which } => pki_cmd::run(which),
        Command::Taxii { which } => taxii_cmd::run(which),
        Command::Federation { which } => enrol_cmd::federation(which),
        Command::Node { which } => enrol_cmd::node(which),
        Command::Admin(args) => current_thread()?.block_on(admin_cmd::run(args)),
        Command::Audit(args) => audit_cmd::run(args),
        // One thread: the demo's children are spawned from the main thread, which their
        // parent-death signal is tied to (see `fleet`).
        Command::Demo(args) => current_thread()?.block_on(demo::run(args)),
        Command::Keygen { org, out } => {
            let org = intelmesh_core::OrgId::parse(&org).map_err(|e| usage(e.to_string()))?;
            enrol_cmd::create_dir(&out)?;
            let (private, public) = intelmesh_node::keys::generate(&org, &out)?;
            out!(
                "wrote {} (private, 0600) and {}",
                private.display(),
                public.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyStore {
            data,
            keys,
            federation,
        } => verify_store(&data, keys.as_deref(), federation),
        Command::Bench { which } => bench::run(which).map(|()| ExitCode::SUCCESS),
    }
}

fn multi_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn verify_store(
    data: &std::path::Path,
    keys: Option<&std::path::Path>,
    federation: Option<intelmesh_core::OrgId>,
) -> anyhow::Result<ExitCode> {
    if !data.is_dir() {
        return Err(usage(format!(
            "--data {}: no such directory",
            data.display()
        )));
    }
    // Opening creates a store where there is none: an empty one would "verify".
    if !intelmesh_store::DiskStore::exists_at(data) {
        return Err(usage(format!(
            "--data {} holds no store: give the data_dir of a node's config",
            data.display()
        )));
    }
    let store = intelmesh_store::DiskStore::open(intelmesh_store::StoreConfig::new(data))
        .with_context(|| format!("opening store at {}", data.display()))?;
    let mut registry = match keys {
        Some(path) => Some(intelmesh_node::keys::load_registry(path)?),
        None if federation.is_some() => Some(store.recorded_keys()?),
        None => None,
    };
    if let (Some(r), Some(id)) = (registry.as_mut(), federation) {
        r.set_authority(id);
    }
    let check = intelmesh_store::verify_store(
        &store,
        registry
            .as_ref()
            .map(|r| r as &dyn intelmesh_core::KeyRegistry),
    )?;
    out!(
        "{} origins, {} entries ({} withheld stubs) in {} log segments, {} indicators",
        check.origins,
        check.entries,
        check.stubs,
        check.segments,
        check.indicators
    );
    if check.is_ok() {
        out!("store verifies: every chain, signature and index record checks out");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &check.problems {
        out!("problem: {p}");
    }
    match check.problems_not_listed {
        0 => out!("{} problems", check.problems.len()),
        more => out!(
            "{} problems ({more} more not listed)",
            check.problems.len() as u64 + more
        ),
    }
    let roster_log = intelmesh_core::verify::PayloadDefect::RosterOutsideAuthorityLog.to_string();
    if let Some(p) = check.problems.iter().find(|p| p.contains(&roster_log)) {
        let origin = p.split('#').next().unwrap_or_default();
        out!("hint: a store in roster mode holds the roster log: if {origin} is the federation id, run again with --federation {origin}");
    }
    Ok(ExitCode::from(2))
}

fn print_result(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write the result to standard output: {e}");
            std::process::exit(74); // EX_IOERR
        }
    }
}

/// Signature verification allocates and frees short-lived buffers of a few hundred KiB on every
/// core. With transparent huge pages the kernel zeroes a fresh 2 MiB page for many of them,
/// which took about a tenth of `bench ingest`. The process opts out (as databases advise),
/// except for the memory it asks 2 MiB pages for: the store's large arrays read at random
/// (`intelmesh_store`'s `huge_pages`). A kernel without that exception (before Linux 6.18)
/// refuses it; the process then opts out whole, as before, and those arrays keep 4 KiB pages.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        /// `PR_THP_DISABLE_EXCEPT_ADVISED` (Linux 6.18), not yet in the `libc` crate.
        const EXCEPT_ADVISED: libc::c_ulong = 1 << 1;
        // The kernel reads each argument as an unsigned long (and refuses nonzero unused
        // ones): passed as such, not as the `int` a bare literal would be.
        let disable = |flags: libc::c_ulong| {
            let (yes, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
            // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory
            // of ours.
            unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, yes, flags, unused, unused) == 0 }
        };
        if !disable(EXCEPT_ADVISED) {
            disable(0);
        }
    }
}

#[cfg(test)]
mod cli_definition {
    use clap::CommandFactory;

    /// clap checks a command's definition only when it is parsed: one duplicated argument
    /// name makes that subcommand panic for every user. This walks all of them.
    #[test]
    fn every_subcommand_is_well_defined() {
        super::Cli::command().debug_assert();
    }
}
