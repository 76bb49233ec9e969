//! The index snapshot: the in-memory index written to a file when the store closes, so the next
//! open loads it instead of rebuilding it from the whole log.
//!
//! A snapshot names the log generation it was taken at. The generation is a counter in sled,
//! raised in the same atomic batch as every change to the log, so a snapshot is used only if
//! nothing was logged since it was written; after a crash, or for any flaw in the file, the
//! index is rebuilt from the log. The file is a cache: losing it loses nothing.
//!
//! Layout: `MAGIC`, generation (u64 BE), count (u64 BE), then per indicator key length (u32 BE),
//! key, value length (u32 BE), value; last the SHA-256 of everything before it.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::index::Index;

const MAGIC: &[u8; 8] = b"IMIDX\x00\x00\x01";
const FILE_NAME: &str = "intelmesh-index.snapshot";

pub(crate) fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes the snapshot next to the sled files: to a temporary file, synced, then renamed.
pub(crate) fn write(dir: &Path, generation: u64, index: &Index) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(index.encoded_bytes() + 8 * index.len() + 64);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&generation.to_be_bytes());
    buf.extend_from_slice(&(index.len() as u64).to_be_bytes());
    for (k, v) in index.after(None) {
        for part in [k, v] {
            let len = u32::try_from(part.len()).map_err(std::io::Error::other)?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(part);
        }
    }
    let sum = Sha256::digest(&buf);
    buf.extend_from_slice(&sum);

    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(&tmp)?;
    file.write_all(&buf)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path_in(dir))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The index in the snapshot if there is one for exactly `generation`; otherwise why not.
pub(crate) fn read(dir: &Path, generation: u64) -> Result<Index, String> {
    let bytes = match std::fs::read(path_in(dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("no snapshot".into()),
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    parse(&bytes, generation)
}

fn parse(bytes: &[u8], generation: u64) -> Result<Index, String> {
    let body_len = bytes
        .len()
        .checked_sub(32)
        .ok_or("shorter than its checksum")?;
    let (body, sum) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not an index snapshot of this version".into());
    }
    let taken_at = r.u64()?;
    if taken_at != generation {
        return Err(format!(
            "taken at log generation {taken_at}, the log is at {generation}"
        ));
    }
    let count = r.u64()?;
    let mut index = Index::default();
    for _ in 0..count {
        let key = r.part()?.to_vec();
        let value = r.part()?.to_vec();
        index.insert(key, value);
    }
    if !r.0.is_empty() || index.len() as u64 != count {
        return Err("entry count does not match the file".into());
    }
    Ok(index)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().map_err(|_| "truncated")?))
    }

    fn part(&mut self) -> Result<&'a [u8], String> {
        let b = self.take(4)?;
        let len = u32::from_be_bytes(b.try_into().map_err(|_| "truncated")?);
        self.take(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let mut index = Index::default();
        index.insert(b"I\x05a.example".to_vec(), vec![1, 2, 3]);
        index.insert(b"I\x05b.example".to_vec(), vec![]);
        index
    }

    fn roundtrip_bytes(generation: u64) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), generation, &sample()).unwrap();
        std::fs::read(path_in(dir.path())).unwrap()
    }

    #[test]
    fn a_snapshot_reads_back_at_its_generation_only() {
        let bytes = roundtrip_bytes(7);
        let index = parse(&bytes, 7).unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(
            index.after(None).collect::<Vec<_>>(),
            sample().after(None).collect::<Vec<_>>()
        );
        let stale = parse(&bytes, 8).err().unwrap();
        assert!(stale.contains("generation 7"), "{stale}");
    }

    #[test]
    fn every_damaged_snapshot_is_refused() {
        let bytes = roundtrip_bytes(7);
        for cut in [0, 10, bytes.len() - 33, bytes.len() - 1] {
            assert!(parse(&bytes[..cut], 7).is_err(), "truncated at {cut}");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            assert!(parse(&flipped, 7).is_err(), "flipped byte {i}");
        }
    }
}
