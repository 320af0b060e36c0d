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
    server_side(&fds)?;
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

/// The server's side of the two Workflow services (`interlock.v1` and the
/// ancestor's `diskerase`), generated once more, for what the server must
/// hold of a large workflow:
/// - Submit and Validate read `WorkReq` and `Job` generated here, where a
///   job's `args` are the map's entries as they are on the wire (a
///   `repeated ArgsEntry`, the same bytes), and `inbound::Block`, written
///   by hand, which turns each `Job` into the domain's job as it is read.
/// - Status answers with `reply::StatusReply`, which the server encodes
///   from its own record as the reply is sent.
///
/// Every other message is the one generated above (an extern path), and
/// clients keep the generated types: what crosses the wire is unchanged.
fn server_side(fds: &prost_types::FileDescriptorSet) -> Result<(), Box<dyn std::error::Error>> {
    const OWN: [&str; 2] = ["WorkReq", "Job"];
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("server");
    std::fs::create_dir_all(&out)?;
    let mut fds = fds.clone();
    fds.file.retain(|f| {
        let name = f.name();
        name.starts_with("google/")
            || name == "interlock/v1/workflow.proto"
            || name == "diskerase.proto"
    });
    let mut config = tonic_prost_build::configure()
        .build_client(false)
        .out_dir(&out)
        .codec_path("crate::codec::Codec")
        .btree_map(".")
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types");
    for f in fds
        .file
        .iter_mut()
        .filter(|f| f.package() == "interlock.v1")
    {
        let names = f.message_type.iter().map(|m| m.name().to_string());
        let names = names.chain(f.enum_type.iter().map(|e| e.name().to_string()));
        for name in names.collect::<Vec<_>>() {
            if OWN.contains(&name.as_str()) {
                continue;
            }
            // prost names a type in UpperCamelCase; these names already are
            // (no runs of capitals, no underscores), so they map verbatim.
            let verbatim = !name.contains('_')
                && !name
                    .as_bytes()
                    .windows(2)
                    .any(|w| w[0].is_ascii_uppercase() && w[1].is_ascii_uppercase());
            assert!(verbatim, "{name}: give it an extern path by prost's casing");
            let rust = match name.as_str() {
                "StatusResp" => "crate::reply::StatusReply".to_string(),
                "Block" => "crate::inbound::Block".to_string(),
                _ => format!("crate::interlock::v1::{name}"),
            };
            config = config.extern_path(format!(".interlock.v1.{name}"), rust);
        }
        let job = f.message_type.iter_mut().find(|m| m.name() == "Job");
        let entry = job
            .and_then(|j| j.nested_type.iter_mut().find(|n| n.name() == "ArgsEntry"))
            .and_then(|e| e.options.as_mut())
            .ok_or("interlock.v1.Job has no map field `args`")?;
        entry.map_entry = Some(false);
    }
    // The entries message has no place in the source for prost to take
    // its comments from; this copy's documentation is in lib.rs.
    for f in &mut fds.file {
        f.source_code_info = None;
    }
    config.compile_fds(fds)?;
    Ok(())
}
