//! The interlockd binary itself: configuration errors exit cleanly, one
//! database has one owner, the secured deployment starts from flags alone,
//! and its /metrics name its build and describe its own process.

use interlock_jobs::EraseTarget;
use interlock_proto::v1::Status;
use interlock_tests::daemon::DaemonSpec;
use interlock_tests::{interlockd, req, wait_final};
use std::process::Command;

#[test]
fn a_malformed_config_file_exits_with_a_usage_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("interlockd.json");
    std::fs::write(
        &cfg,
        r#"{"listen": "127.0.0.1:0", "max_in_flight": "lots"}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_interlockd-under-test"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interlockd.json") && err.contains("max_in_flight"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(&cfg, r#"{"listen": "127.0.0.1:0", "typo_field": 1}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_interlockd-under-test"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `typo_field`"));
}

#[test]
fn a_non_loopback_address_is_refused_without_insecure() {
    let out = Command::new(env!("CARGO_BIN_EXE_interlockd-under-test"))
        .args(["--listen", "0.0.0.0:0", "--metrics-listen", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0") && err.contains("--insecure"),
        "{err}"
    );
}

/// The secured deployment shape: every interface, TLS, tokens, RBAC.
#[tokio::test]
async fn with_tls_and_auth_it_listens_on_every_interface_and_checks_callers() {
    use interlock_auth::tokens;
    use interlock_client::{Client, Credentials, Options};
    use interlock_tests::{pki::Ca, repo};

    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    for f in ["policies.json", "es.json", "buckets.json", "rbac.json"] {
        std::fs::copy(repo().join("configs").join(f), configs.join(f)).unwrap();
    }
    let token = tokens::mint();
    let entry =
        serde_json::json!({"tokens": [{"name": "dashboard", "sha256": tokens::hash(&token)}]});
    std::fs::write(configs.join("tokens.json"), entry.to_string()).unwrap();
    let ca = Ca::new(dir.path(), "bin");
    let server = ca.server(dir.path(), "server");
    let d = DaemonSpec::new(interlockd!(), dir.path())
        .listen("0.0.0.0:0")
        .arg("--auth")
        .arg("--tls-cert")
        .arg(server.cert.display().to_string())
        .arg("--tls-key")
        .arg(server.key.display().to_string())
        .spawn()
        .expect("interlockd starts");
    let port = d.addr.rsplit(':').next().unwrap().to_string();
    assert!(d.addr.starts_with("0.0.0.0:"), "{}", d.addr);
    let connect = |token: Option<String>| {
        let opts = Options {
            max_attempts: 1,
            credentials: Credentials {
                ca_pem: Some(ca.pem.clone().into_bytes()),
                token,
                ..Credentials::default()
            },
            ..Options::default()
        };
        let addr = format!("127.0.0.1:{port}");
        async move { Client::connect(&addr, opts).await.unwrap() }
    };
    let viewer = connect(Some(token)).await;
    let jobs = viewer
        .job_catalog()
        .await
        .expect("the shipped viewer role reads");
    assert!(jobs.jobs.iter().any(|j| j.name == "diskErase"));
    let err = viewer
        .submit(interlock_tests::req::satellite_erase(
            "AAB",
            &["aab-sat-01"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    let err = connect(None).await.job_catalog().await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");
}

/// One database, one owner: a second server on it exits with code 2 naming
/// the holder, before it touches anything, and the first one's erases run
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_database_exits_2_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DaemonSpec::new(interlockd!(), dir.path()).args(["--erase-duration", "1s"]);
    let a = spec.spawn().expect("first server starts");
    let c = a.client().await;
    let id = c
        .submit(req::satellite_erase("aab", &["aab00", "aab01"]))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    let second = spec.spawn().err().expect("the second server is refused");
    assert_eq!(second.status.code(), Some(2), "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!("pid {}", a.pid()))
            && second.stderr.contains(&a.addr)
            && second.stderr.contains("in use by another interlockd"),
        "{}",
        second.stderr
    );
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    let starts = EraseTarget::events(&dir.path().join("var/erase-target.log"))
        .into_iter()
        .filter(|e| e.event == "start")
        .count();
    assert_eq!(starts, 2, "each machine erased once");
}

/// A workflow the shipped policies admit: the pre-checks, then a sleep of
/// `seconds`.
fn checked_sleep(seconds: &str) -> interlock_proto::v1::WorkReq {
    req::work(
        "SatelliteDiskErase",
        vec![
            req::block(
                1,
                vec![
                    req::job("validateDecom", &[("site", "aab"), ("type", "satellite")]),
                    req::job(
                        "tokenBucket",
                        &[("bucket", "diskEraseSatellite"), ("fatal", "true")],
                    ),
                ],
            ),
            req::block(1, vec![req::job("sleep", &[("seconds", seconds)])]),
        ],
    )
}

/// Work is resumed only once the server owns its ports: a start that fails
/// to bind leaves the last server's running workflows untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_cannot_bind_resumes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DaemonSpec::new(interlockd!(), dir.path());
    let mut a = spec.spawn().expect("starts");
    let c = a.client().await;
    let id = c.submit(checked_sleep("1")).await.unwrap();
    c.exec(&id).await.unwrap();
    interlock_tests::eventually("the sleep runs", || async {
        c.status(&id).await.unwrap().blocks[1].jobs[0].status == Status::Running as i32
    })
    .await;
    a.kill();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let failed = spec
        .clone()
        .listen(&port)
        .spawn()
        .err()
        .expect("the port is taken");
    assert_eq!(failed.status.code(), Some(1), "{}", failed.stderr);
    assert!(failed.stderr.contains("cannot listen"), "{}", failed.stderr);
    drop(taken);
    // The next server resumes it: exactly one interruption is recorded, so
    // the failed start did not resume it first.
    let b = spec.spawn().expect("starts");
    let c = b.client().await;
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    let attempts = &st.blocks[1].jobs[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts[0].error.contains("interrupted"), "{attempts:?}");
}

/// A server whose stdout has no reader any more when it prints its address
/// (a pipe closed early, a log collector that restarted) keeps serving and
/// says why the line is missing, instead of dying on the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_stdout_reader_is_gone_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let mut d = DaemonSpec::new(interlockd!(), dir.path())
        .listen(&addr)
        .spawn_with_stdout_closed()
        .expect("starts");
    interlock_tests::eventually("the failed write is logged", || async {
        d.stderr().contains("cannot print the address on stdout")
    })
    .await;
    let c = d.client().await;
    let id = c.submit(checked_sleep("0")).await.unwrap();
    c.exec(&id).await.unwrap();
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(
        d.wait_exit(std::time::Duration::ZERO),
        None,
        "{}",
        d.stderr()
    );
    assert!(!d.stderr().contains("panicked"), "{}", d.stderr());
}

/// The allocator settings compiled in from `.cargo/config.toml` are in
/// force: one arena for every thread, and freed pages going back from
/// jemalloc's own threads after about a second. Without them a large
/// workflow's peak RSS grows by half (BENCHMARKS.md), and nothing else
/// would say so. jemalloc prints the options in force at exit when asked
/// to (`stats_print`, which leaves the others as compiled in); that it
/// reads `MALLOC_CONF`, unprefixed, shows it is the process's `malloc`,
/// SQLite's included.
#[cfg(all(target_os = "linux", feature = "jemalloc"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allocator_runs_with_the_settings_compiled_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = DaemonSpec::new(interlockd!(), dir.path())
        .env("MALLOC_CONF", "stats_print:true")
        .spawn()
        .expect("starts");
    let threads = || {
        std::fs::read_dir(format!("/proc/{}/task", d.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .collect::<Vec<_>>()
    };
    interlock_tests::eventually("a jemalloc background thread runs", || async {
        threads().iter().any(|n| n == "jemalloc_bg_thd")
    })
    .await;
    d.signal("TERM");
    assert!(
        d.wait_exit(std::time::Duration::from_secs(20)).is_some(),
        "it exits on TERM"
    );
    let log = d.stderr();
    for option in [
        "opt.narenas: 1\n",
        "opt.background_thread: true",
        // Followed by the arena's own value: not a prefix of 1000.
        "opt.dirty_decay_ms: 100 (",
        "opt.muzzy_decay_ms: 0",
    ] {
        assert!(log.contains(option), "{option:?} in force:\n{log}");
    }
}

/// A user string with a newline (a cancel reason here) cannot forge a line
/// in the server's text log: control characters are escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_strings_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::new(interlockd!(), dir.path());
    spec.log = "info".into();
    let d = spec.spawn().expect("starts");
    let c = d.client().await;
    let r = checked_sleep("30");
    let id = c.submit(r).await.unwrap();
    c.exec(&id).await.unwrap();
    let forged = "2026-01-01T00:00:00.000000Z ERROR interlockd: FORGED";
    c.raw()
        .cancel(interlock_proto::v1::CancelReq {
            id: id.clone(),
            reason: format!("done\n{forged}"),
        })
        .await
        .unwrap();
    interlock_tests::eventually("the end is logged", || async {
        d.stderr().contains("workflow ended")
    })
    .await;
    let log = d.stderr();
    assert!(log.contains("FORGED"), "the reason is logged: {log}");
    assert!(
        !log.lines().any(|l| l.starts_with(forged)),
        "a forged line appeared: {log}"
    );
}

/// The real binary's /metrics: `interlock_build_info` names the commit it
/// was built from (build.rs), the `process_*` metrics describe the daemon's
/// own process (it started after this test did), and promtool accepts it.
#[tokio::test]
async fn the_binary_exports_its_build_and_its_process_and_passes_promtool() {
    let began = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::new(interlockd!(), dir.path());
    spec.metrics = "127.0.0.1:0".into();
    spec.log = "warn,interlock_server::metrics=info".into();
    let d = spec.spawn().expect("interlockd starts");
    // Logged before the "listening on" line the spawn waited for.
    let log = d.stderr();
    let addr = log
        .split("serving /metrics addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
        .to_string();
    d.client().await.job_catalog().await.unwrap();
    let text = crate::observe::scrape(&addr).await;

    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(interlock_tests::repo())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let info = crate::observe::build_info(&text);
    assert_eq!(
        info["commit"],
        git.as_deref().unwrap_or("unknown"),
        "{info:?}"
    );
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info:?}");

    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    };
    let started = value("process_start_time_seconds");
    // Linux gives the boot time in whole seconds: allow one.
    assert!(
        started > began - 1.0 && started < began + 60.0,
        "started {started}, test began {began}"
    );
    assert!(value("process_resident_memory_bytes") > 0.0);
    assert!(value("process_open_fds") >= 3.0);
    crate::observe::assert_promtool_passes(&text);
}
