//! `intelmesh node replacement-key`: the member's side of a compromise report. The stolen key
//! cannot sign a rotation request (whoever holds it could too), so a new key proves itself
//! instead (it signs the org and the first seq it will sign), and the hub operators send it with
//! the report (`admin members report-compromise ORG --replacement FILE`). The stopped node is
//! switched to the new key here; the stolen one is kept beside it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use intelmesh_core::KeyId;
use intelmesh_node::config::NodeConfig;
use intelmesh_node::durable::with_suffix;
use intelmesh_node::keys::{load_signing_key, replace_private, write_private};
use intelmesh_node::rotation::RotationFiles;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::enrolment::sign_replacement;
use intelmesh_store::{DiskStore, Store, StoreConfig, StoreError};
use prost::Message;

use crate::usage;

#[derive(clap::Args, Debug)]
pub struct ReplacementKeyArgs {
    /// The node's config file (roster mode). The node must be stopped.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The last seq of this node's own log it vouches for (what it signed before the key was
    /// taken); the new key signs from the next. Its log past it is cut everywhere.
    #[arg(long, value_name = "N")]
    last_good_seq: u64,
}

/// Where the report with the replacement is written, beside the key file.
pub fn report_path(signing_key: &Path) -> PathBuf {
    with_suffix(signing_key, ".replacement.pb")
}

pub fn replacement_key(args: ReplacementKeyArgs) -> anyhow::Result<ExitCode> {
    let cfg = NodeConfig::load(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let org = cfg.org_id().map_err(|e| usage(e.to_string()))?;
    if cfg.roster.is_none() {
        return Err(usage(format!(
            "{} has no [roster] section: in static mode, every member puts the new key in its key list",
            args.config.display()
        )));
    }
    let n = args.last_good_seq;
    let first_seq = n
        .checked_add(1)
        .ok_or_else(|| usage("--last-good-seq is too large"))?;
    // Opened to hold it (a running node signs with the key it loaded) and to read the head.
    let store = DiskStore::open(StoreConfig::new(&cfg.data_dir).owned_by(org.clone())).map_err(
        |e| match e {
            StoreError::InUse(_) => usage(format!(
                "the node of {} is running: stop it first (it signs with the key it loaded)",
                args.config.display()
            )),
            e => anyhow::Error::new(e).context(format!("opening {}", cfg.data_dir.display())),
        },
    )?;
    let head = store.head(&org)?.map_or(0, |h| h.seq);
    drop(store);
    if head < n {
        return Err(usage(format!(
            "this node's own log ends at seq {head}: it can vouch only for what it holds (--last-good-seq {head} or less), and would have no key for the seqs between"
        )));
    }
    let staged = RotationFiles::of(&cfg.signing_key).next();
    if staged.exists() {
        return Err(usage(format!(
            "{} is a key staged for a rotation, on the node whose key was taken: remove it (it must never sign) and run this again",
            staged.display()
        )));
    }
    let out = report_path(&cfg.signing_key);
    if out.exists() {
        return Err(usage(format!(
            "{} exists: a replacement key was made already (send that file, or remove it to make another)",
            out.display()
        )));
    }
    let stolen = load_signing_key(&cfg.signing_key)?;
    let new = SigningKey::generate(&mut rand::rngs::OsRng);
    let report = pb::ReportCompromise {
        org: org.to_string(),
        public_key: stolen.verifying_key().to_bytes().to_vec(),
        last_good_seq: n,
        replacement_key: new.verifying_key().to_bytes().to_vec(),
        replacement_proof: sign_replacement(&org, &new, first_seq),
    };
    // The request first (public), then the stolen key kept, then the new key in place: a crash
    // in between leaves the node on the stolen key, and this command made again after removing
    // the request.
    intelmesh_node::durable::replace_public(&out, &report.encode_to_vec())?;
    let stolen_id = KeyId::of(&stolen.verifying_key());
    let kept = RotationFiles::of(&cfg.signing_key).old(stolen_id);
    if !kept.exists() {
        write_private(&kept, &stolen)?;
    }
    replace_private(&cfg.signing_key, &new)?;
    let public = cfg.signing_key.with_extension("pub");
    intelmesh_node::durable::replace_public(
        &public,
        format!("{}\n", hex::encode(new.verifying_key().as_bytes())).as_bytes(),
    )?;
    out!(
        "{org} signs with key {} from seq {first_seq} once the roster lists it (the stolen key {stolen_id} is kept as {}).\n\
         Send {} to the hub operators: `intelmesh admin members report-compromise {org} --replacement FILE`.\n\
         The report refuses every certificate of {org} issued before it and stops sealing to its encryption keys. Once it is published:\n\
         - a new node certificate: `intelmesh pki request-node`, signed by the federation CA's holder (`intelmesh pki sign-node`), in place of {};\n\
         - a new encryption key: `intelmesh node rotate-encryption-key --config {}`, listed by the operators (`admin members set-encryption-key`);\n\
         then start the node.",
        KeyId::of(&new.verifying_key()),
        kept.display(),
        out.display(),
        cfg.federation.cert.display(),
        args.config.display(),
    );
    Ok(ExitCode::SUCCESS)
}
