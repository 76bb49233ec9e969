//! `intelmesh node rotate-encryption-key`: a new encryption key for this org, the old one kept
//! beside it (so what was sealed to it stays readable), and the request, signed with the
//! node's current signing key, that asks the hub operators to list the new key as current.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use intelmesh_node::config::NodeConfig;
use intelmesh_node::encryption_keys;
use intelmesh_node::keys::load_signing_key;
use intelmesh_roster::enrolment::sign_encryption_key;
use prost::Message;

#[derive(clap::Args, Debug)]
pub struct RotateEncryptionKeyArgs {
    /// The node's config file (its `encryption_key` names the key file).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// Where the request for the key in `key_file` is written.
pub fn request_path(key_file: &std::path::Path) -> PathBuf {
    let mut p = key_file.as_os_str().to_owned();
    p.push(".request.pb");
    PathBuf::from(p)
}

/// Works whether the node runs or not: only files change here. In roster mode a running node
/// rereads its keys when a roster version lists a new one for it; until then members seal to
/// the old key, which it keeps. In static mode there is no request: the operators of every
/// member put the new public key in their key lists.
pub fn rotate_encryption_key(args: RotateEncryptionKeyArgs) -> anyhow::Result<ExitCode> {
    let cfg = NodeConfig::load(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let org = cfg.org_id().map_err(|e| crate::usage(e.to_string()))?;
    let Some(path) = cfg.encryption_key.clone() else {
        return Err(crate::usage(format!(
            "{} names no encryption_key: create one with `intelmesh node init` (new members) or add `encryption_key = \"FILE\"` for a key file you made",
            args.config.display()
        )));
    };
    // Checked before anything is written: the request must be signable.
    let signing = load_signing_key(&cfg.signing_key)?;
    let old = encryption_keys::current_public(&path)?;
    let new = encryption_keys::rotate(&path)?;
    let kept = format!(
        "{org} has a new encryption key {} (the old key {} is kept as {} to open what was sealed to it).",
        new.id(),
        old.id(),
        encryption_keys::old_path(&path, &old.id()).display(),
    );
    if cfg.roster.is_none() {
        // Static mode: members read each other's encryption keys from their key lists.
        out!(
            "{kept}\nIn every member's key list, set for org {org}: encryption_key = \"{}\". Until a member's list has it, that member seals to the old key, which this node still opens.",
            hex::encode(new.as_bytes())
        );
        return Ok(ExitCode::SUCCESS);
    }
    let request = sign_encryption_key(&org, &signing, &new, intelmesh_core::now_unix_ms());
    let out = request_path(&path);
    crate::enrol_cmd::write_file(&out, &request.encode_to_vec())?;
    out!(
        "{kept}\nSend {} to the hub operators: `intelmesh admin members set-encryption-key --request FILE`. Until a roster version lists it, members seal to the old key, which this node still opens.",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
