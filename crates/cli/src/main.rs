//! interlock: submit, follow and control Interlock workflows from a terminal.
//!
//! Human output by default, `--json` everywhere for scripts (protobuf JSON
//! mapping, so a WorkReq file round-trips with `status --json`).
//!
//! Exit codes: 0 success; 1 the workflow ended other than Completed (status,
//! watch, submit --watch) or Validate found violations; 2 usage or input file
//! error; 3 the server refused the call; 4 the server could not be reached.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use interlock_client::args::CredentialArgs;
use interlock_client::display::{status_name, tree};
use interlock_client::{Client, Options, Transport, is_final, transport};
use interlock_proto::v1;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "interlock",
    version,
    about = "Operate Interlock: submit, watch, stop and inspect workflows"
)]
struct Cli {
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
    /// Print JSON (protobuf JSON mapping) instead of human output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Submit a WorkReq from a JSON or YAML file; prints the id.
    Submit {
        file: PathBuf,
        /// Start it right away.
        #[arg(long)]
        exec: bool,
        /// Start it and follow it to the end (implies --exec).
        #[arg(long)]
        watch: bool,
    },
    /// Dry run: every violation the server would refuse the file for.
    Validate { file: PathBuf },
    /// Start a submitted workflow.
    Exec { id: String },
    /// A workflow's status as a tree.
    Status { id: String },
    /// Follow a workflow live until it ends.
    Watch { id: String },
    /// Workflows, newest first.
    List {
        #[arg(long)]
        name: Option<String>,
        /// Status filter (repeatable), e.g. Running, Failed.
        #[arg(long = "status")]
        statuses: Vec<String>,
        /// Label filter key=value (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long, default_value = "20")]
        limit: i32,
        /// Continue from a previous listing's next page token.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Cancel a workflow.
    Cancel {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Pause a workflow: running jobs finish, no new job starts.
    Pause {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a paused workflow.
    Resume { id: String },
    /// Decide about a job Interrupted by a restart.
    Resolve {
        id: String,
        block: i32,
        job: i32,
        action: Decision,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Submit a workflow's request again.
    Clone {
        id: String,
        /// Only jobs that did not complete.
        #[arg(long)]
        only_unfinished: bool,
    },
    /// The emergency stop.
    Es {
        #[command(subcommand)]
        cmd: EsCmd,
    },
    /// Token bucket levels.
    Buckets,
    /// The job catalog: every job, its arguments and whether it is safe to re-run.
    Jobs,
    /// The policy set in force.
    Policies,
    /// The audit log, newest first.
    Audit {
        #[arg(long, default_value = "50")]
        limit: i32,
        /// Entries older than this id (from a previous page).
        #[arg(long, default_value = "0")]
        before: i64,
    },
    /// Who the server takes you to be, and your roles.
    Whoami,
    /// Bearer tokens for servers running with --auth.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Mint a random token (locally; nothing is sent) and print the entry
    /// to add to the server's tokens.json.
    New {
        /// Name the token's calls are audited and authorized under (token:NAME).
        #[arg(long)]
        name: String,
        /// Validity, e.g. 90d or 12h; the entry then carries "expires".
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// Print the tokens.json hash of an existing token read from stdin.
    Hash,
}

#[derive(Subcommand)]
enum EsCmd {
    /// Current state.
    Status,
    /// Stop a workflow name ("*" for all).
    Stop {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// Allow a workflow name again.
    Go {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Decision {
    Retry,
    Skip,
    Cancel,
}

/// A failure with its exit code.
struct Fail(u8, String);

impl From<tonic::Status> for Fail {
    fn from(s: tonic::Status) -> Self {
        use tonic_types::StatusExt;
        let mut msg = format!("{:?}: {}", s.code(), s.message());
        let d = s.get_error_details();
        if let Some(pf) = d.precondition_failure() {
            for v in &pf.violations {
                msg.push_str(&format!(
                    "\n  {} at {}: {}",
                    v.r#type, v.subject, v.description
                ));
            }
        }
        Fail(3, msg)
    }
}

impl From<interlock_client::Error> for Fail {
    fn from(e: interlock_client::Error) -> Self {
        use interlock_client::Error as E;
        match e {
            E::Rpc(s) => s.into(),
            e @ (E::Credentials(_) | E::Address(..)) => Fail(2, e.to_string()),
            other => Fail(4, other.to_string()),
        }
    }
}

type Out = Result<ExitCode, Fail>;

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Fail> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Fail(3, e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn read_request(path: &PathBuf) -> Result<v1::WorkReq, Fail> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Fail(2, format!("cannot read {}: {e}", path.display())))?;
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let value: serde_json::Value = if yaml {
        serde_yaml_ng::from_str(&text).map_err(|e| Fail(2, format!("{}: {e}", path.display())))?
    } else {
        serde_json::from_str(&text).map_err(|e| Fail(2, format!("{}: {e}", path.display())))?
    };
    serde_json::from_value(value)
        .map_err(|e| Fail(2, format!("{}: not a WorkReq: {e}", path.display())))
}

fn workflow_exit(status: i32) -> ExitCode {
    if status == v1::Status::Completed as i32 || !is_final(status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Where the server is and how to talk to it.
struct Target {
    addr: String,
    opts: Options,
}

async fn connect(t: &Target) -> Result<Client, Fail> {
    Ok(Client::connect(&t.addr, t.opts.clone()).await?)
}

async fn control(t: &Target) -> Result<v1::control_client::ControlClient<Transport>, Fail> {
    Ok(v1::control_client::ControlClient::new(
        transport(&t.addr, &t.opts).await?,
    ))
}

/// Applies one transition to the local picture of the workflow.
fn apply(st: &mut v1::StatusResp, t: &v1::Transition) {
    match (t.block, t.job) {
        (-1, _) => {
            st.status = t.status;
            if !t.message.is_empty() {
                st.reason = t.message.clone();
            }
        }
        (b, -1) => {
            if let Some(b) = st.blocks.get_mut(b as usize) {
                b.status = t.status;
            }
        }
        (b, j) => {
            if let Some(j) = st
                .blocks
                .get_mut(b as usize)
                .and_then(|b| b.jobs.get_mut(j as usize))
            {
                j.status = t.status;
                j.error = t.message.clone();
            }
        }
    }
}

async fn watch(c: &Client, id: &str, json: bool) -> Out {
    use v1::watch_event::Event;
    let mut stream = c
        .raw()
        .watch(v1::WatchReq { id: id.into() })
        .await?
        .into_inner();
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>9} {bar:24} {pos:>4}/{len:<4} {msg}")
        .expect("template");
    let mut bars: Vec<ProgressBar> = Vec::new();
    let mut state: Option<v1::StatusResp> = None;
    while let Some(ev) = stream.message().await? {
        if json {
            println!(
                "{}",
                serde_json::to_string(&ev).map_err(|e| Fail(3, e.to_string()))?
            );
        }
        match ev.event {
            Some(Event::Snapshot(s)) => state = Some(s),
            Some(Event::Transition(t)) => {
                if let Some(st) = state.as_mut() {
                    apply(st, &t);
                }
            }
            None => {}
        }
        let Some(st) = &state else { continue };
        if json {
            continue;
        }
        if bars.is_empty() {
            for (bi, b) in st.blocks.iter().enumerate() {
                let bar = multi.add(ProgressBar::new(b.jobs.len() as u64));
                bar.set_style(style.clone());
                bar.set_prefix(format!("block {bi}"));
                // Redraw between events too: indicatif rate-limits draws, and
                // a long job sends nothing until it ends.
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                bars.push(bar);
            }
        }
        for (b, bar) in st.blocks.iter().zip(&bars) {
            let count = |s: v1::Status| b.jobs.iter().filter(|j| j.status == s as i32).count();
            let finished = b
                .jobs
                .iter()
                .filter(|j| is_final(j.status) || j.status == v1::Status::Skipped as i32)
                .count();
            bar.set_position(finished as u64);
            bar.set_message(format!(
                "{:<10} running {} failed {}{}",
                status_name(b.status),
                count(v1::Status::Running),
                count(v1::Status::Failed),
                if b.desc.is_empty() {
                    String::new()
                } else {
                    format!("  {}", b.desc)
                }
            ));
        }
    }
    for bar in &bars {
        bar.finish();
    }
    let final_status = match state {
        Some(_) if json => c.status(id).await?.status,
        Some(_) => {
            // The stream carries statuses, not timings: print the stored tree.
            let st = c.status(id).await?;
            print!("{}", tree(&st));
            st.status
        }
        None => return Err(Fail(3, "the server sent no snapshot".into())),
    };
    Ok(workflow_exit(final_status))
}

/// The CLI's own settings file.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CliConfig {
    addr: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    token_file: Option<PathBuf>,
}

/// Each setting from its flag or `INTERLOCK_*` variable, else the config
/// file, else the default (plaintext to the local server).
fn resolve_target(cli: &Cli) -> Result<Target, Fail> {
    let file = read_cli_config(cli)?;
    let credentials = cli
        .creds
        .clone()
        .or(CredentialArgs {
            ca: file.ca,
            cert: file.cert,
            key: file.key,
            token_file: file.token_file,
            ..CredentialArgs::default()
        })
        .credentials()?;
    let addr = cli
        .addr
        .clone()
        .or(file.addr)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    Ok(Target {
        addr,
        opts: Options {
            credentials,
            ..Options::default()
        },
    })
}

/// The config file; a file named explicitly must exist.
fn read_cli_config(cli: &Cli) -> Result<CliConfig, Fail> {
    let (path, explicit) = match &cli.config {
        Some(p) => (Some(p.clone()), true),
        None => {
            let base = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
            (base.map(|b| b.join("interlock/cli.json")), false)
        }
    };
    match path {
        Some(p) => match std::fs::read_to_string(&p) {
            Ok(text) => serde_json::from_str::<CliConfig>(&text)
                .map_err(|e| Fail(2, format!("{}: {e}", p.display()))),
            Err(e) if explicit => Err(Fail(2, format!("cannot read {}: {e}", p.display()))),
            Err(_) => Ok(CliConfig::default()),
        },
        None => Ok(CliConfig::default()),
    }
}

async fn run(cli: Cli) -> Out {
    let json = cli.json;
    // Local commands work whatever the connection settings say.
    let target = match &cli.cmd {
        Cmd::Token { .. } | Cmd::Completions { .. } => Target {
            addr: String::new(),
            opts: Options::default(),
        },
        _ => resolve_target(&cli)?,
    };
    let addr = &target;
    match cli.cmd {
        Cmd::Token { cmd } => token_cmd(&cmd, json),
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "interlock",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Submit {
            file,
            exec,
            watch: follow,
        } => {
            let req = read_request(&file)?;
            let c = connect(addr).await?;
            let id = c.submit(req).await?;
            if exec || follow {
                c.exec(&id).await?;
            }
            if json {
                print_json(&v1::WorkResp { id: id.clone() })?;
            } else {
                println!("{id}");
            }
            if follow {
                return watch(&c, &id, json).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Validate { file } => {
            let r = connect(addr).await?.validate(read_request(&file)?).await?;
            if json {
                print_json(&r)?;
            } else if r.ok {
                println!("ok (policy version {})", r.policy_version);
            } else {
                for v in &r.violations {
                    let at = match (v.block, v.job) {
                        (-1, _) => String::new(),
                        (b, -1) => format!(" (block {b})"),
                        (b, j) => format!(" (block {b}, job {j})"),
                    };
                    println!("{}{at}: {}", v.policy, v.message);
                }
            }
            Ok(if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Exec { id } => {
            connect(addr).await?.exec(&id).await?;
            if json {
                print_json(&v1::ExecResp {})?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { id } => {
            let st = connect(addr).await?.status(&id).await?;
            if json {
                print_json(&st)?;
            } else {
                print!("{}", tree(&st));
                let who = |w: &str| {
                    if w.is_empty() {
                        "-".to_string()
                    } else {
                        w.to_string()
                    }
                };
                println!(
                    "submitted by {}, executed by {}",
                    who(&st.submitted_by),
                    who(&st.executed_by)
                );
            }
            Ok(workflow_exit(st.status))
        }
        Cmd::Watch { id } => watch(&connect(addr).await?, &id, json).await,
        Cmd::List {
            name,
            statuses,
            labels,
            limit,
            page_token,
        } => {
            let mut req = v1::ListReq {
                name: name.unwrap_or_default(),
                page_size: limit,
                page_token,
                ..Default::default()
            };
            for s in statuses {
                let wire = format!("Status{s}");
                let v = v1::Status::from_str_name(&wire)
                    .or_else(|| v1::Status::from_str_name(&s))
                    .ok_or_else(|| {
                        Fail(
                            2,
                            format!("unknown status {s:?} (e.g. Running, Failed, Completed)"),
                        )
                    })?;
                req.statuses.push(v as i32);
            }
            for l in labels {
                let (k, v) = l
                    .split_once('=')
                    .ok_or_else(|| Fail(2, format!("label {l:?} is not key=value")))?;
                req.labels.insert(k.into(), v.into());
            }
            let r = connect(addr).await?.raw().list(req).await?.into_inner();
            if json {
                print_json(&r)?;
            } else {
                for w in &r.workflows {
                    // RFC 3339, as in the protobuf JSON mapping.
                    let created = w
                        .created
                        .as_ref()
                        .and_then(|t| serde_json::to_value(t).ok())
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    println!(
                        "{}  {:<11} {:<22} {}  {}",
                        w.id,
                        status_name(w.status),
                        w.name,
                        created,
                        w.reason
                    );
                }
                if !r.next_page_token.is_empty() {
                    println!("more: --page-token {}", r.next_page_token);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cancel { id, reason } => {
            let r = connect(addr)
                .await?
                .raw()
                .cancel(v1::CancelReq { id, reason })
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
            } else {
                println!("{}", status_name(r.status));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pause { id, reason } => {
            connect(addr)
                .await?
                .raw()
                .pause(v1::PauseReq { id, reason })
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Resume { id } => {
            connect(addr)
                .await?
                .raw()
                .resume(v1::ResumeReq { id })
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Resolve {
            id,
            block,
            job,
            action,
            reason,
        } => {
            use v1::resolve_job_req::Action;
            let action = match action {
                Decision::Retry => Action::Retry,
                Decision::Skip => Action::Skip,
                Decision::Cancel => Action::Cancel,
            } as i32;
            let req = v1::ResolveJobReq {
                id,
                block,
                job,
                action,
                reason,
            };
            connect(addr).await?.raw().resolve_job(req).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Clone {
            id,
            only_unfinished,
        } => {
            let mut raw = connect(addr).await?.raw();
            let req = v1::CloneReq {
                id,
                only_unfinished,
                ..Default::default()
            };
            // The RPC's generated method shares its name with Clone::clone.
            let r = v1::workflow_client::WorkflowClient::clone(&mut raw, req)
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
            } else {
                println!("{}", r.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Es { cmd } => {
            let mut c = control(addr).await?;
            let r = match cmd {
                EsCmd::Status => c.emergency_stop_state(v1::EmergencyStopStateReq {}).await?,
                EsCmd::Stop { name, reason } => {
                    c.set_emergency_stop(v1::SetEmergencyStopReq {
                        name,
                        stop: true,
                        reason,
                    })
                    .await?
                }
                EsCmd::Go { name, reason } => {
                    c.set_emergency_stop(v1::SetEmergencyStopReq {
                        name,
                        stop: false,
                        reason,
                    })
                    .await?
                }
            }
            .into_inner();
            if json {
                print_json(&r)?;
            } else {
                if !r.error.is_empty() {
                    println!("EVERYTHING STOPPED: {}", r.error);
                }
                for e in &r.entries {
                    let state = if e.stop { "STOP" } else { "go" };
                    println!("{:<24} {state:<4} {}", e.name, e.reason);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Buckets => {
            let r = control(addr)
                .await?
                .buckets(v1::BucketsReq {})
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
            } else {
                for b in &r.buckets {
                    let next = b
                        .next_token_in
                        .as_ref()
                        .map(|d| format!(", next token in {}s", d.seconds))
                        .unwrap_or_default();
                    println!(
                        "{:<24} {}/{} available{next}",
                        b.name, b.available, b.capacity
                    );
                }
                if !r.last_error.is_empty() {
                    println!("last reload error: {}", r.last_error);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Jobs => {
            let r = connect(addr).await?.job_catalog().await?;
            if json {
                print_json(&r)?;
            } else {
                for j in &r.jobs {
                    let safety = if j.idempotent {
                        "safe to re-run"
                    } else if j.reconcilable {
                        "reconciled after a crash"
                    } else {
                        "needs an operator after a crash"
                    };
                    println!("{} ({safety})\n  {}", j.name, j.description);
                    for a in &j.args {
                        let req = if a.required { "required" } else { "optional" };
                        println!("  {:<10} {req:<8} {} [{}]", a.name, a.description, a.format);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit { limit, before } => {
            let req = v1::AuditReq {
                limit,
                before_id: before,
                ..Default::default()
            };
            let r = control(addr).await?.audit(req).await?.into_inner();
            if json {
                print_json(&r)?;
            } else {
                for e in &r.entries {
                    let at = e.at.as_ref().and_then(|t| serde_json::to_value(t).ok());
                    let at = at.as_ref().and_then(|v| v.as_str()).unwrap_or("");
                    // Anonymous identities already name their address.
                    let from = if e.peer.is_empty() || e.identity.ends_with(&e.peer) {
                        String::new()
                    } else {
                        format!(" (from {})", e.peer)
                    };
                    println!(
                        "{:>6} {at} {:<28} {:<14} {:<40} {} {}{from}",
                        e.id, e.identity, e.action, e.target, e.outcome, e.detail
                    );
                }
                if r.next_before_id > 0 {
                    println!("more: --before {}", r.next_before_id);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Whoami => {
            let r = control(addr)
                .await?
                .who_am_i(v1::WhoAmIReq {})
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
            } else if !r.auth_enabled {
                println!(
                    "{} (authentication is off: every call is allowed)",
                    r.identity
                );
            } else {
                println!("{}", r.identity);
                for a in &r.aliases {
                    println!("  also {a}");
                }
                match r.roles.as_slice() {
                    [] => println!("  roles: none (every call will be denied)"),
                    roles => println!("  roles: {}", roles.join(", ")),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Policies => {
            let r = control(addr)
                .await?
                .policy_state(v1::PolicyStateReq {})
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
            } else {
                if r.loaded {
                    println!("version {} from {}", r.version, r.path);
                    println!("workflows: {}", r.workflows.join(", "));
                } else {
                    println!(
                        "NO VALID POLICIES LOADED: every Submit is refused ({})",
                        r.path
                    );
                }
                if !r.last_error.is_empty() {
                    println!("last reload error: {}", r.last_error);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(Fail(code, msg)) => {
            eprintln!("interlock: {msg}");
            ExitCode::from(code)
        }
    }
}

fn token_cmd(cmd: &TokenCmd, json: bool) -> Out {
    use interlock_auth::tokens;
    let (token, entry) = match cmd {
        TokenCmd::New { name, expires_in } => {
            let token = tokens::mint();
            let mut entry = serde_json::json!({"name": name, "sha256": tokens::hash(&token)});
            if let Some(d) = expires_in {
                let at = std::time::SystemTime::now() + *d;
                entry["expires"] = humantime::format_rfc3339_seconds(at).to_string().into();
            }
            (token, entry)
        }
        TokenCmd::Hash => {
            let mut t = String::new();
            std::io::stdin()
                .read_line(&mut t)
                .map_err(|e| Fail(2, format!("cannot read the token from stdin: {e}")))?;
            let sha256 = tokens::hash(t.trim());
            if json {
                print_json(&serde_json::json!({ "sha256": sha256 }))?;
            } else {
                println!("{sha256}");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        let mut out = entry.clone();
        out["token"] = token.into();
        print_json(&out)?;
    } else {
        println!("token: {token}");
        println!();
        println!("Add this entry to \"tokens\" in the server's tokens.json, and bind");
        println!(
            "token:{} to a role in rbac.json:",
            entry["name"].as_str().unwrap_or_default()
        );
        println!("  {entry}");
        println!();
        println!("The server keeps only the hash: store the token now.");
    }
    Ok(ExitCode::SUCCESS)
}
