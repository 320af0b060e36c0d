//! `interlock admin`: operations on the server itself.

use crate::Out;
use crate::output::{outln, print_json};
use crate::target::{Target, control};
use interlock_proto::v1;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum AdminCmd {
    /// Write a consistent copy of the database to FILE while the server
    /// serves (SQLite). FILE is a path on the server's machine and must
    /// not exist; restore with `interlockd --restore FILE`.
    Backup { file: PathBuf },
}

pub async fn run(cmd: AdminCmd, t: &Target, json: bool) -> Out {
    match cmd {
        AdminCmd::Backup { file } => {
            // Relative paths mean the same file to both sides only when
            // both run here; make it explicit.
            let path = if file.is_absolute() {
                file
            } else {
                std::env::current_dir()
                    .map_err(|e| {
                        crate::fail::Fail::Msg(2, format!("cannot resolve {}: {e}", file.display()))
                    })?
                    .join(file)
            };
            let r = control(t)
                .await?
                .backup(v1::BackupReq {
                    path: path.display().to_string(),
                })
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
            } else {
                outln!("backed up to {} ({} bytes)", r.path, r.bytes)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
