//! The own-log marks: the highest seq this node has signed of each log it signs (its own, and
//! on a publisher hub the authority log), with the org and the key that signed it, kept in a
//! directory outside the store (`[store] marks_dir`), and the rule that the node signs nothing
//! in a log while its store holds less of it than that.
//!
//! A store moved aside (as a store of an older layout must be), lost with its disk, or
//! restored from an older backup holds less of the node's own log than its peers do. Signing
//! then would put a second, different entry at a seq they already hold, and every member would
//! hold the node's log for a fork, for good. With the mark, the node instead waits for its
//! peers to send its own entries back (they sync every origin's log, its own included).
//! Without `marks_dir` there are no marks (nothing is written beside the node's files).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use intelmesh_core::{KeyId, OrgId};

use crate::state::NodeError;

/// The marks' files in `marks_dir`, each after the node's org and a dot (`SG-IGCI.own-log.mark`:
/// see [`named_file`]).
pub const OWN_MARK_FILE: &str = "own-log.mark";
pub const AUTHORITY_MARK_FILE: &str = "authority-log.mark";

/// The mark of one node; cheap to check on every publication.
#[derive(Debug)]
pub struct OwnMark {
    /// None: no marks kept (`marks_dir` unset).
    path: Option<PathBuf>,
    org: OrgId,
    mark: Mutex<Mark>,
    /// Whether a failed write was logged already (a read-only key directory fails every time).
    warned: AtomicBool,
}

/// The highest seq signed, and the key that signed it (none in a mark that did not say).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Mark {
    seq: u64,
    key: Option<String>,
}

impl OwnMark {
    /// The mark of `org`'s log in `dir` (none without a directory), read from its `file`,
    /// taken when one of `keys` (the keys this node signs that log with, or holds) wrote it. A
    /// missing mark is 0, as is one of another org (a directory used again); an unreadable
    /// one is 0 too, logged: refusing to start would stop a node over a file that only guards
    /// against a lost store.
    pub fn in_dir(dir: Option<&Path>, file: &str, org: &OrgId, keys: &[KeyId]) -> OwnMark {
        let path = dir.map(|d| d.join(file));
        let mark = match path.as_deref().map(std::fs::read_to_string) {
            None => Mark::default(),
            Some(Ok(text)) => parse(&text, org, keys).unwrap_or_else(|why| {
                tracing::warn!(path = ?path, %why, "own-log mark not taken: 0 instead");
                Mark::default()
            }),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Mark::default(),
            Some(Err(e)) => {
                tracing::warn!(path = ?path, error = %e, "own-log mark unreadable: 0 instead");
                Mark::default()
            }
        };
        OwnMark {
            path,
            org: org.clone(),
            mark: Mutex::new(mark),
            warned: AtomicBool::new(false),
        }
    }

    /// The highest seq the node is known to have signed.
    pub fn signed(&self) -> u64 {
        self.lock().seq
    }

    /// Refuses to sign while the store holds the own log only up to `held`, below the mark.
    pub fn check(&self, held: u64) -> Result<(), NodeError> {
        let signed = self.signed();
        if held >= signed {
            return Ok(());
        }
        Err(NodeError::OwnLogBehind {
            origin: self.org.clone(),
            held,
            signed,
            next: held + 1,
            mark: self
                .path
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
        })
    }

    /// Lowers the mark when the roster ended `key` at `last` while the mark says that key signed
    /// past it and the store holds less than the mark (`held`): every other node cut those
    /// entries (a compromise report, or a suspension or rotation ending the key there), so
    /// none will come back, and the node signs on from what it holds or `last`.
    pub fn key_ended(&self, key: &KeyId, last: u64, held: u64) {
        let mut mark = self.lock();
        if mark.key.as_deref() == Some(key.to_string().as_str())
            && mark.seq > last
            && held < mark.seq
        {
            mark.seq = last.max(held);
            self.write(&mark);
        }
    }

