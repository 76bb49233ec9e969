//! Finding the shared corpus folders and their JSON files for the corpus tests.

// Each test file uses its own part of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use intelmesh_core::indicator::normalize;
use intelmesh_core::Indicator;

/// `/work/shared` seen from this crate: the workspace root's `../shared`.
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// The folder, or `None` after saying why the calling test skips.
pub fn folder(relative: &str) -> Option<PathBuf> {
    let dir = shared().join(relative);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent", dir.display());
        None
    }
}

/// Every `.json` file under `dir`, sorted, found without recursion.
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Reads a file as text; a test fails if the corpus cannot be read at all.
pub fn read(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

pub fn name(path: &Path) -> String {
    path.strip_prefix(shared())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// An indicator is canonical when normalizing its value again changes nothing.
pub fn assert_canonical(indicator: &Indicator, context: &str) {
    assert_eq!(
        normalize(indicator.ty(), indicator.value()).as_ref(),
        Ok(indicator),
        "{context}: {} is not canonical",
        indicator.value()
    );
}
