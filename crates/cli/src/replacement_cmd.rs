//! `intelmesh node replacement-key`: the member's side of a compromise report. The stolen key
//! cannot sign a rotation request (whoever holds it could too), so a new key proves itself
//! instead (it signs the org and the first seq it will sign), and the hub operators send it with
//! the report (`admin members report-compromise ORG --replacement FILE`). The stopped node is
//! switched to the new key here; the stolen one is kept beside it.
//!
//! Files, for `signing_key = D/signing.key`: `D/signing.key.replacement` (the new key, 0600,
//! until it is moved in place), `D/signing.key.replacement.pb` (the report), and
//! `D/signing.key.old-<KEYID>` (the stolen key, kept). Written in that order, each durably, and
//! the new key moved over the stolen one last, so a crash leaves a state a second run finishes;
//! a second run after the switch writes the report again for the same new key (another seq).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ed25519_dalek::{SigningKey, VerifyingKey};
use intelmesh_core::{KeyId, OrgId};
use intelmesh_node::config::NodeConfig;
use intelmesh_node::durable::with_suffix;
use intelmesh_node::keys::{load_signing_key, write_private};
use intelmesh_node::rotation::{request_on_disk, RotationFiles};
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

/// Where the new key waits until it is moved over the stolen one.
fn staged_path(signing_key: &Path) -> PathBuf {
    with_suffix(signing_key, ".replacement")
}

