//! The store's commit path: one job transition committed alone, and 256
//! concurrent transitions sharing group commits, on durable SQLite
//! (WAL, synchronous=FULL), each checked against its workflow's lease.
//! Run: `cargo bench -p interlock-store-sqlite`.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use interlock_core::{Block, Job, JobRecord, Status, WorkReq, WorkflowRecord};
use interlock_store::{CasOutcome, Change, InstanceInfo, Store};
use interlock_store_sqlite::{SqliteOptions, SqliteStore};
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteOptions::new(dir.path().join("db"))).unwrap());
    let req = WorkReq {
        name: "bench".into(),
        blocks: vec![Block {
            rate_limit: 256,
            jobs: vec![
                Job {
                    name: "sleep".into(),
                    ..Default::default()
                };
                256
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let rec = WorkflowRecord::submitted("w".into(), req, String::new(), 0);
    rt.block_on(store.submit(&rec, "", None)).unwrap();
    let me = InstanceInfo {
        id: "bench".into(),
        ..Default::default()
    };
    rt.block_on(store.register_instance(&me, std::time::Duration::from_secs(3600)))
        .unwrap();
    let lease = match rt
        .block_on(store.acquire("w", Status::NotStarted, "bench", 1, None))
        .unwrap()
    {
        CasOutcome::Done(l) => Arc::new(l),
        other => panic!("{other:?}"),
    };
    let change = |job: usize| Change::Job {
        id: "w".into(),
        block: 0,
        job,
        rec: JobRecord {
            status: Status::Running,
            started: Some(1),
            ..Default::default()
        },
    };

    let mut g = c.benchmark_group("store commit");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    g.bench_function("one transition, alone", |b| {
        b.iter(|| {
            rt.block_on(store.write(Some(&lease), vec![change(0)]))
                .unwrap()
        })
    });
    g.throughput(Throughput::Elements(256));
    g.bench_function("256 concurrent transitions (group commit)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..256)
                    .map(|j| {
                        let (s, lease) = (store.clone(), lease.clone());
                        tokio::spawn(async move {
                            s.write(Some(&lease), vec![change(j)]).await.unwrap()
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
