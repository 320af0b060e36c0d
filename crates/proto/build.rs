//! Compiles the protos with protox (pure Rust, no system protoc), writes the
//! encoded descriptor set for server reflection, and generates serde impls
//! following the protobuf JSON mapping (pbjson), so requests can be written
//! as JSON files and Status printed as JSON.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "interlock/v1/workflow.proto",
        "interlock/v1/control.proto",
        "interlock/v1/templates.proto",
        "interlock/v1/inventory.proto",
        "interlock/v1/worker.proto",
        "diskerase.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor = fds.encode_to_vec();
    std::fs::write(out.join("descriptor.bin"), &descriptor)?;
    tonic_prost_build::configure()
        // Undecodable requests are INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::codec::Codec")
        // Deterministic map order so encodings (and hashes of them) are stable.
        .btree_map(".")
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor)?
        .btree_map(["."])
        // Every field is written, defaults included: JSON output is a
        // contract for scripts, which must not have to know proto3 defaults.
        .emit_fields()
        .build(&[".interlock", ".diskerase"])?;
    Ok(())
}
