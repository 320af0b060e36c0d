//! interlock: submit, follow and control Interlock workflows from a terminal.
//!
//! This file parses the command line, hands each command to its module in
//! `cmd/`, and turns the outcome into an exit code. Human output by default,
//! `--json` everywhere for scripts (the protobuf JSON mapping, so a WorkReq
//! file and `status --json` share field names; the exact rules are in
//! docs/cli.md and `output.rs`).
//!
//! Exit codes: 0 success (also when stdout closes early); 1 the workflow
//! ended other than Completed (status, watch, submit/clone --watch) or
//! Validate found violations; 2 usage, input file or output error; 3 the
//! server refused the call; 4 the server could not be reached or did not
//! answer within --timeout.

mod cmd;
mod fail;
mod output;
mod target;

use clap::{Parser, Subcommand};
use fail::Fail;
use interlock_client::args::CredentialArgs;
use interlock_client::is_final;
use interlock_proto::v1;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use target::Target;

#[derive(Parser)]
#[command(
    name = "interlock",
    version,
    about = "Operate Interlock: submit, watch, stop and inspect workflows"
)]
pub(crate) struct Cli {
    /// Server address [default: from the config file, else http://127.0.0.1:8080].
    #[arg(long, env = "INTERLOCK_ADDR", global = true)]
    addr: Option<String>,
    /// CLI config file, JSON: {"addr": "https://host:port", "ca": "ca.pem",
    /// "cert": "me.pem", "key": "me.key", "token_file": "token"} (all optional)
    /// [default: $XDG_CONFIG_HOME/interlock/cli.json or ~/.config/interlock/cli.json].
    #[arg(long, env = "INTERLOCK_CLI_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    creds: CredentialArgs,
    /// Deadline of each call, and of connecting, e.g. 500ms, 10s, 1m.
    #[arg(long, env = "INTERLOCK_TIMEOUT", global = true, default_value = "10s",
          value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Print JSON instead of human output: the protobuf JSON mapping with
    /// every field, null where a field does not apply, plain status names
    /// (docs/cli.md).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Submit a WorkReq from a JSON or YAML file; prints the id.
    Submit(cmd::submit::Args),
    /// Dry run: every violation the server would refuse the file for.
    Validate(cmd::validate::Args),
    /// Start a submitted workflow.
    Exec(cmd::lifecycle::ExecArgs),
    /// A workflow's status as a tree.
    Status(cmd::status::Args),
    /// Follow a workflow live until it ends.
    Watch(cmd::watch::Args),
    /// The log lines of a workflow's jobs (stdout, stderr, messages).
    Logs(cmd::logs::Args),
    /// Workflows, newest first.
    List(cmd::list::Args),
    /// Cancel a workflow.
    Cancel(cmd::lifecycle::CancelArgs),
    /// Pause a workflow: running jobs finish, no new job starts.
    Pause(cmd::lifecycle::PauseArgs),
    /// Resume a paused workflow.
    Resume(cmd::lifecycle::ResumeArgs),
    /// Approve a workflow awaiting approval (a requireApproval policy).
    Approve(cmd::lifecycle::DecideArgs),
    /// Reject a workflow awaiting approval: it ends Cancelled.
    Reject(cmd::lifecycle::DecideArgs),
    /// Decide about a job Interrupted by a restart.
    Resolve(cmd::lifecycle::ResolveArgs),
    /// Submit a workflow's request again.
    Clone(cmd::clone::Args),
    /// Instantiate a template with parameter values and start the workflow.
    Run(cmd::run::Args),
    /// Sites and machines: list, import into the store, change a site's status.
    Inventory {
        #[command(subcommand)]
        cmd: cmd::inventory::InventoryCmd,
    },
    /// Templates instantiated at given times (once, or on a cron expression).
    Schedule {
        #[command(subcommand)]
        cmd: cmd::schedule::ScheduleCmd,
    },
    /// Workflow templates kept on the server, with their revisions.
    Template {
        #[command(subcommand)]
        cmd: cmd::template::TemplateCmd,
    },
    /// The emergency stop.
    Es {
        #[command(subcommand)]
        cmd: cmd::es::EsCmd,
    },
    /// Operations on the server itself (backup), and certificates for it.
    Admin {
        #[command(subcommand)]
        cmd: cmd::admin::AdminCmd,
    },
    /// Token bucket levels.
    Buckets,
    /// Blast-radius limits: who holds them and how many wait.
    Limits,
    /// The job catalog: every job, its arguments and whether it is safe to re-run.
    Jobs,
    /// The policy set in force.
    Policies,
    /// The audit log, newest first.
    Audit(cmd::audit::Args),
    /// Who the server takes you to be, and your roles.
    Whoami,
    /// The server instances (replicas) sharing the store, and what each runs.
    Cluster,
    /// Workers connected to this server, and jobs waiting for one.
    Workers,
    /// Bearer tokens for servers running with --auth.
    Token {
        #[command(subcommand)]
        cmd: cmd::token::TokenCmd,
    },
    /// Print a shell completion script.
    Completions(cmd::completions::Args),
    /// Write manual pages for every command into a directory.
    Man(cmd::man::Args),
}

