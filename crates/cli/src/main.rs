//! The `intelmesh` command: key generation, store checks and benchmarks.

mod bench;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "intelmesh",
    version,
    about = "Federated threat-intelligence sharing mesh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    },
    /// Measure throughput on this machine.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keygen { org, out } => {
            let org = intelmesh_core::OrgId::parse(&org)?;
            let (private, public) = intelmesh_node::keys::generate(&org, &out)?;
            println!(
                "wrote {} (private, 0600) and {}",
                private.display(),
                public.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyStore { data, keys } => verify_store(&data, keys.as_deref()),
        Command::Bench { which } => bench::run(which).map(|()| ExitCode::SUCCESS),
    }
}

fn verify_store(
    data: &std::path::Path,
    keys: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    if !data.is_dir() {
        anyhow::bail!("--data {}: no such directory", data.display());
    }
    let registry = keys.map(intelmesh_node::keys::load_registry).transpose()?;
    let store = intelmesh_store::SledStore::open(intelmesh_store::StoreConfig::new(data))
        .with_context(|| format!("opening store at {}", data.display()))?;
    let check = intelmesh_store::verify_store(
        &store,
        registry
            .as_ref()
            .map(|r| r as &dyn intelmesh_core::KeyRegistry),
    )?;
    println!(
        "{} origins, {} entries ({} withheld stubs), {} indicators",
        check.origins, check.entries, check.stubs, check.indicators
    );
    if check.is_ok() {
        println!("store verifies: every chain, signature and index record checks out");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &check.problems {
        println!("problem: {p}");
    }
    println!("{} problems", check.problems.len());
    Ok(ExitCode::from(2))
}
