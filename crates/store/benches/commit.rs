//! The store's commit path: one job transition committed alone, and 256
//! concurrent transitions sharing group commits, on durable SQLite
//! (WAL, synchronous=FULL). Run: `cargo bench -p interlock-store`.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use interlock_core::{Block, Job, JobRecord, Status, WorkReq, WorkflowRecord};
use interlock_store::{Change, SqliteOptions, SqliteStore, Store};
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
        b.iter(|| rt.block_on(store.write(vec![change(0)])).unwrap())
    });
    g.throughput(Throughput::Elements(256));
    g.bench_function("256 concurrent transitions (group commit)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..256)
                    .map(|j| {
                        let s = store.clone();
                        tokio::spawn(async move { s.write(vec![change(j)]).await.unwrap() })
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
