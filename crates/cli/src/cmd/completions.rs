//! `interlock completions`: a shell completion script for the whole CLI.

use crate::output::write;
use crate::{Cli, Out};
use clap::CommandFactory;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    shell: clap_complete::Shell,
}

pub fn run(a: Args) -> Out {
    // Rendered in memory first: clap_complete panics when its writer fails,
    // and stdout may be a pipe that closes early.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "interlock", &mut script);
    write(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}
