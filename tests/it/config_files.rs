//! Hot-reloaded config files written the way people write them: in place
//! (truncate, then write), slowly, empty, broken, removed. A half-written
//! file is never taken as a configuration; a broken one never replaces the
//! last good one (es.json: it means STOP); a removed one denies.

use interlock_proto::v1::{self, Status};
use interlock_tests::{TestServer, eventually, req, wait_final, write_config};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tonic::Code;

/// Rewrites `path` in place as an editor or `cat > file` does: truncate,
/// then the text in two writes with pauses between, all on a thread so the
/// server keeps running meanwhile.
async fn rewrite_in_place(path: &Path, text: &str, pause: Duration) {
    let (path, text) = (path.to_path_buf(), text.to_string());
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::thread::sleep(pause);
        let (a, b) = text.split_at(text.len() / 2);
        f.write_all(a.as_bytes()).unwrap();
        f.flush().unwrap();
        std::thread::sleep(pause);
        f.write_all(b.as_bytes()).unwrap();
    })
    .await
    .unwrap();
}

async fn es_state(s: &TestServer) -> v1::EmergencyStopStateResp {
    s.control()
        .await
        .emergency_stop_state(v1::EmergencyStopStateReq {})
        .await
        .unwrap()
        .into_inner()
}

async fn policy_state(s: &TestServer) -> v1::PolicyStateResp {
    s.control()
        .await
        .policy_state(v1::PolicyStateReq {})
        .await
        .unwrap()
        .into_inner()
}

