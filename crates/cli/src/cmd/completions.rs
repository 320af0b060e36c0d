//! `interlock completions`: a shell completion script for the whole CLI.

use crate::{Cli, Out};
use clap::CommandFactory;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    shell: clap_complete::Shell,
}

pub fn run(a: Args) -> Out {
    clap_complete::generate(
        a.shell,
        &mut Cli::command(),
        "interlock",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
