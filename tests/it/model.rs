//! A model-based property test: random sequences of Submit, Exec, Cancel,
//! Pause, Resume, e-stop stop/go, bucket takes, config rewrites (in place,
//! slowly, truncated first) and server restarts, run against the real
//! server beside a small reference model (proptest-state-machine). After
//! every step:
//!
//! - no job starts while its workflow is stopped, cancelled or paused: in
//!   each workflow's committed transitions (its Watch feed) no job turns
//!   Running after the workflow turned Paused, Cancelled or Stopped, until it
//!   runs again;
//! - bucket takes never exceed the bucket's capacity;
//! - a job that is not safe to re-run never starts twice;
//! - every acknowledged workflow exists, also after a restart;
//! - a valid config rewrite never stops or refuses work that the old and new
//!   versions both allow.
//!
//! `cargo test` runs a few bounded cases; `INTERLOCK_MODEL_CASES=200
//! INTERLOCK_MODEL_STEPS=60` runs longer.

use interlock_proto::v1::{self, Status, watch_event::Event};
use interlock_tests::{TestServer, append_entry, req, wait_final};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BUCKET: &str = "modelBucket";
const CAPACITY: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One short safe job.
    Quick,
    /// Three safe jobs one after another.
    Long,
    /// A bucket take, then a safe job.
    Take,
    /// A job that must never run twice.
    Unsafe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Temp file and rename.
    Atomic,
    /// Truncate, then the text in two slow halves.
    InPlace,
}

#[derive(Debug, Clone)]
enum Op {
    Submit(Kind),
    Exec(usize),
    Cancel(usize),
    Pause(usize),
    Resume(usize),
    Stop,
    Go,
    /// Rewrites es.json with the same decision for "x" (plus a harmless
    /// extra entry).
    RewriteEs(Write),
    /// Rewrites policies.json with the same rules.
    RewritePolicies(Write),
    Restart,
    Wait(u64),
}

/// What the model knows: how many workflows were accepted, and whether
/// "x" is emergency-stopped. What each workflow does next is asynchronous;
/// the system under test tracks the rest and the checks are invariants.
#[derive(Debug, Clone, Default)]
struct Model {
    accepted: usize,
    stopped: bool,
}

struct Ref;

impl ReferenceStateMachine for Ref {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::default()).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        let n = state.accepted.max(1);
        let kind = prop_oneof![
            Just(Kind::Quick),
            Just(Kind::Long),
            Just(Kind::Take),
            Just(Kind::Unsafe)
        ];
        let write = prop_oneof![Just(Write::Atomic), Just(Write::InPlace)];
        prop_oneof![
            4 => kind.prop_map(Op::Submit),
            4 => (0..n).prop_map(Op::Exec),
            1 => (0..n).prop_map(Op::Cancel),
            2 => (0..n).prop_map(Op::Pause),
            2 => (0..n).prop_map(Op::Resume),
            1 => Just(Op::Stop),
            1 => Just(Op::Go),
            1 => write.clone().prop_map(Op::RewriteEs),
            1 => write.prop_map(Op::RewritePolicies),
            1 => Just(Op::Restart),
            2 => (10u64..300).prop_map(Op::Wait),
        ]
        .boxed()
    }

    fn preconditions(state: &Model, op: &Op) -> bool {
        match op {
            Op::Exec(i) | Op::Cancel(i) | Op::Pause(i) | Op::Resume(i) => *i < state.accepted,
            _ => true,
        }
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        match op {
            Op::Submit(_) if !state.stopped => state.accepted += 1,
            Op::Stop => state.stopped = true,
            Op::Go => state.stopped = false,
            _ => {}
        }
        state
    }
}

/// What the workflow's feed showed, in commit order.
#[derive(Default)]
struct Feed {
    /// The workflow is Paused, Cancelled or Stopped as far as the feed knows.
    halted: bool,
    violation: Option<String>,
}

