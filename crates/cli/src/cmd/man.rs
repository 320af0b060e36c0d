//! `interlock man DIR`: manual pages for the CLI, generated from the same
//! clap definitions that parse its arguments, so they cannot drift.
//!
//! One page per command: `interlock.1`, and `interlock-<command>.1` for each
//! subcommand at any depth (`interlock-es-stop.1`), as git and cargo ship
//! theirs. interlockd prints its own with `interlockd --man`.

use crate::fail::Fail;
use crate::output::outln;
use crate::{Cli, Out};
use clap::CommandFactory;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write the pages into (created if missing), e.g.
    /// /usr/local/share/man/man1.
    dir: PathBuf,
}

pub fn run(a: Args) -> Out {
    let io = |what: &Path, e: std::io::Error| Fail::Msg(2, format!("{}: {e}", what.display()));
    std::fs::create_dir_all(&a.dir).map_err(|e| io(&a.dir, e))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, "interlock", &a.dir, &mut written).map_err(|(p, e)| io(&p, e))?;
    outln!("wrote {} pages to {}", written.len(), a.dir.display())?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `name`.1 for `cmd`, then the pages of its subcommands.
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), (PathBuf, std::io::Error)> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    // After `build`, a subcommand's display name is already `interlock-es-stop`.
    clap_mangen::Man::new(cmd.clone().version(env!("CARGO_PKG_VERSION")))
        .render(&mut page)
        .map_err(|e| (path.clone(), e))?;
    std::fs::write(&path, page).map_err(|e| (path.clone(), e))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
