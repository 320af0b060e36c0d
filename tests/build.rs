//! Generates a client from the ancestor's proto (not Interlock's), so the
//! compat tests speak exactly what the ancestor's programs speak.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["ancestor_diskerase.proto"], ["proto"])?;
    println!("cargo:rerun-if-changed=proto/ancestor_diskerase.proto");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
