//! `interlock status`: one workflow's status tree and who ran it.

use crate::output::{out, outln, print_json};
use crate::target::{Target, connect};
use crate::{Out, workflow_exit};
use interlock_client::display::tree;

#[derive(clap::Args)]
pub struct Args {
    id: String,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let st = connect(t).await?.status(&a.id).await?;
    if json {
        print_json(&st)?;
    } else {
        out!("{}", tree(&st))?;
        let who = |w: &str| {
            if w.is_empty() {
                "-".to_string()
            } else {
                w.to_string()
            }
        };
        outln!(
            "submitted by {}, executed by {}",
            who(&st.submitted_by),
            who(&st.executed_by)
        )?;
        if !st.run_by.is_empty() {
            outln!("running on server instance {}", st.run_by)?;
        }
    }
    Ok(workflow_exit(st.status))
}