    /// Moves the mark to `seq`, signed by `key`, once the entries up to it are durable in the
    /// store (callers hold the publish lock). Written without a sync: after a crash the store,
    /// synced before every acknowledgement, holds at least what a lost write would have said;
    /// the mark matters when the store is gone, long after the OS wrote it.
    pub fn record(&self, seq: u64, key: &KeyId) {
        if self.path.is_none() {
            return;
        }
        let mut mark = self.lock();
        if seq > mark.seq {
            *mark = Mark {
                seq,
                key: Some(key.to_string()),
            };
            self.write(&mark);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mark> {
        crate::rotation::lock(&self.mark)
    }

    fn write(&self, mark: &Mark) {
        let Some(path) = &self.path else { return };
        if let Some(dir) = path.parent() {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let text = format!(
            "{} {} {}\n",
            mark.seq,
            self.org,
            mark.key.as_deref().unwrap_or("-")
        );
        // Owner-only, as the node's keys are; a new file (never one planted in the directory,
        // nor what a symlink there points at: removing a symlink removes the link).
        let _ = std::fs::remove_file(&tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the own-log mark: if this node's store is lost, it may sign a seq its peers hold (a fork)");
            }
        }
    }
}

/// The file of the mark `file` (`OWN_MARK_FILE`, `AUTHORITY_MARK_FILE`) kept by the node of
/// `node` in `dir`: named by that org, so nodes given one directory keep their marks apart. A
/// mark kept under the bare name (before marks were named) is renamed to it when it is this
/// node's: of `log` (the log the mark counts) and one of its `keys`, so an upgraded node keeps
/// its guard and no other node sharing the directory takes it.
pub fn named_file(
    dir: Option<&Path>,
    file: &str,
    node: &OrgId,
    (log, keys): (&OrgId, &[KeyId]),
) -> String {
    let named = format!("{node}.{file}");
    if let Some(dir) = dir {
        adopt_unnamed(&dir.join(file), &dir.join(&named), log, keys);
    }
    named
}

fn adopt_unnamed(unnamed: &Path, named: &Path, log: &OrgId, keys: &[KeyId]) {
    if named.exists() {
        return;
    }
    let Ok(text) = std::fs::read_to_string(unnamed) else {
        return;
    };
    if parse(&text, log, keys).is_ok() {
        if let Err(e) = std::fs::rename(unnamed, named) {
            tracing::warn!(from = %unnamed.display(), to = %named.display(), error = %e, "own-log mark not renamed");
        }
    }
}

/// `SEQ ORG KEY` (`-` for no key); a mark of another org, or of a key none of `signers` is
/// (a federation provisioned again, with new keys, over the same directory), is none. A key
/// rotated since the mark was written, and no longer held, forgoes it until the new key
/// signs: the price of not stopping a redeployed node.
fn parse(text: &str, org: &OrgId, signers: &[KeyId]) -> Result<Mark, String> {
    let mut words = text.split_whitespace();
    let seq = words
        .next()
        .unwrap_or_default()
        .parse::<u64>()
        .map_err(|e| format!("seq: {e}"))?;
    match words.next() {
        Some(o) if o == org.as_str() => {}
        Some(other) => return Err(format!("it is {other:?}'s, this node is {org}")),
        None => return Err("no org".to_string()),
    }
    let key = words.next().filter(|k| *k != "-").map(str::to_string);
    if key
        .as_deref()
        .is_some_and(|k| !signers.iter().any(|s| k == s.to_string()))
    {
        let held: Vec<String> = signers.iter().map(KeyId::to_string).collect();
        return Err(format!(
            "it is of another key than this node's {}",
            held.join(" or ")
        ));
    }
    Ok(Mark { seq, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_id(n: u8) -> KeyId {
        KeyId::of(&ed25519_dalek::SigningKey::from_bytes(&[n; 32]).verifying_key())
    }

    #[test]
    fn a_mark_under_the_bare_name_is_renamed_for_its_node_only() {
        let dir = tempfile::tempdir().unwrap();
        let (sg, au) = (
            OrgId::parse("SG-IGCI").unwrap(),
            OrgId::parse("AU-AFP").unwrap(),
        );
        let sg_key = key_id(1).to_string();
        std::fs::write(
            dir.path().join(OWN_MARK_FILE),
            format!("5 SG-IGCI {sg_key}\n"),
        )
        .unwrap();
        // Another org's node leaves it, as does a node of the org signing with another key.
        let au_file = named_file(Some(dir.path()), OWN_MARK_FILE, &au, (&au, &[key_id(1)]));
        named_file(Some(dir.path()), OWN_MARK_FILE, &sg, (&sg, &[key_id(2)]));
        assert!(dir.path().join(OWN_MARK_FILE).exists());
        assert_eq!(
            OwnMark::in_dir(Some(dir.path()), &au_file, &au, &[key_id(1)]).signed(),
            0
        );
        let sg_file = named_file(Some(dir.path()), OWN_MARK_FILE, &sg, (&sg, &[key_id(1)]));
        assert_eq!(sg_file, "SG-IGCI.own-log.mark");
        assert!(!dir.path().join(OWN_MARK_FILE).exists());
        assert_eq!(
            OwnMark::in_dir(Some(dir.path()), &sg_file, &sg, &[key_id(1)]).signed(),
            5
        );
    }

    #[test]
    fn a_store_behind_the_mark_may_not_sign_until_it_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let marks = dir.path().join("marks");
        let org = OrgId::parse("AU-AFP").unwrap();
        let open = |org: &OrgId| OwnMark::in_dir(Some(&marks), OWN_MARK_FILE, org, &[key_id(1)]);
        let mark = open(&org);
        assert_eq!(mark.signed(), 0);
        assert!(mark.check(0).is_ok(), "a node that never signed");
        mark.record(3, &key_id(1));
        mark.record(2, &key_id(1));
        let again = open(&org);
        assert_eq!(
            again.signed(),
            3,
            "kept across a restart, never lowered by a record"
        );
        let err = again.check(0).unwrap_err().to_string();
        assert!(
            err.contains("up to seq 0") && err.contains("up to seq 3"),
            "{err}"
        );
        assert!(err.contains("from seq 1"), "{err}");
        assert!(again.check(2).is_err());
        assert!(again.check(3).is_ok() && again.check(4).is_ok());
        // Another org's mark, or another key's (a directory used again), guards nothing.
        let other = OrgId::parse("BR-PF").unwrap();
        assert_eq!(open(&other).signed(), 0);
        let redeployed = OwnMark::in_dir(Some(&marks), OWN_MARK_FILE, &org, &[key_id(9)]);
        assert_eq!(redeployed.signed(), 0);
        // Nor does an unreadable one.
        let file = marks.join(OWN_MARK_FILE);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&file, "garbage").unwrap();
        assert_eq!(open(&org).signed(), 0);
        // Without a directory, no marks: nothing is refused, nothing written.
        let none = OwnMark::in_dir(None, OWN_MARK_FILE, &org, &[key_id(1)]);
        none.record(5, &key_id(1));
        assert!(none.check(0).is_ok());
    }

    #[test]
    fn a_mark_holds_for_every_key_the_node_holds() {
        let dir = tempfile::tempdir().unwrap();
        let org = OrgId::parse("SG-IGCI").unwrap();
        // The rotated-to key signed the authority log up to 40.
        OwnMark::in_dir(Some(dir.path()), AUTHORITY_MARK_FILE, &org, &[key_id(2)])
            .record(40, &key_id(2));
        // The store restored to before the roster listed it: the node signs with the older
        // key again, and the mark still holds it back.
        let older_first = [key_id(1), key_id(2)];
        let mark = OwnMark::in_dir(Some(dir.path()), AUTHORITY_MARK_FILE, &org, &older_first);
        assert_eq!(mark.signed(), 40);
        assert!(mark.check(30).is_err());
        let other = OwnMark::in_dir(Some(dir.path()), AUTHORITY_MARK_FILE, &org, &[key_id(1)]);
        assert_eq!(other.signed(), 0, "a key this node does not hold");
    }

    #[test]
    fn a_key_the_roster_ended_lowers_the_mark_only_for_what_that_key_signed() {
        let dir = tempfile::tempdir().unwrap();
        let org = OrgId::parse("AU-AFP").unwrap();
        let mark = OwnMark::in_dir(Some(dir.path()), OWN_MARK_FILE, &org, &[key_id(1)]);
        mark.record(100, &key_id(1));
        // Another key ended: nothing to do with what the mark says.
        mark.key_ended(&key_id(2), 80, 0);
        assert_eq!(mark.signed(), 100);
        // The store holds all the mark says: no wait, nothing to lower.
        mark.key_ended(&key_id(1), 80, 100);
        assert_eq!(mark.signed(), 100);
        // The store was lost: the peers cut at 80, so 80 is all that comes back.
        mark.key_ended(&key_id(1), 80, 10);
        assert_eq!(mark.signed(), 80);
        assert!(mark.check(80).is_ok());
    }
}