async fn health(s: &TestServer) -> i32 {
    let ch = tonic::transport::Channel::from_shared(s.addr())
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;

async fn running(s: &TestServer) -> String {
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(1, vec![req::probe(60_000)])],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("the probe runs", || async {
        !s.probe.starts_of(&id).is_empty()
    })
    .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_in_place_rewrite_of_es_json_stops_nothing() {
    let s = TestServer::start().await;
    let id = running(&s).await;
    let path = s.config_path("es.json");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        '[',
        r#"[{"Name": "y", "Status": "go"},"#,
        1,
    );
    rewrite_in_place(&path, &text, Duration::from_millis(40)).await;
    eventually("the new file in force", || async {
        es_state(&s).await.entries.iter().any(|e| e.name == "y")
    })
    .await;
    let st = es_state(&s).await;
    assert!(st.error.is_empty(), "{}", st.error);
    let c = s.client().await;
    let w = c.status(&id).await.unwrap();
    assert_eq!(w.status, Status::Running as i32, "{}", w.reason);
    assert_eq!(s.probe.cancelled(), 0, "no job saw a stop");
    assert_eq!(health(&s).await, SERVING);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_es_json_left_empty_stops_everything_and_says_why() {
    let s = TestServer::start().await;
    let id = running(&s).await;
    let path = s.config_path("es.json");
    std::fs::File::create(&path).unwrap(); // truncated, and left so
    let st = wait_final(&s.client().await, &id).await;
    assert_eq!(st.status, Status::Stopped as i32);
    assert!(st.reason.contains("empty"), "{}", st.reason);
    let es = es_state(&s).await;
    assert!(es.error.contains("the file is empty"), "{}", es.error);
    eventually("health reports it", || async {
        health(&s).await != SERVING
    })
    .await;
    let body = s.scrape().await;
    assert!(
        body.lines()
            .any(|l| l.starts_with("interlock_estop_file_unusable") && l.ends_with(" 1")),
        "the gauge says so"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_policies_json_keeps_the_policies_and_an_empty_set_is_written_as_json() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let good = policy_state(&s).await.version;
    let path = s.config_path("policies.json");
    std::fs::File::create(&path).unwrap();
    eventually("the empty file judged", || async {
        policy_state(&s).await.last_error.contains("empty")
    })
    .await;
    let st = policy_state(&s).await;
    assert!(st.loaded && st.version == good, "the last good set stays");
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .expect("work is still admitted");
    c.exec(&id).await.unwrap();
    assert_eq!(wait_final(&c, &id).await.status, Status::Completed as i32);
    // An empty set is a JSON value; it admits nothing.
    write_config(&path, "[]");
    eventually("the empty set in force", || async {
        policy_state(&s).await.version != good
    })
    .await;
    let e = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rejected_content_is_reported_once() {
    let s = TestServer::start().await;
    let path = s.config_path("policies.json");
    let version = policy_state(&s).await.version;
    for (i, bad) in ["[{", "[{\"Name\":", "[{"].into_iter().enumerate() {
        write_config(&path, bad);
        eventually("judged", || async {
            let st = policy_state(&s).await;
            st.version == version && st.last_error_at.is_some_and(|t| t.seconds > 0)
        })
        .await;
        // Re-reads of the same bad content (periodic, SIGHUP, watcher)
        // change nothing.
        s.control()
            .await
            .set_emergency_stop(v1::SetEmergencyStopReq {
                name: format!("nudge-{i}"),
                stop: false,
                reason: String::new(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let invalid: Vec<_> = s
        .audit_log()
        .await
        .into_iter()
        .filter(|e| e.action == "config.reload" && e.target == "policies.json")
        .filter(|e| e.outcome == "invalid")
        .collect();
    assert_eq!(invalid.len(), 2, "two distinct bad contents: {invalid:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_policies_or_buckets_denies() {
    let s = TestServer::start().await;
    let c = s.client().await;
    std::fs::remove_file(s.config_path("buckets.json")).unwrap();
    eventually("no bucket", || async {
        let r = s
            .control()
            .await
            .buckets(v1::BucketsReq {})
            .await
            .unwrap()
            .into_inner();
        r.buckets.is_empty() && r.last_error.contains("removed")
    })
    .await;
    let e = c
        .submit(req::satellite_erase("aab", &["aab00"]))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("no bucket named \"diskEraseSatellite\""),
        "{e}"
    );
    std::fs::remove_file(s.config_path("policies.json")).unwrap();
    eventually("no policies", || async { !policy_state(&s).await.loaded }).await;
    let e = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    assert!(e.to_string().contains("was removed"), "{e}");
}

/// An empty buckets.json is a file caught mid-write, not "no buckets":
/// the buckets in force stay, and takes from them go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_buckets_json_keeps_the_buckets() {
    let s = TestServer::start().await;
    let buckets = || async {
        s.control()
            .await
            .buckets(v1::BucketsReq {})
            .await
            .unwrap()
            .into_inner()
    };
    let names = |r: &v1::BucketsResp| r.buckets.iter().map(|b| b.name.clone()).collect::<Vec<_>>();
    let before = names(&buckets().await);
    assert!(
        before.contains(&"diskEraseSatellite".to_string()),
        "{before:?}"
    );
    std::fs::File::create(s.config_path("buckets.json")).unwrap();
    eventually("the empty file judged", || async {
        buckets().await.last_error.contains("the file is empty")
    })
    .await;
    assert_eq!(
        names(&buckets().await),
        before,
        "the last good buckets stay"
    );
    let c = s.client().await;
    let id = c
        .submit(req::satellite_erase("aab", &["aab00"]))
        .await
        .expect("a take from a configured bucket is admitted");
    c.exec(&id).await.unwrap();
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
}

/// policies.json names `exec.fresh` before commands.json declares it: it is
/// refused (the last good policies stay). Once commands.json declares the
/// command, the same, unchanged policies.json is judged again and taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_file_refused_for_an_unknown_job_type_is_taken_once_the_type_exists() {
    let s = TestServer::start().await;
    let good = policy_state(&s).await.version;
    let path = s.config_path("policies.json");
    let mut policies: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    policies.as_array_mut().unwrap().push(serde_json::json!({
        "Name": "fresh",
        "Policies": [{"Name": "restrictJobTypes", "Settings": {"AllowedJobs": ["exec.fresh"]}}]
    }));
    write_config(&path, &policies.to_string());
    eventually("the policy file is refused", || async {
        policy_state(&s).await.last_error.contains("exec.fresh")
    })
    .await;
    assert_eq!(
        policy_state(&s).await.version,
        good,
        "the last good set stays"
    );
    write_config(
        &s.config_path("commands.json"),
        r#"{"commands": [{"name": "fresh", "argv": ["/bin/true"], "timeout": "5s", "idempotency": "safe"}]}"#,
    );
    eventually("the unchanged policy file is taken", || async {
        let st = policy_state(&s).await;
        st.last_error.is_empty() && st.version != good
    })
    .await;
}
