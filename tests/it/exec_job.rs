//! The built-in `exec.*` jobs: only commands.json's commands, no shell,
//! one argv element per argument, a cleared environment, and a process
//! tree that Cancel, the e-stop or a timeout ends whole.

use interlock_proto::v1;
use interlock_tests::{TestServer, eventually, req, run_one, wait_final, write_config};
use tonic::Code;

const COMMANDS: &str = r#"{"commands": [
  {"name": "greet", "argv": ["/bin/echo", "hello", "{who}"],
   "args": {"who": {"pattern": "[a-z]+", "description": "who to greet"}},
   "timeout": "5s", "idempotency": "safe"},
  {"name": "say", "argv": ["/bin/echo", "{text}"], "args": {"text": {"pattern": ".*"}},
   "timeout": "5s", "idempotency": "safe"},
  {"name": "env", "argv": ["/usr/bin/env"], "env": {"FOO": "bar"},
   "timeout": "5s", "idempotency": "safe"},
  {"name": "tree", "argv": ["/bin/sh", "-c", "sleep 300 & sleep 1; echo $! > \"$1\"; wait", "sh", "{pidfile}"],
   "args": {"pidfile": {"pattern": "/[A-Za-z0-9/_.-]+"}},
   "timeout": "60s", "grace": "1s", "idempotency": "unsafe"},
  {"name": "slow", "argv": ["/bin/sleep", "{secs}"], "args": {"secs": {"pattern": "[0-9]+"}},
   "timeout": "300ms", "grace": "1s", "idempotency": "safe"},
  {"name": "fail", "argv": ["/bin/sh", "-c", "echo oops >&2; exit 3"],
   "timeout": "5s", "idempotency": "unsafe"}
]}"#;

async fn server() -> TestServer {
    TestServer::start_with(|c| write_config(&c.configs.join("commands.json"), COMMANDS)).await
}

#[tokio::test]
async fn an_allowed_command_runs_with_each_argument_as_one_element() {
    let s = server().await;
    let st = run_one(&s, req::job("exec.greet", &[("who", "world")])).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");
    let out = &st.blocks[0].jobs[0].outputs;
    assert_eq!(out["stdout"], "hello world\n");
    assert_eq!(out["exitCode"], "0");
    // A permissive pattern lets shell syntax through, as text: no shell
    // ever reads it.
    let st = run_one(
        &s,
        req::job("exec.say", &[("text", "a; rm -rf / $(id) `id`")]),
    )
    .await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");
    assert_eq!(
        st.blocks[0].jobs[0].outputs["stdout"],
        "a; rm -rf / $(id) `id`\n"
    );
    let cat = s.client().await.job_catalog().await.unwrap();
    let greet = cat.jobs.iter().find(|j| j.name == "exec.greet").unwrap();
    assert!(greet.idempotent);
    assert!(greet.args[0].description.contains("[a-z]+"), "{greet:?}");
}

