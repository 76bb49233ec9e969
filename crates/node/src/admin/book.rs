//! Pending proposals on disk: `DATA_DIR/admin/proposals/ID.roster` (the `SignedRoster`, its
//! signatures so far) and `ID.request` (the `ProposeRequest` it was built from, which keeps
//! enrolment requests, and so the members' certificate requests, for their bundles). Files are
//! written 0600 through a synced temporary file and a rename, so a crash leaves the old or the
//! new file, never half of one.

use std::path::{Path, PathBuf};

use intelmesh_proto::v1 as pb;
use prost::Message;

use super::AdminError;

/// A proposal as kept: what was proposed, and the version with its signatures so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    pub id: String,
    pub request: pb::ProposeRequest,
    pub roster: pb::SignedRoster,
}

/// The directory of the proposals of the node whose data directory is `data_dir`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("admin").join("proposals")
}

/// A proposal's id: the first 8 bytes of its roster hash, in hex. The same document proposed
/// twice is one proposal.
pub fn id_of(document: &[u8]) -> String {
    hex::encode(&intelmesh_roster::roster_hash(document)[..8])
}

fn check_id(id: &str) -> Result<(), AdminError> {
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(AdminError::UnknownProposal(id.to_string()))
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> AdminError {
    AdminError::Internal(format!("{what} {}: {e}", path.display()))
}

pub fn save(dir: &Path, kept: &Kept) -> Result<(), AdminError> {
    check_id(&kept.id)?;
    create_private_dir(dir)?;
    // The request first: a roster file is only ever next to its request.
    write_atomic(
        &dir.join(format!("{}.request", kept.id)),
        &kept.request.encode_to_vec(),
    )?;
    write_atomic(
        &dir.join(format!("{}.roster", kept.id)),
        &kept.roster.encode_to_vec(),
    )
}

pub fn load(dir: &Path, id: &str) -> Result<Kept, AdminError> {
    check_id(id)?;
    let read = |ext: &str| {
        let path = dir.join(format!("{id}.{ext}"));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(AdminError::UnknownProposal(id.to_string()))
            }
            Err(e) => Err(io("reading", &path, e)),
        }
    };
    let corrupt = |ext: &str, e: prost::DecodeError| {
        AdminError::Internal(format!("proposal file {id}.{ext} is damaged: {e}"))
    };
    let roster =
        pb::SignedRoster::decode(read("roster")?.as_slice()).map_err(|e| corrupt("roster", e))?;
    let request = pb::ProposeRequest::decode(read("request")?.as_slice())
        .map_err(|e| corrupt("request", e))?;
    Ok(Kept {
        id: id.to_string(),
        request,
        roster,
    })
}

/// Forgets a proposal: its roster file first, so that a crash in between leaves a request file
/// alone, which [`list`] does not see and the next [`save`] of that id replaces.
pub fn remove(dir: &Path, id: &str) -> Result<(), AdminError> {
    check_id(id)?;
    for ext in ["roster", "request"] {
        crate::durable::remove(&dir.join(format!("{id}.{ext}")))
            .map_err(|e| AdminError::Internal(e.to_string()))?;
    }
    Ok(())
}

/// Every kept proposal, oldest version first.
pub fn list(dir: &Path) -> Result<Vec<Kept>, AdminError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("reading", dir, e)),
    };
    let mut kept = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| io("reading", dir, e))?.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".roster"))
        else {
            continue;
        };
        kept.push(load(dir, id)?);
    }
    kept.sort_by_key(|k| (version_of(&k.roster), k.id.clone()));
    Ok(kept)
}

/// Who proposed a kept document, as `ORG/NAME` (empty if it does not decode).
pub fn proposer_of(roster: &pb::SignedRoster) -> String {
    pb::RosterDocument::decode(roster.document.as_slice())
        .ok()
        .and_then(|d| d.change)
        .map(|c| c.proposed_by)
        .unwrap_or_default()
}

/// The version a kept document proposes (0 if it does not decode).
pub fn version_of(roster: &pb::SignedRoster) -> u64 {
    pb::RosterDocument::decode(roster.document.as_slice())
        .map(|d| d.version)
        .unwrap_or(0)
}

fn create_private_dir(dir: &Path) -> Result<(), AdminError> {
    crate::durable::create_private_dir(dir).map_err(|e| io(e.what, &e.path, e.source))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AdminError> {
    crate::durable::replace(path, bytes, 0o600).map_err(|e| AdminError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_survive_in_private_files_and_come_back_in_version_order() {
        let data = tempfile::tempdir().unwrap();
        let dir = dir(data.path());
        assert_eq!(list(&dir).unwrap(), Vec::new());
        let doc = |version| {
            pb::RosterDocument {
                version,
                ..Default::default()
            }
            .encode_to_vec()
        };
        for version in [3, 2] {
            let document = doc(version);
            let kept = Kept {
                id: id_of(&document),
                request: pb::ProposeRequest {
                    reason: format!("v{version}"),
                    ..Default::default()
                },
                roster: pb::SignedRoster {
                    document,
                    signatures: vec![],
                },
            };
            save(&dir, &kept).unwrap();
            assert_eq!(load(&dir, &kept.id).unwrap(), kept);
        }
        let versions: Vec<u64> = list(&dir)
            .unwrap()
            .iter()
            .map(|k| version_of(&k.roster))
            .collect();
        assert_eq!(versions, vec![2, 3]);
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "proposal files are private");
        }
        assert!(matches!(
            load(&dir, "../../etc/passwd"),
            Err(AdminError::UnknownProposal(_))
        ));
        assert!(matches!(
            load(&dir, "0000000000000000"),
            Err(AdminError::UnknownProposal(_))
        ));
        // Forgotten whole, and forgetting again is no error; no temporary file is left.
        let first = list(&dir).unwrap()[0].id.clone();
        remove(&dir, &first).unwrap();
        remove(&dir, &first).unwrap();
        assert!(matches!(
            load(&dir, &first),
            Err(AdminError::UnknownProposal(_))
        ));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    }
}
