//! `interlock clone`: submit a workflow's request again, optionally
//! starting and following the copy.

use crate::Out;
use crate::cmd::{parse_label, submit};
use crate::target::{Target, connect};
use interlock_proto::v1;

#[derive(clap::Args)]
pub struct Args {
    id: String,
    /// Only jobs that did not complete.
    #[arg(long)]
    only_unfinished: bool,
    /// Label key=value added to the original's (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Start the copy right away.
    #[arg(long)]
    exec: bool,
    /// Start the copy and follow it to the end (implies --exec).
    #[arg(long)]
    watch: bool,
    /// With --watch: show the jobs' log lines too.
    #[arg(long, requires = "watch")]
    logs: bool,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let c = connect(t).await?;
    let req = v1::CloneReq {
        id: a.id,
        only_unfinished: a.only_unfinished,
        labels: a.labels.into_iter().collect(),
        ..Default::default()
    };
    // The RPC's generated method shares its name with Clone::clone.
    let r = v1::workflow_client::WorkflowClient::clone(&mut c.raw(), req)
        .await?
        .into_inner();
    submit::start(&c, &r.id, a.exec, a.watch.then_some(a.logs), json).await
}