#[tokio::test]
async fn injection_attempts_and_unlisted_commands_are_refused_at_submit() {
    let s = server().await;
    let c = s.client().await;
    // A value the command's rules refuse is refused like any job's check
    // (FAILED_PRECONDITION, with the rule); a command not listed is not a
    // job type at all (INVALID_ARGUMENT).
    let refused = Code::FailedPrecondition;
    for (job, code, want) in [
        (
            req::job("exec.greet", &[("who", "; rm -rf /")]),
            refused,
            "does not match the pattern",
        ),
        (
            req::job("exec.greet", &[("who", "$(id)")]),
            refused,
            "does not match the pattern",
        ),
        (
            req::job("exec.say", &[("text", "--version")]),
            refused,
            "starts with '-'",
        ),
        (
            req::job("exec.say", &[("text", "a\nrm -rf /")]),
            refused,
            "control character",
        ),
        (
            req::job("exec.say", &[("text", "a\0b")]),
            refused,
            "control character",
        ),
        (
            req::job("exec.rm", &[("path", "/")]),
            Code::InvalidArgument,
            "exec.rm",
        ),
    ] {
        let e = c
            .submit(req::work("x", vec![req::block(1, vec![job])]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(code), "{e}");
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
}

#[tokio::test]
async fn the_environment_is_cleared_but_for_what_the_entry_sets() {
    let s = server().await;
    let st = run_one(&s, req::job("exec.env", &[])).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");
    assert_eq!(st.blocks[0].jobs[0].outputs["stdout"], "FOO=bar\n");
}

#[tokio::test]
async fn a_failing_command_reports_its_code_and_stderr() {
    let s = server().await;
    let st = run_one(&s, req::job("exec.fail", &[])).await;
    assert_eq!(st.status, v1::Status::Failed as i32, "{st:?}");
    let e = &st.blocks[0].jobs[0].error;
    assert!(e.contains("exited with code 3: oops"), "{e}");
}

#[tokio::test]
async fn a_command_past_its_timeout_is_stopped() {
    let s = server().await;
    let st = run_one(&s, req::job("exec.slow", &[("secs", "30")])).await;
    assert_eq!(st.status, v1::Status::Failed as i32, "{st:?}");
    assert!(
        st.blocks[0].jobs[0].error.contains("timed out after 300ms"),
        "{st:?}"
    );
}

/// Whether process `pid` is gone (or a zombie nobody has reaped yet).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Submits and executes `exec.tree` (a shell that leaves a grandchild
/// running) through `c`; the workflow's id and the grandchild's pid once
/// it has written it.
async fn start_tree(c: &interlock_client::Client, pidfile: &std::path::Path) -> (String, String) {
    let job = req::job("exec.tree", &[("pidfile", pidfile.to_str().unwrap())]);
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![job])]))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("the command started its child", || async {
        std::fs::read_to_string(pidfile).is_ok_and(|p| !p.trim().is_empty())
    })
    .await;
    let pid = std::fs::read_to_string(pidfile).unwrap().trim().to_string();
    (id, pid)
}

async fn tree_is_ended_by(stop: impl AsyncFnOnce(&TestServer, &str)) -> v1::StatusResp {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let c = s.client().await;
    let (id, pid) = start_tree(&c, &pidfile).await;
    assert!(!gone(&pid));
    stop(&s, &id).await;
    let st = wait_final(&c, &id).await;
    eventually("the whole tree is gone", || async { gone(&pid) }).await;
    st
}

#[tokio::test]
async fn cancel_ends_the_whole_process_tree() {
    let st = tree_is_ended_by(async |s: &TestServer, id: &str| {
        s.raw()
            .await
            .cancel(v1::CancelReq {
                id: id.to_string(),
                reason: "enough".into(),
            })
            .await
            .unwrap();
    })
    .await;
    assert_eq!(st.status, v1::Status::Cancelled as i32, "{st:?}");
}

