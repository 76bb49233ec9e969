//! Fuzz targets: one function per parser that reads bytes from outside, each checking a property
//! beyond "no panic" where one exists. `afl/` runs them under AFL++, `tests/replay.rs` replays
//! every saved input through them in plain `cargo test`, `seeds` makes their starting corpora.
//!
//! A target panics (through `assert!`) exactly when it finds a bug: a crash of the code under
//! test, or a broken property. Everything else, including every refusal, is a normal return.

pub mod fixtures;
pub mod seeds;
pub mod targets;
pub mod targets_interop;
pub mod targets_taxii;

/// A fuzz target: bytes in, a panic if and only if something is wrong.
pub type Target = fn(&[u8]);

/// Every target by name, as `scripts/fuzz.sh` and the AFL runner name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame", targets::frame),
    ("entry", targets::entry),
    ("payload", targets::payload),
    ("indicator", targets::indicator),
    ("config", targets::config),
    ("roster", targets::roster),
    ("stix", targets_interop::stix),
    ("misp", targets_interop::misp),
    ("misp_manifest", targets_interop::misp_manifest),
    ("warninglist", targets_interop::warninglist),
    ("csv", targets_interop::csv),
    ("text", targets_interop::text),
    ("taxii_query", targets_taxii::taxii_query),
    ("taxii_envelope", targets_taxii::taxii_envelope),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
