//! `diskerase worker` as real processes: the erase runs outside the
//! server, and a worker SIGKILLed mid-erase loses nothing and erases
//! nothing twice (its erases are reconciled by another worker against the
//! shared erase target, then re-attached).

use interlock_proto::v1::Status;
use interlock_tests::{TestServer, req, wait_final, write_config};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the worker process when the test ends, however it ends.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(addr: &str, target: &Path, name: &str) -> WorkerProcess {
    let data = interlock_tests::repo().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_diskerase"))
        .env_remove("INTERLOCK_TOKEN")
        .env_remove("INTERLOCK_CA")
        .args(["--addr", addr, "worker", "--name", name, "--capacity", "5"])
        .arg("--target")
        .arg(target)
        .arg("--data")
        .arg(&data)
        .args(["--erase-seconds", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("diskerase worker starts");
    WorkerProcess(child)
}

/// Lines of the erase target's log with `event`, as (request, machine).
fn events(target: &Path, event: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(target)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == event)
        .map(|v| {
            (
                v["request"].as_str().unwrap_or_default().to_string(),
                v["machine"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn workers_online(s: &TestServer, n: usize) {
    let mut c = interlock_proto::v1::worker_client::WorkerClient::connect(s.addr())
        .await
        .unwrap();
    for _ in 0..2000 {
        let r = c
            .list_workers(interlock_proto::v1::ListWorkersReq {})
            .await
            .unwrap();
        if r.into_inner().workers.len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{n} workers never connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_erases_are_finished_by_another_and_none_runs_twice() {
    let s = TestServer::start_with(|c| {
        write_config(
            &c.configs.join("jobs.json"),
            r#"{"jobs": [{"name": "diskErase"}, {"name": "verifyErase"}]}"#,
        );
        c.worker_ttl = Duration::from_secs(1);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("erase-target.log");
    let mut doomed = worker(&s.addr(), &target, "doomed");
    workers_online(&s, 1).await;
    let _healthy = worker(&s.addr(), &target, "healthy");
    workers_online(&s, 2).await;

    let cat = s.client().await.job_catalog().await.unwrap();
    let erase = cat.jobs.iter().find(|j| j.name == "diskErase").unwrap();
    assert!(erase.runs_on.starts_with("workers (2 online"), "{erase:?}");

    let machines: Vec<String> = (0..8).map(|i| format!("aab{i:02}")).collect();
    let refs: Vec<&str> = machines.iter().map(String::as_str).collect();
    let c = s.client().await;
    let id = c.submit(req::satellite_erase("aab", &refs)).await.unwrap();
    c.exec(&id).await.unwrap();
    // The first block's five erases are under way on both workers.
    for _ in 0..2000 {
        if events(&target, "start").len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(events(&target, "start").len(), 5, "five erases started");
    doomed.0.kill().unwrap(); // SIGKILL
    doomed.0.wait().unwrap();

    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{st:?}");
    // Every machine erased exactly once: one start and one done each.
    let mut started: Vec<String> = events(&target, "start").into_iter().map(|e| e.1).collect();
    started.sort();
    assert_eq!(started, machines, "one start per machine");
    let mut done: Vec<String> = events(&target, "done").into_iter().map(|e| e.1).collect();
    done.sort();
    assert_eq!(done, machines, "one done per machine");
    assert!(events(&target, "abort").is_empty());
    // The erase jobs report the requests the target knows.
    let requests: Vec<String> = events(&target, "start").into_iter().map(|e| e.0).collect();
    for j in st
        .blocks
        .iter()
        .flat_map(|b| &b.jobs)
        .filter(|j| j.name == "diskErase")
    {
        assert!(requests.contains(&j.outputs["eraseRequest"]), "{j:?}");
    }
    // The dead worker's erases were reconciled by the live one, which
    // found them not finished and re-attached to them.
    let audit = s.audit_log().await;
    let reconciled: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "task.complete" && e.target == id)
        .filter(|e| e.detail.contains("reconciled: not done"))
        .collect();
    assert!(!reconciled.is_empty(), "{audit:?}");
    assert!(
        reconciled
            .iter()
            .all(|e| e.detail.starts_with("worker \"healthy\""))
    );
    // The server's own erase target was never touched.
    assert!(interlock_jobs_untouched(&s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_leaves_erases_on_workers_running_to_be_re_attached() {
    let mut s = TestServer::start_with(|c| {
        write_config(
            &c.configs.join("jobs.json"),
            r#"{"jobs": [{"name": "diskErase"}, {"name": "verifyErase"}]}"#,
        );
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("erase-target.log");
    let _w = worker(&s.addr(), &target, "w1");
    workers_online(&s, 1).await;
    let machines: Vec<String> = (0..5).map(|i| format!("aae{i:02}")).collect();
    let refs: Vec<&str> = machines.iter().map(String::as_str).collect();
    let id = {
        let c = s.client().await;
        let id = c.submit(req::satellite_erase("aae", &refs)).await.unwrap();
        c.exec(&id).await.unwrap();
        id
    };
    for _ in 0..2000 {
        if events(&target, "start").len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.restart().await;
    let st = wait_final(&s.client().await, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{st:?}");
    assert!(
        events(&target, "abort").is_empty(),
        "a restart aborts nothing"
    );
    let mut started: Vec<String> = events(&target, "start").into_iter().map(|e| e.1).collect();
    started.sort();
    assert_eq!(
        started, machines,
        "each erase was re-attached, not started again"
    );
}

/// The server-side simulated target (beside its database) has no events.
fn interlock_jobs_untouched(s: &TestServer) -> bool {
    let server_target = s.config.erase_target_path();
    std::fs::read_to_string(server_target)
        .unwrap_or_default()
        .trim()
        .is_empty()
}