#[tokio::test]
async fn the_emergency_stop_ends_the_whole_process_tree() {
    let st = tree_is_ended_by(async |s: &TestServer, _: &str| {
        write_config(
            &s.config_path("es.json"),
            r#"[{"Name": "x", "Status": "stop", "Reason": "incident 9"}]"#,
        );
    })
    .await;
    assert_eq!(st.status, v1::Status::Stopped as i32, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_command_left_running_is_killed_and_the_unsafe_job_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let spec = crash_spec(dir.path());
    let mut d = spec.clone().spawn().expect("interlockd starts");
    let pidfile = dir.path().join("grandchild.pid");
    let c = d.client().await;
    let (id, pid) = start_tree(&c, &pidfile).await;
    // The pidfile comes a second after the start, by which time the job's
    // checkpoint (where its process is) has long been committed.
    d.kill(); // SIGKILL: the command outlives its server
    assert!(!gone(&pid), "the orphaned command is still running");
    let (_d, st) = restart_to_a_hold(spec, &d.addr, &id, &pid).await;
    assert_eq!(
        st.blocks[0].jobs[0].status,
        v1::Status::Interrupted as i32,
        "{st:?}"
    );
}

/// Restarts a killed server on its address; once the new one has killed
/// process `pid` (left running by the dead one) and holds workflow `id`
/// Paused, the server and the workflow's status.
async fn restart_to_a_hold(
    spec: interlock_tests::daemon::DaemonSpec,
    addr: &str,
    id: &str,
    pid: &str,
) -> (interlock_tests::daemon::Daemon, v1::StatusResp) {
    let d = spec.listen(addr).spawn().expect("interlockd restarts");
    eventually("the restarted server kills it", || async { gone(pid) }).await;
    let c = d.client().await;
    eventually("the workflow is held for an operator", || async {
        c.status(id).await.unwrap().status == v1::Status::Paused as i32
    })
    .await;
    let st = c.status(id).await.unwrap();
    (d, st)
}

/// A server started on `dir` (configs with workflow "x" and the commands
/// above), and the spec to restart it on the same address.
fn crash_spec(dir: &std::path::Path) -> interlock_tests::daemon::DaemonSpec {
    let spec = interlock_tests::daemon::DaemonSpec::new(interlock_tests::interlockd!(), dir);
    let configs = dir.join("configs");
    interlock_tests::admit_x(&configs);
    write_config(&configs.join("commands.json"), COMMANDS);
    spec
}

/// A workflow paused while its unsafe command ran (Pause lets it finish),
/// then its server killed: Resume must not start the command again as if
/// it had never run. It kills what was left running and leaves the job
/// Interrupted for an operator, as a restart does for a running workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_crash_while_paused_interrupts_the_unsafe_job_it_does_not_rerun_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = crash_spec(dir.path());
    let mut d = spec.clone().spawn().expect("interlockd starts");
    let pidfile = dir.path().join("grandchild.pid");
    let c = d.client().await;
    let (id, pid) = start_tree(&c, &pidfile).await;
    c.raw()
        .pause(v1::PauseReq {
            id: id.clone(),
            reason: "look first".into(),
        })
        .await
        .expect("pause");
    assert_eq!(
        c.status(&id).await.unwrap().status,
        v1::Status::Paused as i32
    );
    d.kill();
    let d = spec
        .listen(d.addr.clone())
        .spawn()
        .expect("interlockd restarts");
    let c = d.client().await;
    std::fs::remove_file(&pidfile).unwrap();
    let err = c
        .raw()
        .resume(v1::ResumeReq { id: id.clone() })
        .await
        .expect_err("the job in flight needs a decision first");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("in flight"), "{err:?}");
    eventually("the command left running is killed", || async {
        gone(&pid)
    })
    .await;
    let st = c.status(&id).await.unwrap();
    assert_eq!(st.status, v1::Status::Paused as i32, "{st:?}");
    let job = &st.blocks[0].jobs[0];
    assert_eq!(job.status, v1::Status::Interrupted as i32, "{st:?}");
    assert!(!pidfile.exists(), "the unsafe command did not run again");
}

/// Restarted while policies.json is broken, a running workflow is held
/// Paused ("not resumed"). Its unsafe job in flight is settled before it
/// is held: Interrupted, so the Resume that follows the fixed policies
/// cannot start it again without an operator's decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_held_by_broken_policies_at_restart_keeps_its_unsafe_job_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let spec = crash_spec(dir.path());
    let policies = dir.path().join("configs/policies.json");
    let good = std::fs::read_to_string(&policies).unwrap();
    let mut d = spec.clone().spawn().expect("interlockd starts");
    let pidfile = dir.path().join("grandchild.pid");
    let c = d.client().await;
    let (id, pid) = start_tree(&c, &pidfile).await;
    d.kill();
    std::fs::write(&policies, r#"[{"Name": "x", "Poli"#).unwrap();
    let (d, st) = restart_to_a_hold(spec, &d.addr, &id, &pid).await;
    let c = d.client().await;
    assert!(st.reason.contains("not resumed"), "{st:?}");
    assert_eq!(
        st.blocks[0].jobs[0].status,
        v1::Status::Interrupted as i32,
        "{st:?}"
    );
    write_config(&policies, &good);
    std::fs::remove_file(&pidfile).unwrap();
    let err = c
        .raw()
        .resume(v1::ResumeReq { id: id.clone() })
        .await
        .expect_err("an Interrupted job needs a decision first");
    assert!(err.message().contains("ResolveJob"), "{err:?}");
    assert!(!pidfile.exists(), "the unsafe command did not run again");
    // The operator cancels: nothing of the workflow is left Running.
    c.raw()
        .resolve_job(v1::ResolveJobReq {
            id: id.clone(),
            block: 0,
            job: 0,
            action: v1::resolve_job_req::Action::Cancel as i32,
            reason: "not today".into(),
        })
        .await
        .expect("resolve");
    let st = c.status(&id).await.unwrap();
    assert_eq!(st.status, v1::Status::Cancelled as i32, "{st:?}");
    assert_eq!(st.blocks[0].status, v1::Status::Cancelled as i32, "{st:?}");
    assert!(st.blocks[0].ended.is_some(), "{st:?}");
    assert!(st.reason.ends_with("not today"), "{st:?}");
}
