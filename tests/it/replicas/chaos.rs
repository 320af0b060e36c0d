//! Three replicas, 200 workflows submitted and executed round-robin through
//! all of them, while a random replica is SIGKILLed and restarted again and
//! again. Afterwards: nothing accepted is lost or duplicated, every
//! workflow ends, no erase ran twice, and the shared bucket gave out no more
//! than its capacity.
//!
//! `INTERLOCK_REPLICA_SEED` replays a kill schedule (timing on the machine
//! still varies what is in flight at each kill); `INTERLOCK_REPLICA_KILLS`
//! and `INTERLOCK_REPLICA_WORKFLOWS` scale the run.

use super::{Cluster, Setup, assert_no_double_erase, erase, erases_per_job, sleep};
use interlock_proto::v1::{self, Status};
use interlock_tests::req;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tonic::Code;

const CAPACITY: usize = 3;

fn env_or(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Workflow `n`: two erases, a short sleep, and every tenth a take from
/// the shared bucket.
fn workflow(n: usize) -> v1::WorkReq {
    let sites = ["aab", "aae", "aag", "aaj"];
    let site = sites[n % sites.len()];
    let m = |i: usize| format!("{site}{:02}", (n / sites.len() * 2 + i) % 8);
    let mut blocks = vec![
        req::block(2, vec![erase(&m(0), site), erase(&m(1), site)]),
        req::block(1, vec![sleep(0.05)]),
    ];
    if n.is_multiple_of(10) {
        blocks.push(req::block(
            1,
            vec![req::job(
                "tokenBucket",
                &[("bucket", "repTakes"), ("fatal", "false")],
            )],
        ));
    }
    let mut w = req::work("rep", blocks);
    w.request_id = format!("chaos-{n}");
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_lose_and_repeat_nothing_under_kill_9() {
    let kills = env_or("INTERLOCK_REPLICA_KILLS", 12) as usize;
    let total = env_or("INTERLOCK_REPLICA_WORKFLOWS", 200) as usize;
    let seed = std::env::var("INTERLOCK_REPLICA_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    println!(
        "replica chaos: {total} workflows, {kills} kills, seed {seed} \
         (INTERLOCK_REPLICA_SEED={seed} replays it)"
    );
    let fail = |m: String| -> ! { panic!("seed {seed}: {m}") };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let Some(mut c) = Cluster::start(Setup {
        buckets: vec![serde_json::json!({
            "Name": "repTakes", "Capacity": CAPACITY, "Refill": 1, "Period": "1h"
        })],
        ..Setup::default()
    })
    .await
    else {
        return;
    };

    // Kill points spread over the submissions; each killed replica comes
    // back a few submissions later.
    let mut kill_at: Vec<usize> = (0..kills).map(|_| rng.random_range(0..total)).collect();
    kill_at.sort_unstable();
    let mut restart_at: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut killed = 0;
    let mut ids = Vec::with_capacity(total);
    for n in 0..total {
        for i in restart_at.remove(&n).unwrap_or_default() {
            c.restart(i).await;
        }
        while kill_at.first() == Some(&n) {
            kill_at.remove(0);
            let live: Vec<usize> = c.live().map(|(i, _)| i).collect();
            // Keep one replica up to take the submissions.
            if live.len() > 1 {
                let i = live[rng.random_range(0..live.len())];
                c.kill(i);
                killed += 1;
                restart_at
                    .entry(n + rng.random_range(1..8))
                    .or_default()
                    .push(i);
            }
        }
        let id = submit_anywhere(&c, n, workflow(n))
            .await
            .unwrap_or_else(|e| fail(e));
        exec_anywhere(&c, n + 1, &id)
            .await
            .unwrap_or_else(|e| fail(e));
        ids.push(id);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
    }
    for (_, is) in std::mem::take(&mut restart_at) {
        for i in is {
            c.restart(i).await;
        }
    }
    assert!(
        killed >= kills.min(10),
        "only {killed} kills happened (asked for {kills})"
    );

    // Nothing lost, nothing duplicated: the retried submissions found their
    // first attempt by request id, on whichever replica.
    let unique: HashSet<&String> = ids.iter().collect();
    if unique.len() != total {
        fail(format!(
            "{} distinct ids for {total} submissions",
            unique.len()
        ));
    }
    let listed = list_all(&c).await;
    if listed != unique.iter().map(|s| s.to_string()).collect::<HashSet<_>>() {
        fail(format!(
            "List shows {} workflows named rep; {total} were accepted",
            listed.len()
        ));
    }

    let mut takes = 0;
    let mut finals = Vec::new();
    for id in &ids {
        let st = c.wait_final(id, Duration::from_secs(90)).await;
        finals.push((id.clone(), st));
    }
    let events = c.erase_events();
    assert_no_double_erase(&events, &format!("seed {seed}"));
    let per_job = erases_per_job(&events);
    for (n, (id, st)) in finals.iter().enumerate() {
        let has_bucket = n.is_multiple_of(10);
        for (bi, b) in st.blocks.iter().enumerate() {
            for (ji, j) in b.jobs.iter().enumerate() {
                if j.status != Status::Completed as i32 {
                    continue;
                }
                match j.name.as_str() {
                    "diskErase" => {
                        let dones = per_job.get(&(id.clone(), bi, ji)).map(|e| e.dones);
                        if dones != Some(1) {
                            fail(format!(
                                "{id} block {bi} job {ji} is Completed with {dones:?} finished erases"
                            ));
                        }
                    }
                    "tokenBucket" => takes += 1,
                    _ => {}
                }
            }
        }
        // Erases re-attach and sleeps re-run: only an empty bucket may
        // fail a workflow.
        let ok = st.status == Status::Completed as i32
            || (has_bucket && st.status == Status::Failed as i32 && st.reason.contains("block 2"));
        if !ok {
            fail(format!(
                "workflow {n} ({id}) ended {} ({}); expected Completed",
                st.status, st.reason
            ));
        }
    }
    if takes > CAPACITY {
        fail(format!(
            "{takes} takes succeeded across replicas; the bucket holds {CAPACITY}"
        ));
    }
    let completed = finals
        .iter()
        .filter(|(_, s)| s.status == Status::Completed as i32)
        .count();
    println!(
        "replica chaos: {total} accepted, {completed} completed, {killed} kills, {} erase events, {takes} takes",
        events.len()
    );
}

/// Submits through replica `start % n`, moving on to the next live replica
/// while one does not answer; the request id makes the retries safe.
async fn submit_anywhere(c: &Cluster, start: usize, w: v1::WorkReq) -> Result<String, String> {
    let mut last = String::new();
    for attempt in 0..30 {
        let n = c.replicas.len();
        let i = (start + attempt) % n;
        let Some(r) = c.replicas[i].as_ref() else {
            continue;
        };
        match r.client.submit(w.clone()).await {
            Ok(id) => return Ok(id),
            Err(e) if try_elsewhere(&e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("Submit refused: {e}")),
        }
    }
    Err(format!("no replica took the submission: {last}"))
}

async fn exec_anywhere(c: &Cluster, start: usize, id: &str) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..30 {
        let n = c.replicas.len();
        let i = (start + attempt) % n;
        let Some(r) = c.replicas[i].as_ref() else {
            continue;
        };
        match r.client.exec(id).await {
            Ok(()) => return Ok(()),
            // An earlier attempt got through before its answer was lost.
            Err(e) if e.code() == Some(Code::AlreadyExists) && attempt > 0 => return Ok(()),
            Err(e) if try_elsewhere(&e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("Exec {id} refused: {e}")),
        }
    }
    Err(format!("no replica took Exec {id}: {last}"))
}

async fn list_all(c: &Cluster) -> HashSet<String> {
    let (_, r) = c.live().next().expect("a live replica");
    let mut out = HashSet::new();
    let mut token = String::new();
    loop {
        let page = r
            .client
            .raw()
            .list(v1::ListReq {
                name: "rep".into(),
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("List")
            .into_inner();
        out.extend(page.workflows.into_iter().map(|w| w.id));
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// The replica is gone or went away mid-call: the call may or may not have
/// taken effect, and another replica can answer.
fn try_elsewhere(e: &interlock_client::Error) -> bool {
    matches!(
        e.code(),
        None | Some(Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded)
    )
}
