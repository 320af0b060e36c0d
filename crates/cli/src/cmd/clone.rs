//! `interlock clone`: submit a workflow's request again.

use crate::Out;
use crate::output::{self, outln, print_value};
use crate::target::{Target, connect};
use interlock_proto::v1;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    id: String,
    /// Only jobs that did not complete.
    #[arg(long)]
    only_unfinished: bool,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let mut raw = connect(t).await?.raw();
    let req = v1::CloneReq {
        id: a.id,
        only_unfinished: a.only_unfinished,
        ..Default::default()
    };
    // The RPC's generated method shares its name with Clone::clone.
    let r = v1::workflow_client::WorkflowClient::clone(&mut raw, req)
        .await?
        .into_inner();
    if json {
        print_value(&output::action(&r.id, &r))?;
    } else {
        outln!("{}", r.id)?;
    }
    Ok(ExitCode::SUCCESS)
}
