//! Conformance: job logs — lines are appended under the workflow's lease in
//! order, numbered in commit order, read after a cursor (per job or all),
//! trimmed to an attempt's newest lines, announced on the feed, and go when
//! the workflow is pruned.

use super::*;
use interlock_core::{LogLine, LogQuery, LogStream};

pub(crate) fn lines(attempt: u32, ns: std::ops::RangeInclusive<u64>, text: &str) -> Vec<LogLine> {
    ns.map(|n| LogLine {
        seq: 0,
        block: 0,
        job: 0,
        attempt,
        n,
        at: 100 + n as Micros,
        stream: if n % 2 == 0 {
            LogStream::Stdout
        } else {
            LogStream::Stderr
        },
        text: format!("{text} {n}"),
    })
    .collect()
}

fn log(id: &str, job: usize, attempt: u32, mut lines: Vec<LogLine>, keep: u32) -> Change {
    for l in &mut lines {
        l.job = job;
    }
    Change::Log {
        id: id.into(),
        block: 0,
        job,
        attempt,
        lines,
        keep,
    }
}

fn query(id: &str, job: Option<usize>, after: u64) -> LogQuery {
    LogQuery {
        workflow_id: id.into(),
        job: job.map(|j| (0, j)),
        after,
        limit: 1_000,
    }
}

fn texts(ls: &[LogLine]) -> Vec<String> {
    ls.iter().map(|l| l.text.clone()).collect()
}

pub async fn job_logs_append_read_and_trim(h: &dyn Harness) {
    let s = h.store().await;
    let s = s.as_ref();
    let owner = instance(s, "a").await;
    let lease = running(s, 1, &owner).await;
    let wf = lease.workflow_id.clone();
    let mut feed = s.subscribe();

    s.write(Some(&lease), vec![log(&wf, 0, 1, lines(1, 1..=3, "a"), 10)])
        .await
        .unwrap();
    // Two jobs in one write, with a job transition between them.
    s.write(
        Some(&lease),
        vec![
            log(&wf, 1, 1, lines(1, 1..=2, "b"), 10),
            job(&wf, 0, 1, Status::Running),
            log(&wf, 0, 1, lines(1, 4..=5, "a"), 10),
        ],
    )
    .await
    .unwrap();

    let all = s.logs(&query(&wf, None, 0)).await.unwrap();
    assert_eq!(
        texts(&all),
        ["a 1", "a 2", "a 3", "b 1", "b 2", "a 4", "a 5"],
        "commit order across jobs"
    );
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq grows: {all:?}"
    );
    let first = &all[0];
    assert_eq!(
        (first.block, first.job, first.attempt, first.n, first.at),
        (0, 0, 1, 1, 101)
    );
    assert_eq!(first.stream, LogStream::Stderr);
    assert_eq!(all[1].stream, LogStream::Stdout);

    // A cursor and a job filter.
    let after = s.logs(&query(&wf, None, all[2].seq)).await.unwrap();
    assert_eq!(texts(&after), ["b 1", "b 2", "a 4", "a 5"]);
    let job_b = s.logs(&query(&wf, Some(1), 0)).await.unwrap();
    assert_eq!(texts(&job_b), ["b 1", "b 2"]);
    let limited = s
        .logs(&LogQuery {
            limit: 2,
            ..query(&wf, Some(0), 0)
        })
        .await
        .unwrap();
    assert_eq!(texts(&limited), ["a 1", "a 2"]);

    // The attempt keeps its newest `keep` lines; another attempt and
    // another job keep theirs.
    s.write(Some(&lease), vec![log(&wf, 0, 2, lines(2, 1..=2, "c"), 3)])
        .await
        .unwrap();
    s.write(Some(&lease), vec![log(&wf, 0, 1, lines(1, 6..=8, "a"), 3)])
        .await
        .unwrap();
    let job_a = s.logs(&query(&wf, Some(0), 0)).await.unwrap();
    assert_eq!(texts(&job_a), ["c 1", "c 2", "a 6", "a 7", "a 8"]);
    assert_eq!(
        texts(&s.logs(&query(&wf, Some(1), 0)).await.unwrap()),
        ["b 1", "b 2"]
    );

    // Announced on the feed, one item per appending change, in commit
    // order with the transitions (a marker transition ends the count).
    s.write(Some(&lease), vec![job(&wf, 0, 1, Status::Completed)])
        .await
        .unwrap();
    let mut announced = 0;
    loop {
        let item = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .expect("feed item within 5 s")
            .expect("feed open");
        match item {
            FeedItem::Logs(w) if w == wf => announced += 1,
            FeedItem::Event(e) if e.job == Some(1) && e.status == Status::Completed => break,
            _ => {}
        }
    }
    assert_eq!(announced, 5, "each appending change is announced");

    // Fenced like any progress: a superseded lease appends nothing.
    let stale = Lease {
        epoch: lease.epoch - 1,
        ..lease.clone()
    };
    assert!(matches!(
        s.write(Some(&stale), vec![log(&wf, 0, 1, lines(1, 9..=9, "x"), 3)])
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(s.logs(&query(&wf, None, 0)).await.unwrap().len(), 7);
    // A workflow that does not exist has no lines.
    assert!(
        s.logs(&query(&id(99), None, 0)).await.unwrap().is_empty(),
        "an unknown workflow"
    );

    // Pruning the workflow drops its lines.
    s.write(
        Some(&lease),
        vec![Change::Workflow {
            id: wf.clone(),
            status: Status::Completed,
            reason: String::new(),
            had_errors: false,
            es_halt: EsMode::Go,
            // After its creation (at 1,001), as every end is.
            ended: Some(1_050),
        }],
    )
    .await
    .unwrap();
    assert_eq!(s.prune_workflows(1_100, 1_200, 1, 10).await.unwrap(), 1);
    assert!(s.logs(&query(&wf, None, 0)).await.unwrap().is_empty());
}
