//! Compiles `proto/` with protox (pure Rust, no system protoc) and feeds the result to tonic.
//! The encoded descriptor set is kept for gRPC server reflection.
use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "intelmesh/v1/roster.proto",
        "intelmesh/v1/log.proto",
        "intelmesh/v1/state.proto",
        "intelmesh/v1/federation.proto",
        "intelmesh/v1/indicators.proto",
        "intelmesh/v1/admin.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("intelmesh_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".intelmesh.v1.SignedEntry")
        // Hand-written, so a server can send answers it encoded where it made them
        // (`src/lookup_response.rs`).
        .extern_path(
            ".intelmesh.v1.LookupResponse",
            "crate::lookup_response::LookupResponse",
        )
        // Prost's codec with a frame's shape checked before decoding (`src/codec.rs`).
        .codec_path("crate::codec::BoundedCodec")
        .compile_fds(fds)?;
    Ok(())
}