pub fn replacement_key(args: ReplacementKeyArgs) -> anyhow::Result<ExitCode> {
    let cfg = NodeConfig::load(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let org = cfg.org_id().map_err(|e| usage(e.to_string()))?;
    let Some(roster_cfg) = cfg.roster.as_ref() else {
        return Err(usage(format!(
            "{} has no [roster] section: in static mode, every member puts the new key in its key list",
            args.config.display()
        )));
    };
    let n = args.last_good_seq;
    let first_seq = n
        .checked_add(1)
        .ok_or_else(|| usage("--last-good-seq is too large"))?;
    if !cfg.data_dir.is_dir() {
        return Err(usage(format!(
            "data_dir {} is not there: run this on the node's data (restored, if it was wiped)",
            cfg.data_dir.display()
        )));
    }
    // Held to the end: a running node signs with the key it loaded, and none may start while
    // the key files change.
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
    if head < n {
        return Err(usage(format!(
            "this node's own log ends at seq {head}: it can vouch only for what it holds (--last-good-seq {head} or less), and would have no key for the seqs between"
        )));
    }
    let files = RotationFiles::of(&cfg.signing_key);
    if files.next().exists() {
        return Err(usage(format!(
            "{} is a key staged for a rotation, on the node whose key was taken: remove it (it must never sign) and run this again",
            files.next().display()
        )));
    }
    let out = report_path(&cfg.signing_key);
    let staged = staged_path(&cfg.signing_key);
    let in_place = load_signing_key(&cfg.signing_key)?;
    let (stolen, new) = match read_report(&out)? {
        // Made before: the same new key, in place or still staged (a crash before the move).
        Some(made) => {
            let new = if made.replacement_key == in_place.verifying_key().as_bytes() {
                in_place
            } else if staged.exists()
                && load_signing_key(&staged)?.verifying_key().as_bytes()
                    == made.replacement_key.as_slice()
            {
                load_signing_key(&staged)?
            } else {
                return Err(usage(format!(
                    "{} names a replacement key this node does not hold: remove it and run this again",
                    out.display()
                )));
            };
            let stolen = VerifyingKey::try_from(made.public_key.as_slice())
                .map_err(|e| usage(format!("{}: the stolen key: {e}", out.display())))?;
            (stolen, new)
        }
        None => {
            let stolen = listed_key(&cfg, roster_cfg, &store, &org, &in_place, n)?;
            // Kept before anything else changes: the stolen key is the one in place.
            let kept = files.old(KeyId::of(&in_place.verifying_key()));
            if !kept.exists() {
                write_private(&kept, &in_place)?;
            }
            let new = SigningKey::generate(&mut rand::rngs::OsRng);
            let _ = std::fs::remove_file(&staged);
            write_private(&staged, &new)?;
            (stolen, new)
        }
    };
    let report = pb::ReportCompromise {
        org: org.to_string(),
        public_key: stolen.to_bytes().to_vec(),
        last_good_seq: n,
        replacement_key: new.verifying_key().to_bytes().to_vec(),
        replacement_proof: sign_replacement(&org, &new, first_seq),
    };
    intelmesh_node::durable::replace_public(&out, &report.encode_to_vec())?;
    if staged.exists() {
        std::fs::rename(&staged, &cfg.signing_key)
            .with_context(|| format!("moving {} in place", staged.display()))?;
        intelmesh_node::durable::sync_parent(&cfg.signing_key)?;
    }
    let public = cfg.signing_key.with_extension("pub");
    intelmesh_node::durable::replace_public(
        &public,
        format!("{}\n", hex::encode(new.verifying_key().as_bytes())).as_bytes(),
    )?;
    drop(store);
    let stolen_id = KeyId::of(&stolen);
    out!(
        "{org} signs with key {} from seq {first_seq} once the roster lists it; the stolen key {stolen_id} is reported (the keys it replaced are kept as {}).\n\
         Send {} to the hub operators: `intelmesh admin members report-compromise {org} --replacement FILE`.\n\
         The report refuses every certificate of {org} issued before it and stops sealing to its encryption keys. Whoever took the node took its service CA and TAXII passwords too. Once it is published:\n\
         - a new node certificate: `intelmesh pki request-node`, signed by the federation CA's holder (`intelmesh pki sign-node`), in place of {};\n\
         - a new encryption key: `intelmesh node rotate-encryption-key --config {}`, listed by the operators (`admin members set-encryption-key`);\n\
         - a new service CA and service certificates, and new TAXII passwords;\n\
         then start the node.",
        KeyId::of(&new.verifying_key()),
        files.old(stolen_id).display(),
        out.display(),
        cfg.federation.cert.display(),
        args.config.display(),
    );
    Ok(ExitCode::SUCCESS)
}

fn read_report(path: &Path) -> anyhow::Result<Option<pb::ReportCompromise>> {
    match std::fs::read(path) {
        Ok(bytes) => pb::ReportCompromise::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| usage(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// The key to report: the one the roster this node last followed lets sign `last_good + 1` for
/// `org`; else the one in place, if that roster lists it; else the old key of the rotation to it that the roster has not taken yet (the key it
/// lists, and the one the thief could sign with everywhere; the new one was never listed).
fn listed_key(
    cfg: &NodeConfig,
    roster_cfg: &intelmesh_node::config::RosterConfig,
    store: &DiskStore,
    org: &OrgId,
    in_place: &SigningKey,
    last_good: u64,
) -> anyhow::Result<VerifyingKey> {
    let genesis = intelmesh_node::roster_follow::load_genesis(roster_cfg)?;
    let federation = genesis.federation_id().clone();
    let version = store.head(&federation)?.map_or(1, |h| h.seq);
    let signed = intelmesh_node::admin::roster_log::stored_version(store, &federation, version)?
        .unwrap_or_else(|| genesis.signed().clone());
    let document = pb::RosterDocument::decode(signed.document.as_slice())
        .context("the roster this node last followed does not decode")?;
    let listed = |key: &VerifyingKey| {
        (document.members.iter())
            .filter(|m| m.org == org.as_str())
            .flat_map(|m| &m.signing_keys)
            .any(|k| k.public_key == key.as_bytes())
    };
    // The key the roster lets sign the first seq this node does not vouch for: what the thief
    // signed first was signed with it. An earlier key of this node's when the theft began
    // before a rotation (the report then ends the keys after it too).
    // Else (the operators reported it first, ending it at `last_good`) the key a report at
    // `last_good` may name: the roster refuses one ending before its first seq or after its end.
    let first_bad = last_good.saturating_add(1);
    let keys: Vec<&pb::MemberKey> = (document.members.iter())
        .filter(|m| m.org == org.as_str())
        .flat_map(|m| &m.signing_keys)
        .collect();
    let covers = |k: &&&pb::MemberKey| {
        k.first_seq <= first_bad && k.last_seq.is_none_or(|last| first_bad <= last)
    };
    let reportable = |k: &&&pb::MemberKey| {
        k.first_seq.saturating_sub(1) <= last_good && k.last_seq.is_none_or(|l| last_good <= l)
    };
    let key = (keys.iter().find(covers)).or_else(|| keys.iter().find(reportable));
    if let Some(key) = key.and_then(|k| VerifyingKey::try_from(k.public_key.as_slice()).ok()) {
        return Ok(key);
    }
    let current = in_place.verifying_key();
    if listed(&current) {
        return Ok(current);
    }
    let files = RotationFiles::of(&cfg.signing_key);
    match request_on_disk(&files)?.filter(|p| p.new_key == current) {
        Some(pending) if listed(&pending.old_key) => Ok(pending.old_key),
        _ => Err(usage(format!(
            "roster version {version}, the last this node followed, lists neither its key {} nor a key it rotated from: report the key the roster lists with `admin members report-compromise --key`",
            KeyId::of(&current)
        ))),
    }
}