/// What a command ends with: its exit code, or a failure carrying one.
pub(crate) type Out = Result<ExitCode, Fail>;

/// Exit 1 for a workflow that ended other than Completed.
pub(crate) fn workflow_exit(status: i32) -> ExitCode {
    if status == v1::Status::Completed as i32 || !is_final(status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run(cli: Cli, t: &Target) -> Out {
    let json = cli.json;
    match cli.cmd {
        Cmd::Token { cmd } => cmd::token::run(&cmd, json),
        Cmd::Completions(a) => cmd::completions::run(a),
        Cmd::Man(a) => cmd::man::run(a),
        Cmd::Submit(a) => cmd::submit::run(a, t, json).await,
        Cmd::Validate(a) => cmd::validate::run(a, t, json).await,
        Cmd::Exec(a) => cmd::lifecycle::exec(a, t, json).await,
        Cmd::Status(a) => cmd::status::run(a, t, json).await,
        Cmd::Watch(a) => cmd::watch::run(a, t, json).await,
        Cmd::Logs(a) => cmd::logs::run(a, t, json).await,
        Cmd::List(a) => cmd::list::run(a, t, json).await,
        Cmd::Cancel(a) => cmd::lifecycle::cancel(a, t, json).await,
        Cmd::Pause(a) => cmd::lifecycle::pause(a, t, json).await,
        Cmd::Resume(a) => cmd::lifecycle::resume(a, t, json).await,
        Cmd::Approve(a) => cmd::lifecycle::decide(a, true, t, json).await,
        Cmd::Reject(a) => cmd::lifecycle::decide(a, false, t, json).await,
        Cmd::Resolve(a) => cmd::lifecycle::resolve(a, t, json).await,
        Cmd::Clone(a) => cmd::clone::run(a, t, json).await,
        Cmd::Run(a) => cmd::run::run(a, t, json).await,
        Cmd::Template { cmd } => cmd::template::run(cmd, t, json).await,
        Cmd::Schedule { cmd } => cmd::schedule::run(cmd, t, json).await,
        Cmd::Inventory { cmd } => cmd::inventory::run(cmd, t, json).await,
        Cmd::Es { cmd } => cmd::es::run(cmd, t, json).await,
        Cmd::Admin { cmd } => cmd::admin::run(cmd, t, json).await,
        Cmd::Buckets => cmd::buckets::run(t, json).await,
        Cmd::Limits => cmd::limits::run(t, json).await,
        Cmd::Jobs => cmd::jobs::run(t, json).await,
        Cmd::Policies => cmd::policies::run(t, json).await,
        Cmd::Audit(a) => cmd::audit::run(a, t, json).await,
        Cmd::Whoami => cmd::whoami::run(t, json).await,
        Cmd::Cluster => cmd::cluster::run(t, json).await,
        Cmd::Workers => cmd::workers::run(t, json).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Local commands work whatever the connection settings say.
    let target = match &cli.cmd {
        Cmd::Token { .. }
        | Cmd::Completions(_)
        | Cmd::Man(_)
        | Cmd::Admin {
            cmd: cmd::admin::AdminCmd::GenCerts(_),
        } => Ok(Target::local()),
        _ => target::resolve(&cli.addr, &cli.config, &cli.creds, cli.timeout),
    };
    let (t, result) = match target {
        Ok(t) => {
            let r = run(cli, &t).await;
            (t, r)
        }
        Err(f) => (Target::local(), Err(f)),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            let (code, msg) = f.report(&t);
            if let Some(msg) = msg {
                // Nothing better to do if stderr is gone too.
                let _ = writeln!(std::io::stderr(), "interlock: {msg}");
            }
            ExitCode::from(code)
        }
    }
}
