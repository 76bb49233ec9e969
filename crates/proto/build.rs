//! Compiles `proto/` with protox (pure Rust, no system protoc) and feeds the result to tonic.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["intelmesh/v1/log.proto", "intelmesh/v1/state.proto"];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        .bytes(".intelmesh.v1.SignedEntry")
        .compile_fds(fds)?;
    Ok(())
}
