//! Writes the deterministic inventory to `data/sites.json` and `data/machines.json`.
fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (sites, machines) = interlock_inventory::generate();
    std::fs::write(
        dir.join("sites.json"),
        interlock_inventory::to_lines(&sites),
    )?;
    std::fs::write(
        dir.join("machines.json"),
        interlock_inventory::to_lines(&machines),
    )?;
    println!(
        "wrote {} sites and {} machines to {}",
        sites.len(),
        machines.len(),
        dir.display()
    );
    Ok(())
}