struct Sut {
    rt: tokio::runtime::Runtime,
    s: TestServer,
    ids: Vec<String>,
    kinds: Vec<Kind>,
    /// One per watcher (a workflow is watched again after each restart).
    feeds: Vec<Arc<Mutex<Feed>>>,
    /// Workflows executed (Exec acknowledged) and cancelled.
    executed: std::collections::HashSet<String>,
    cancelled: std::collections::HashSet<String>,
    /// Stop operations applied so far, and the count when each workflow
    /// was executed: a workflow may end Stopped only if a stop came after.
    stops: usize,
    stops_at_exec: HashMap<String, usize>,
}

fn request(kind: Kind) -> v1::WorkReq {
    let blocks = match kind {
        Kind::Quick => vec![req::block(1, vec![req::probe(20)])],
        Kind::Long => vec![req::block(1, (0..3).map(|_| req::probe(120)).collect())],
        Kind::Take => vec![
            req::block(
                1,
                vec![req::job(
                    "tokenBucket",
                    &[("bucket", BUCKET), ("fatal", "false")],
                )],
            ),
            req::block(1, vec![req::probe(10)]),
        ],
        Kind::Unsafe => vec![req::block(
            1,
            vec![req::job("unsafeProbe", &[("ms", "100")])],
        )],
    };
    req::work("x", blocks)
}

impl Sut {
    /// Follows a workflow's committed transitions and checks their order.
    fn follow(&mut self, id: &str) {
        let feed = Arc::new(Mutex::new(Feed::default()));
        self.feeds.push(feed.clone());
        let (addr, id) = (self.s.addr(), id.to_string());
        self.rt.spawn(async move {
            let Ok(mut c) = v1::workflow_client::WorkflowClient::connect(addr).await else {
                return;
            };
            let Ok(stream) = c
                .watch(v1::WatchReq {
                    id: id.clone(),
                    ..Default::default()
                })
                .await
            else {
                return;
            };
            let mut stream = stream.into_inner();
            while let Ok(Some(ev)) = stream.message().await {
                let mut f = feed.lock().unwrap();
                match ev.event {
                    Some(Event::Snapshot(st)) => {
                        f.halted = matches!(
                            Status::try_from(st.status),
                            Ok(Status::Paused | Status::Cancelled | Status::Stopped)
                        );
                    }
                    Some(Event::Transition(t)) if t.block < 0 => {
                        f.halted = matches!(
                            Status::try_from(t.status),
                            Ok(Status::Paused | Status::Cancelled | Status::Stopped)
                        );
                    }
                    Some(Event::Transition(t))
                        if t.job >= 0 && t.status == Status::Running as i32 && f.halted =>
                    {
                        f.violation.get_or_insert(format!(
                            "{id}: block {} job {} started while the workflow was halted",
                            t.block, t.job
                        ));
                    }
                    _ => {}
                }
            }
        });
    }

    fn es_text(&self, stop: bool, extra: bool) -> String {
        let mut v = vec![
            serde_json::json!({"Name": "SatelliteDiskErase", "Status": "go"}),
            serde_json::json!({"Name": "x", "Status": if stop { "stop" } else { "go" }, "Reason": "model"}),
        ];
        if extra {
            v.push(serde_json::json!({"Name": "unrelated", "Status": "stop"}));
        }
        serde_json::to_string_pretty(&v).unwrap()
    }

    fn write(&self, file: &str, text: &str, how: Write) {
        let path = self.s.config_path(file);
        match how {
            Write::Atomic => interlock_tests::write_config(&path, text),
            Write::InPlace => {
                use std::io::Write as _;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
                std::thread::sleep(Duration::from_millis(15));
                let (a, b) = text.split_at(text.len() / 2);
                f.write_all(a.as_bytes()).unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(15));
                f.write_all(b.as_bytes()).unwrap();
            }
        }
    }

    /// Waits until the server has the e-stop decision `stop` for "x".
    fn until_es(&self, stop: bool, extra: bool) {
        self.rt.block_on(async {
            interlock_tests::eventually("the e-stop state in force", || async {
                let st = self
                    .s
                    .control()
                    .await
                    .emergency_stop_state(v1::EmergencyStopStateReq {})
                    .await
                    .unwrap()
                    .into_inner();
                st.error.is_empty()
                    && st.entries.iter().any(|e| e.name == "x" && e.stop == stop)
                    && st.entries.iter().any(|e| e.name == "unrelated") == extra
            })
            .await
        });
    }
}

