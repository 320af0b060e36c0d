//! kill -9 at random moments: start interlockd as a child process, run
//! workflows of sleeps, short disk erases and bucket takes, SIGKILL it,
//! restart, repeat; then audit Status and the erase target's effect log.
//!
//! Cycles: 20 by default, `INTERLOCK_CRASH_CYCLES` for longer runs. The seed
//! is printed; `INTERLOCK_CRASH_SEED` replays its kill schedule (timing on
//! the machine still varies what is in flight at each kill).

use interlock_jobs::EraseTarget;
use interlock_proto::v1::{self, Status};
use interlock_tests::daemon::{Daemon, DaemonSpec};
use interlock_tests::{append_entry, interlockd, req};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const BUCKET_CAPACITY: usize = 3;

fn spawn(dir: &Path) -> Daemon {
    DaemonSpec::new(interlockd!(), dir)
        .args(["--erase-duration", "150ms", "--drain", "100ms"])
        .spawn()
        .expect("interlockd starts")
}

fn workflow(n: usize) -> v1::WorkReq {
    let sites = ["aab", "aae", "aag", "aaj"];
    let site = sites[n % sites.len()];
    let m = |i: usize| format!("{site}{:02}", (n / sites.len() * 2 + i) % 8);
    req::work(
        "x",
        vec![
            req::block(
                2,
                vec![
                    req::job("diskErase", &[("machine", &m(0)), ("site", site)]),
                    req::job("diskErase", &[("machine", &m(1)), ("site", site)]),
                ],
            ),
            req::block(1, vec![req::job("sleep", &[("seconds", "0.05")])]),
            req::block(
                1,
                vec![req::job(
                    "tokenBucket",
                    &[("bucket", "crashBucket"), ("fatal", "false")],
                )],
            ),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_and_repeats_nothing() {
    let cycles: usize = std::env::var("INTERLOCK_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("INTERLOCK_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("crash test: {cycles} cycles, seed {seed} (INTERLOCK_CRASH_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    // Copies the shipped configs.
    drop(DaemonSpec::new(interlockd!(), dir.path()));
    interlock_tests::admit_x(&configs);
    append_entry(
        &configs.join("buckets.json"),
        serde_json::json!({"Name": "crashBucket", "Capacity": BUCKET_CAPACITY, "Refill": 1, "Period": "1h"}),
    );

    let mut accepted = Vec::new();
    let mut n = 0;
    for _ in 0..cycles {
        let mut d = spawn(dir.path());
        let c = d.client().await;
        let kill_after = Duration::from_millis(rng.random_range(0..400));
        let started = Instant::now();
        // Submit and execute until the kill moment; what was accepted must survive.
        while started.elapsed() < kill_after {
            let Ok(id) = c.submit(workflow(n)).await else {
                break;
            };
            n += 1;
            accepted.push(id.clone());
            let _ = c.exec(&id).await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
        }
        d.kill();
    }

    let d = spawn(dir.path());
    let c = d.client().await;
    let fail = |m: String| -> ! { panic!("seed {seed}: {m}") };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finals = HashMap::new();
    for id in &accepted {
        loop {
            let st = match c.status(id).await {
                Ok(st) => st,
                Err(e) => fail(format!("accepted workflow {id} lost: {e}")),
            };
            // Never executed before a kill: it may stay unstarted.
            let settled = interlock_client::is_final(st.status)
                || st.status == Status::Paused as i32
                || (st.status == Status::NotStarted as i32 && st.started.is_none());
            if settled {
                finals.insert(id.clone(), st);
                break;
            }
            if Instant::now() > deadline {
                fail(format!(
                    "workflow {id} still {} after restart: {}",
                    st.status, st.reason
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // No erase started twice or finished twice for one job.
    let events = EraseTarget::events(&dir.path().join("var/erase-target.log"));
    let mut per_job: HashMap<(String, usize, usize), (usize, usize)> = HashMap::new();
    for e in &events {
        let entry = per_job
            .entry((e.workflow.clone(), e.block, e.job))
            .or_default();
        match e.event.as_str() {
            "start" => entry.0 += 1,
            "done" => entry.1 += 1,
            other => fail(format!(
                "unexpected target event {other} (no cancellation was asked for)"
            )),
        }
    }
    for (k, (starts, dones)) in &per_job {
        if *starts > 1 || *dones > 1 {
            fail(format!(
                "job {k:?} erased {starts} times, finished {dones} times"
            ));
        }
    }
    // Completed erases really happened; bucket takes never exceed capacity;
    // a Completed workflow had no failure (its blocks tolerate none).
    let mut takes = 0;
    for (id, st) in &finals {
        let all_done = st
            .blocks
            .iter()
            .flat_map(|b| &b.jobs)
            .all(|j| j.status == Status::Completed as i32);
        if st.status == Status::Completed as i32 && !all_done {
            fail(format!(
                "{id} is Completed but not all of its jobs are: {st:?}"
            ));
        }
        for (bi, b) in st.blocks.iter().enumerate() {
            for (ji, j) in b.jobs.iter().enumerate() {
                if j.status != Status::Completed as i32 {
                    continue;
                }
                match j.name.as_str() {
                    "diskErase" if per_job.get(&(id.clone(), bi, ji)).map(|p| p.1) != Some(1) => {
                        fail(format!(
                            "{id} block {bi} job {ji} Completed without a finished erase"
                        ))
                    }
                    "tokenBucket" => takes += 1,
                    _ => {}
                }
            }
        }
    }
    if takes > BUCKET_CAPACITY {
        fail(format!(
            "{takes} bucket takes succeeded; capacity is {BUCKET_CAPACITY}"
        ));
    }
    let completed = finals
        .values()
        .filter(|s| s.status == Status::Completed as i32)
        .count();
    println!(
        "crash test: {} workflows accepted, {completed} completed, {} erase events, {takes} bucket takes",
        accepted.len(),
        events.len()
    );
    drop(d);
}

/// An erase in flight when its server was killed, and an emergency stop
/// in force when it restarts: the erase is aborted on the target, as a
/// live stop aborts it, not left going unsupervised while the record
/// says Stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erase_left_running_is_aborted_when_the_restart_finds_an_emergency_stop() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    let spec = DaemonSpec::new(interlockd!(), dir.path()).args(["--erase-duration", "60s"]);
    interlock_tests::admit_x(&configs);
    let mut d = spec.clone().spawn().expect("interlockd starts");
    let c = d.client().await;
    let erase = req::job("diskErase", &[("machine", "aab00"), ("site", "aab")]);
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![erase])]))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    let log = dir.path().join("var/erase-target.log");
    let events = |kind: &'static str| {
        let (log, id) = (log.clone(), id.clone());
        move || {
            EraseTarget::events(&log)
                .iter()
                .filter(|e| e.workflow == id && e.event == kind)
                .count()
        }
    };
    let started = events("start");
    interlock_tests::eventually("the erase started on the target", || async {
        started() == 1
    })
    .await;
    d.kill();
    interlock_tests::write_config(
        &configs.join("es.json"),
        r#"[{"Name": "x", "Status": "stop", "Reason": "incident 12"}]"#,
    );
    let d = spec
        .listen(d.addr.clone())
        .spawn()
        .expect("interlockd restarts");
    let c = d.client().await;
    let aborted = events("abort");
    interlock_tests::eventually("the erase is aborted on the target", || async {
        aborted() == 1
    })
    .await;
    let st = c.status(&id).await.unwrap();
    assert_eq!(st.status, Status::Stopped as i32, "{st:?}");
    assert_eq!(st.blocks[0].status, Status::Stopped as i32, "{st:?}");
    assert_eq!(
        st.blocks[0].jobs[0].status,
        Status::Stopped as i32,
        "{st:?}"
    );
    assert_eq!(events("done")(), 0);
}
