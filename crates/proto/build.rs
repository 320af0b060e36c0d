//! Compiles the protos with protox (pure Rust, no system protoc) and writes the
//! encoded descriptor set next to the generated code for server reflection.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["interlock/v1/workflow.proto", "diskerase.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // Deterministic map order so encodings (and hashes of them) are stable.
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
