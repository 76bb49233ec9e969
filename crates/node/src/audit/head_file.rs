//! The trail's head file: the last durable seq and hash, in two slots written in turn, in
//! place.
//!
//! Why in place: replacing the file through a rename each second (a new inode, its sync, the
//! rename and the directory's sync) was most of what the trail cost a node that took a few
//! calls a second, and its syncs queued behind every other node's on a shared disk. A slot is
//! one sector, so a crash tears at most the slot being written; the other still holds the
//! head before it, which the trail reaches. Each slot carries a check of its own contents:
//! a slot torn by a crash, or read while it is being written (`intelmesh audit verify` on a
//! running node), is passed over rather than taken for a head. A file of one line without a
//! check (an archive's head, or a head written before slots) is read as before.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use intelmesh_audit::Head;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::durable::{self, FileError};

/// Bytes of a slot: one sector, the unit a disk writes whole.
const SLOT: usize = 512;
/// Domain separation of a slot's check.
const CHECK_CONTEXT: &[u8] = b"intelmesh/v1 audit-head\0";

/// A slot's line: the head and the check of its encoding.
#[derive(Serialize, Deserialize)]
struct Slot {
    #[serde(flatten)]
    head: Head,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<String>,
}

/// The check of `head`: 64 bits of a hash of its encoding, enough to tell a torn slot.
fn check_of(head: &Head) -> String {
    let digest = Sha256::new()
        .chain_update(CHECK_CONTEXT)
        .chain_update(head.encode().as_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

/// `head` as a slot: its line padded with spaces to the slot's size, ending in a newline.
fn slot_bytes(head: &Head) -> Vec<u8> {
    let slot = Slot {
        head: *head,
        check: Some(check_of(head)),
    };
    // A struct of integers and strings always serializes, in far fewer bytes than a slot.
    let mut bytes = serde_json::to_vec(&slot).unwrap_or_default();
    bytes.resize(SLOT - 1, b' ');
    bytes.push(b'\n');
    bytes
}

/// The head a head file's text records: the highest of its slots that decode and pass their
/// check. An error names what is wrong when none does.
pub fn decode(text: &str) -> Result<Head, String> {
    let mut best: Option<Head> = None;
    let mut failure = None;
    let lines = text
        .split('\n')
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c == '\0'))
        .filter(|l| !l.is_empty());
    for line in lines {
        match decode_slot(line) {
            Ok(head) if best.is_none_or(|b| head.seq > b.seq) => best = Some(head),
            Ok(_) => {}
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    best.ok_or_else(|| failure.unwrap_or_else(|| "empty".into()))
}

fn decode_slot(line: &str) -> Result<Head, String> {
    let slot: Slot = serde_json::from_str(line).map_err(|e| e.to_string())?;
    match slot.check {
        Some(check) if check != check_of(&slot.head) => Err(format!(
            "seq {}: its check does not match (a torn write)",
            slot.head.seq
        )),
        _ => Ok(slot.head),
    }
}

/// The head file being written: the slot the next head goes to.
pub struct HeadFile {
    file: File,
    next: u64,
}

impl HeadFile {
    /// Replaces `path` (durably) with a file whose two slots hold `head`, and opens it for the
    /// heads that follow.
    pub fn create(path: &Path, head: &Head) -> Result<HeadFile, FileError> {
        let mut bytes = slot_bytes(head);
        bytes.extend_from_within(..);
        durable::replace(path, &bytes, 0o600)?;
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(durable::failed("opening", path))?;
        Ok(HeadFile { file, next: 0 })
    }

    /// Writes `head` over the older slot and syncs it. The file's size never changes, so the
    /// sync carries no metadata.
    pub fn write(&mut self, head: &Head) -> std::io::Result<()> {
        self.file
            .write_all_at(&slot_bytes(head), self.next * SLOT as u64)?;
        self.file.sync_data()?;
        self.next ^= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> Head {
        Head {
            seq,
            hash: [seq as u8; 32],
        }
    }

    fn two_slots(a: &Head, b: &Head) -> String {
        let mut bytes = slot_bytes(a);
        bytes.extend(slot_bytes(b));
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_higher_slot_is_the_head_whichever_was_written_last() {
        assert_eq!(decode(&two_slots(&head(4), &head(5))), Ok(head(5)));
        assert_eq!(decode(&two_slots(&head(7), &head(6))), Ok(head(7)));
    }

    #[test]
    fn a_torn_slot_is_passed_over_for_the_other() {
        let whole = two_slots(&head(4), &head(5));
        // The newer slot's hash half new, half old: valid JSON, failing its check.
        let torn = whole.replacen(&hex::encode([5u8; 16]), &hex::encode([4u8; 16]), 1);
        assert_ne!(torn, whole);
        assert_eq!(decode(&torn), Ok(head(4)));
        // Cut off in the middle of its line.
        let cut = &whole[..SLOT + 20];
        assert_eq!(decode(cut), Ok(head(4)));
    }

    #[test]
    fn a_one_line_head_without_a_check_reads_as_before() {
        assert_eq!(decode(&format!("{}\n", head(9).encode())), Ok(head(9)));
        assert_eq!(decode(&head(9).encode()), Ok(head(9)));
    }

    #[test]
    fn a_file_with_no_whole_slot_is_an_error() {
        assert_eq!(decode(""), Err("empty".to_string()));
        assert!(decode("{\"seq\":").is_err());
        let mut bad = two_slots(&head(4), &head(5)).into_bytes();
        bad[20] = b'x';
        bad[SLOT + 20] = b'x';
        assert!(decode(&String::from_utf8(bad).unwrap()).is_err());
    }

    #[test]
    fn writes_alternate_slots_in_a_file_of_constant_size() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("head");
        let mut file = HeadFile::create(&path, &head(1)).unwrap();
        for seq in 2..=5 {
            file.write(&head(seq)).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.len(), 2 * SLOT);
            assert_eq!(decode(&text), Ok(head(seq)));
            // The slot before still holds the head before.
            let other = text
                .lines()
                .find(|l| !l.contains(&format!("\"seq\":{seq},")));
            assert_eq!(other.map(decode), Some(Ok(head(seq - 1))));
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0);
    }
}
