//! `interlock submit`: send a WorkReq file, optionally start and follow it;
//! also reads request files for `validate`.

use crate::fail::Fail;
use crate::output::{self, outln};
use crate::target::{Target, connect};
use crate::{Out, cmd::watch};
use interlock_client::Client;
use interlock_proto::v1;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    file: PathBuf,
    /// Start it right away.
    #[arg(long)]
    exec: bool,
    /// Start it and follow it to the end (implies --exec).
    #[arg(long)]
    watch: bool,
    /// With --watch: show the jobs' log lines too.
    #[arg(long, requires = "watch")]
    logs: bool,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let req = read_request(&a.file)?;
    let c = connect(t).await?;
    let id = c.submit(req).await?;
    start(&c, &id, a.exec, a.watch.then_some(a.logs), json).await
}

/// After a workflow was created (submit, clone): start it if asked, print
/// its id, and follow it if asked (`watch`: with the jobs' log lines or not).
pub async fn start(c: &Client, id: &str, exec: bool, watch: Option<bool>, json: bool) -> Out {
    let follow = watch;
    let watch = follow.is_some();
    if exec || watch {
        c.exec(id).await?;
    }
    if json {
        let done = output::action(id, &v1::WorkResp { id: id.into() });
        // Followed by the watch's JSON lines: one document per line.
        if watch {
            outln!("{done}")?;
        } else {
            output::print_value(&done)?;
        }
    } else {
        outln!("{id}")?;
    }
    if let Some(logs) = follow {
        return watch::follow(c, id, json, logs).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// A WorkReq from a JSON or YAML file (by extension), in the protobuf JSON
/// mapping.
pub fn read_request(path: &PathBuf) -> Result<v1::WorkReq, Fail> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Fail::Msg(2, format!("cannot read {}: {e}", path.display())))?;
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let value: serde_json::Value = if yaml {
        serde_yaml_ng::from_str(&text)
            .map_err(|e| Fail::Msg(2, format!("{}: {e}", path.display())))?
    } else {
        serde_json::from_str(&text).map_err(|e| Fail::Msg(2, format!("{}: {e}", path.display())))?
    };
    serde_json::from_value(value)
        .map_err(|e| Fail::Msg(2, format!("{}: not a WorkReq: {e}", path.display())))
}