struct Test;

impl StateMachineTest for Test {
    type SystemUnderTest = Sut;
    type Reference = Ref;

    fn init_test(_: &Model) -> Sut {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let s = rt.block_on(TestServer::start_with(|c| {
            append_entry(
                &c.configs.join("buckets.json"),
                serde_json::json!({"Name": BUCKET, "Capacity": CAPACITY, "Refill": 1, "Period": "1h"}),
            );
        }));
        Sut {
            rt,
            s,
            ids: Vec::new(),
            kinds: Vec::new(),
            feeds: Vec::new(),
            executed: Default::default(),
            cancelled: Default::default(),
            stops: 0,
            stops_at_exec: HashMap::new(),
        }
    }

    fn apply(mut sut: Sut, model: &Model, op: Op) -> Sut {
        let c = sut.rt.block_on(sut.s.client());
        match op {
            Op::Submit(kind) => {
                let r = sut.rt.block_on(c.submit(request(kind)));
                match (r, model.stopped) {
                    (Ok(id), false) => {
                        sut.ids.push(id);
                        sut.kinds.push(kind);
                    }
                    (Err(e), true) => {
                        assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}")
                    }
                    (r, stopped) => panic!("Submit under stop={stopped}: {r:?}"),
                }
            }
            Op::Exec(i) => {
                let id = sut.ids[i].clone();
                let fresh = !sut.executed.contains(&id) && !sut.cancelled.contains(&id);
                let r = sut.rt.block_on(c.exec(&id));
                match (&r, fresh && !model.stopped) {
                    (Ok(()), true) => {
                        sut.executed.insert(id.clone());
                        sut.stops_at_exec.insert(id.clone(), sut.stops);
                        sut.follow(&id);
                    }
                    (Err(_), false) => {}
                    _ => panic!(
                        "Exec of {id} (fresh {fresh}, stopped {}): {r:?}",
                        model.stopped
                    ),
                }
            }
            Op::Cancel(i) => {
                let id = sut.ids[i].clone();
                sut.cancelled.insert(id.clone());
                if sut
                    .rt
                    .block_on(c.raw().cancel(v1::CancelReq {
                        id: id.clone(),
                        reason: "model".into(),
                    }))
                    .is_ok()
                {
                    let st = sut.rt.block_on(c.status(&id)).unwrap();
                    assert!(
                        interlock_client::is_final(st.status),
                        "{id} after Cancel: {}",
                        st.status
                    );
                }
            }
            Op::Pause(i) => {
                let id = sut.ids[i].clone();
                if sut
                    .rt
                    .block_on(c.raw().pause(v1::PauseReq {
                        id: id.clone(),
                        reason: "model".into(),
                    }))
                    .is_ok()
                {
                    let st = sut.rt.block_on(c.status(&id)).unwrap();
                    assert!(
                        st.status == Status::Paused as i32 || interlock_client::is_final(st.status),
                        "{id} after Pause: {}",
                        st.status
                    );
                }
            }
            Op::Resume(i) => {
                let id = sut.ids[i].clone();
                let _ = sut.rt.block_on(c.raw().resume(v1::ResumeReq { id }));
            }
            Op::Stop | Op::Go => {
                let stop = matches!(op, Op::Stop);
                if stop {
                    sut.stops += 1;
                }
                sut.rt
                    .block_on(async {
                        let mut ctl = sut.s.control().await;
                        ctl.set_emergency_stop(v1::SetEmergencyStopReq {
                            name: "x".into(),
                            stop,
                            reason: "model".into(),
                            ..Default::default()
                        })
                        .await
                    })
                    .unwrap();
            }
            Op::RewriteEs(how) => {
                let extra = sut.ids.len().is_multiple_of(2);
                let text = sut.es_text(model.stopped, extra);
                sut.write("es.json", &text, how);
                sut.until_es(model.stopped, extra);
            }
            Op::RewritePolicies(how) => {
                let path = sut.s.config_path("policies.json");
                let text = std::fs::read_to_string(&path).unwrap();
                // Same rules, different text (so it is re-read and re-judged).
                let text = if text.ends_with('\n') {
                    text.trim_end().to_string()
                } else {
                    format!("{text}\n")
                };
                sut.write("policies.json", &text, how);
            }
            Op::Restart => {
                sut.rt.block_on(sut.s.restart());
                let c = sut.rt.block_on(sut.s.client());
                for id in sut.ids.clone() {
                    let st = sut
                        .rt
                        .block_on(c.status(&id))
                        .unwrap_or_else(|e| panic!("acknowledged {id} lost: {e}"));
                    if sut.executed.contains(&id) && !interlock_client::is_final(st.status) {
                        sut.follow(&id);
                    }
                }
            }
            Op::Wait(ms) => std::thread::sleep(Duration::from_millis(ms)),
        }
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        for f in &sut.feeds {
            if let Some(v) = &f.lock().unwrap().violation {
                panic!("{v}");
            }
        }
        let starts = sut.s.unsafe_probe.starts();
        let mut seen = std::collections::HashSet::new();
        for s in &starts {
            assert!(seen.insert(s.clone()), "unsafe job started twice: {s:?}");
        }
        let c = sut.rt.block_on(sut.s.client());
        let mut takes = 0;
        for (id, kind) in sut.ids.iter().zip(&sut.kinds) {
            let st = sut
                .rt
                .block_on(c.status(id))
                .unwrap_or_else(|e| panic!("acknowledged {id} lost: {e}"));
            if *kind == Kind::Take && st.blocks[0].jobs[0].status == Status::Completed as i32 {
                takes += 1;
            }
            if st.status == Status::Stopped as i32 {
                let at_exec = sut.stops_at_exec.get(id).copied().unwrap_or(0);
                assert!(
                    sut.stops > at_exec,
                    "{id} was stopped though no stop came after its Exec: {}",
                    st.reason
                );
            }
        }
        assert!(
            takes <= CAPACITY,
            "{takes} bucket takes; capacity {CAPACITY}"
        );
        if !model.stopped {
            // Config rewrites that keep "go" never refuse work.
            let probe = sut.rt.block_on(c.validate(request(Kind::Quick))).unwrap();
            assert!(probe.ok, "work refused under go: {:?}", probe.violations);
        }
    }

    fn teardown(sut: Sut, model: Model) {
        // Everything left running ends; its feed is checked once more.
        let c = sut.rt.block_on(sut.s.client());
        for id in &sut.ids {
            let _ = sut.rt.block_on(c.raw().cancel(v1::CancelReq {
                id: id.clone(),
                reason: "teardown".into(),
            }));
            let _ = sut.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), wait_final(&c, id)).await
            });
        }
        Self::check_invariants(&sut, &model);
        let Sut { rt, s, .. } = sut;
        rt.block_on(async move { drop(s) });
    }
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_server_keeps_its_invariants_under_random_operations() {
    let cases = env("INTERLOCK_MODEL_CASES", 10);
    let steps = env("INTERLOCK_MODEL_STEPS", 24) as usize;
    let mut config = ProptestConfig::with_cases(cases);
    config.failure_persistence = None;
    config.max_shrink_iters = 64;
    let mut runner = proptest::test_runner::TestRunner::new(config.clone());
    runner
        .run(&Ref::sequential_strategy(1..steps), |(init, ops, seen)| {
            Test::test_sequential(config.clone(), init, ops, seen);
            Ok(())
        })
        .unwrap();
}
