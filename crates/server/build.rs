//! Stamps the build with the git commit it comes from, for the
//! `interlock_build_info` metric: `INTERLOCK_COMMIT` is the short hash, or
//! "unknown" when built without git or outside a checkout (a source tarball).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short", "HEAD"])
        .filter(|c| c.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves: HEAD itself changes on checkout, the branch
    // it names on commit. Only existing files: cargo reruns a build script
    // on every build when a watched path is missing.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = [Some("HEAD"), branch.as_deref(), Some("packed-refs")];
    for name in watched.into_iter().flatten() {
        if let Some(path) = git(&["rev-parse", "--git-path", name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rustc-env=INTERLOCK_COMMIT={commit}");
}
