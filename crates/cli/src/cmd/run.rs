//! `interlock run TEMPLATE key=value ...`: instantiate a template on the
//! server and start the workflow (or only show what it would be).

use crate::Out;
use crate::cmd::{parse_label, submit};
use crate::fail::Fail;
use crate::output::{outln, print_json};
use crate::target::{Target, connect};
use interlock_proto::v1;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    template: String,
    /// Parameter values, name=value (a list comma-separated).
    #[arg(value_parser = parse_label)]
    params: Vec<(String, String)>,
    /// A revision other than the latest.
    #[arg(long)]
    revision: Option<u32>,
    /// Label key=value for the workflow (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Show the request the template becomes and every violation; store
    /// nothing.
    #[arg(long)]
    dry_run: bool,
    /// Submit only; start it later with `interlock exec`.
    #[arg(long, conflicts_with = "watch")]
    no_exec: bool,
    /// Follow the workflow to the end.
    #[arg(long)]
    watch: bool,
    /// With --watch: show the jobs' log lines too.
    #[arg(long, requires = "watch")]
    logs: bool,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let c = connect(t).await?;
    let r = c
        .instantiate(v1::InstantiateReq {
            template: a.template,
            revision: a.revision.unwrap_or(0),
            params: a.params.into_iter().collect(),
            labels: a.labels.into_iter().collect(),
            dry_run: a.dry_run,
            ..Default::default()
        })
        .await?;
    if a.dry_run {
        return dry_run(&r, json);
    }
    if !json {
        for f in &r.fanouts {
            eprintln!(
                "{} revision {}: block {} fans out over {} ({} items{})",
                r.template,
                r.revision,
                f.template_block,
                f.source,
                f.items,
                if f.blocks > 1 {
                    format!(", {} waves", f.blocks)
                } else {
                    String::new()
                }
            );
        }
    }
    let started = submit::start(&c, &r.id, !a.no_exec, a.watch.then_some(a.logs), json).await;
    started.map_err(|f| match f {
        Fail::Rpc(s) => Fail::Rpc(tonic::Status::new(
            s.code(),
            format!(
                "workflow {} was submitted but not started: {}",
                r.id,
                s.message()
            ),
        )),
        other => other,
    })
}

fn dry_run(r: &v1::InstantiateResp, json: bool) -> Out {
    let ok = r.validation.as_ref().is_some_and(|v| v.ok);
    if json {
        print_json(r)?;
    } else {
        outln!("{} revision {}", r.template, r.revision)?;
        for (k, v) in &r.values {
            outln!("  {k} = {v}")?;
        }
        for f in &r.fanouts {
            outln!(
                "block {}: fans out over {} ({} items, {} block(s))",
                f.template_block,
                f.source,
                f.items,
                f.blocks
            )?;
        }
        if let Some(req) = &r.request {
            let jobs: usize = req.blocks.iter().map(|b| b.jobs.len()).sum();
            outln!(
                "request: {} ({} blocks, {jobs} jobs)",
                req.name,
                req.blocks.len()
            )?;
            let value = serde_json::to_value(req).map_err(|e| Fail::Msg(2, e.to_string()))?;
            let yaml = serde_yaml_ng::to_string(&value).map_err(|e| Fail::Msg(2, e.to_string()))?;
            crate::output::write(&yaml)?;
        }
        if let Some(v) = &r.validation {
            crate::cmd::validate::print(v)?;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
