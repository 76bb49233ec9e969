//! What a node left on its disk, searched byte for byte: the tests that prove a value never
//! reached a node's files.

use std::path::Path;

/// Whether any file under `dir` (recursively) contains `needle`.
pub fn found_in_files(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir)
        .expect("a readable directory")
        .any(|e| {
            let path = e.expect("a directory entry").path();
            if path.is_dir() {
                found_in_files(&path, needle)
            } else {
                std::fs::read(&path)
                    .map(|b| b.windows(needle.len()).any(|w| w == needle))
                    .unwrap_or(false)
            }
        })
}
