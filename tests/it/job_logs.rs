//! Job logs: what a job attempt logs (a command's stdout and stderr, a
//! job's own messages) is kept per attempt, bounded, read with Logs (gRPC
//! and HTTP), and streamed by Watch before the transitions after it.

use interlock_proto::v1;
use interlock_tests::{TestServer, req, run_one, write_config};
use tonic::Code;

const COMMANDS: &str = r#"{"commands": [
  {"name": "chatty", "argv": ["/bin/sh", "-c", "for i in 1 2 3; do echo out $i; echo err $i >&2; done; printf 'no newline'"],
   "timeout": "5s", "idempotency": "safe"},
  {"name": "count", "argv": ["/bin/sh", "-c", "i=1; while [ $i -le $1 ]; do echo line $i; i=$((i+1)); done", "sh", "{n}"],
   "args": {"n": {"pattern": "[0-9]+"}}, "timeout": "10s", "idempotency": "safe"},
  {"name": "leaves", "argv": ["/bin/sh", "-c", "setsid sh -c 'sleep 0.5; echo late' & echo before; sleep 30"],
   "timeout": "300ms", "grace": "200ms", "idempotency": "unsafe"}
]}"#;

async fn server(lines: u32) -> TestServer {
    TestServer::start_with(|c| {
        write_config(&c.configs.join("commands.json"), COMMANDS);
        c.job_log_lines = lines;
    })
    .await
}

async fn logs(s: &TestServer, id: &str, job: Option<(u32, u32)>, after: u64) -> v1::LogsResp {
    s.raw()
        .await
        .logs(v1::LogsReq {
            id: id.into(),
            block: job.map(|j| j.0),
            job: job.map(|j| j.1),
            after,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

/// `GET /api/v1/workflows/{path}`: the body of a 200 answer.
async fn http_get(s: &TestServer, path: &str) -> String {
    let path = format!("/api/v1/workflows/{path}");
    let (code, _, body) = crate::http::exchange(&s.http_url(), "GET", &path, &[], None).await;
    assert_eq!(code, 200, "{path}: {body}");
    body
}

fn status(s: i32) -> String {
    format!("{:?}", v1::Status::try_from(s).unwrap())
}

fn texts(ls: &[v1::LogLine], stream: &str) -> Vec<String> {
    ls.iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.text.clone())
        .collect()
}

#[tokio::test]
async fn a_command_s_output_is_its_job_s_log() {
    let s = server(1_000).await;
    let st = run_one(&s, req::job("exec.chatty", &[])).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");
    let r = logs(&s, &st.id, None, 0).await;
    assert_eq!(
        texts(&r.lines, "stdout"),
        ["out 1", "out 2", "out 3", "no newline"]
    );
    assert_eq!(texts(&r.lines, "stderr"), ["err 1", "err 2", "err 3"]);
    assert!(!r.more);
    assert_eq!(r.next, r.lines.last().unwrap().seq);
    let mut ns: Vec<u64> = r.lines.iter().map(|l| l.n).collect();
    ns.sort();
    assert_eq!(ns, (1..=7).collect::<Vec<_>>(), "numbered from 1, no gap");
    assert!(
        r.lines
            .iter()
            .all(|l| l.block == 0 && l.job == 0 && l.attempt == 1 && l.at.is_some())
    );
    // One job's lines; a job that does not exist; half a job.
    assert_eq!(logs(&s, &st.id, Some((0, 0)), 0).await.lines.len(), 7);
    let refused = |block, job, id: &str| {
        let req = v1::LogsReq {
            id: id.to_string(),
            block,
            job,
            ..Default::default()
        };
        let s = &s;
        async move { s.raw().await.logs(req).await.unwrap_err() }
    };
    let e = refused(Some(0), Some(5), &st.id).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("no job 5 in block 0"), "{e:?}");
    let e = refused(Some(3), Some(0), &st.id).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("has no block 3: it has 1"), "{e:?}");
    let e = refused(Some(0), None, &st.id).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = refused(None, None, "0190a000-0000-7000-8000-000000000000").await;
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Pages: a cursor and a limit.
    let first = s
        .raw()
        .await
        .logs(v1::LogsReq {
            id: st.id.clone(),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.lines.len(), 3);
    assert!(first.more);
    let rest = logs(&s, &st.id, None, first.next).await;
    assert_eq!(rest.lines.len(), 4);
    assert_eq!(
        [first.lines, rest.lines].concat(),
        logs(&s, &st.id, None, 0).await.lines
    );

    // The HTTP API serves the same page.
    let body = http_get(&s, &format!("{}/logs?block=0&job=0&limit=2", st.id)).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["lines"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["more"], true, "{v}");
    assert!(
        ["stdout", "stderr"].contains(&v["lines"][0]["stream"].as_str().unwrap()),
        "{v}"
    );
    // And Watch over HTTP with `?logs=true` (a query string's "true").
    let body = http_get(&s, &format!("{}/watch?logs=true", st.id)).await;
    assert_eq!(body.matches("\"text\":\"out ").count(), 3, "{body}");
}

#[tokio::test]
async fn what_a_command_leaves_behind_is_not_its_log() {
    let s = server(1_000).await;
    let c = s.client().await;
    // A sibling keeps the workflow running (its lease alive) well past the
    // moment the left-behind process writes.
    let mut block = req::block(
        2,
        vec![
            req::job("exec.leaves", &[]),
            req::job("sleep", &[("seconds", "2")]),
        ],
    );
    block.max_failures = 1;
    let id = c.submit(req::work("x", vec![block])).await.unwrap();
    c.exec(&id).await.unwrap();
    let st = interlock_tests::wait_final(&c, &id).await;
    assert_eq!(
        st.blocks[0].jobs[0].status,
        v1::Status::Failed as i32,
        "{st:?}"
    );
    // The process it left (outside its group, holding its stdout) wrote
    // "late" while the workflow still ran; the job's log ended with the job.
    let r = logs(&s, &id, Some((0, 0)), 0).await;
    assert_eq!(texts(&r.lines, "stdout"), ["before"], "{r:?}");
}

#[tokio::test]
async fn an_attempt_keeps_its_newest_lines() {
    let s = server(5).await;
    let st = run_one(&s, req::job("exec.count", &[("n", "50")])).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");
    let r = logs(&s, &st.id, None, 0).await;
    assert_eq!(
        texts(&r.lines, "stdout"),
        ["line 46", "line 47", "line 48", "line 49", "line 50"]
    );
    // The numbers say what was dropped before them.
    assert_eq!(
        r.lines.iter().map(|l| l.n).collect::<Vec<_>>(),
        [46, 47, 48, 49, 50]
    );
}

#[tokio::test]
async fn no_lines_are_kept_when_the_limit_is_zero() {
    let s = server(0).await;
    let st = run_one(&s, req::job("exec.chatty", &[])).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");
    let r = logs(&s, &st.id, None, 0).await;
    assert!(r.lines.is_empty(), "{r:?}");
    assert_eq!(r.next, 0);
}

#[tokio::test]
async fn watch_streams_the_lines_before_the_transitions_after_them() {
    let s = server(1_000).await;
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![
                req::block(1, vec![req::job("exec.count", &[("n", "3")])]),
                req::block(1, vec![req::job("exec.count", &[("n", "2")])]),
            ],
        ))
        .await
        .unwrap();
    // Watching before Exec: every line arrives live.
    let mut stream = s
        .raw()
        .await
        .watch(v1::WatchReq {
            id: id.clone(),
            logs: true,
            logs_after: 0,
        })
        .await
        .unwrap()
        .into_inner();
    c.exec(&id).await.unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = stream.message().await.unwrap() {
        match ev.event {
            Some(v1::watch_event::Event::Log(l)) => {
                seen.push(format!("log {}.{} {}", l.block, l.job, l.text))
            }
            Some(v1::watch_event::Event::Transition(t)) if t.job >= 0 => {
                seen.push(format!("job {}.{} {}", t.block, t.job, status(t.status)))
            }
            Some(v1::watch_event::Event::Transition(t)) if t.block == -1 => {
                seen.push(format!("workflow {}", status(t.status)))
            }
            _ => {}
        }
    }
    let pos = |what: &str| {
        seen.iter()
            .position(|s| s == what)
            .unwrap_or_else(|| panic!("{what} not in {seen:#?}"))
    };
    for (line, end) in [
        ("log 0.0 line 1", "job 0.0 Completed"),
        ("log 0.0 line 3", "job 0.0 Completed"),
        ("log 1.0 line 2", "job 1.0 Completed"),
    ] {
        assert!(pos(line) < pos(end), "{line} before {end}: {seen:#?}");
    }
    assert!(pos("log 0.0 line 3") < pos("job 1.0 Running"), "{seen:#?}");
    assert_eq!(seen.last().unwrap(), "workflow Completed", "{seen:#?}");
    assert_eq!(seen.iter().filter(|s| s.starts_with("log ")).count(), 5);

    // Watching a finished workflow: the snapshot, every line, the end; and
    // only those after a cursor when one is given.
    let all = logs(&s, &id, None, 0).await.lines;
    for (after, want) in [(0, 5), (all[2].seq, 2)] {
        let mut stream = s
            .raw()
            .await
            .watch(v1::WatchReq {
                id: id.clone(),
                logs: true,
                logs_after: after,
            })
            .await
            .unwrap()
            .into_inner();
        let mut lines = 0;
        while let Some(ev) = stream.message().await.unwrap() {
            if let Some(v1::watch_event::Event::Log(_)) = ev.event {
                lines += 1;
            }
        }
        assert_eq!(lines, want, "after {after}");
    }
    // Without `logs`, Watch is as it was: no lines.
    let mut stream = s
        .raw()
        .await
        .watch(v1::WatchReq {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(ev) = stream.message().await.unwrap() {
        assert!(
            !matches!(ev.event, Some(v1::watch_event::Event::Log(_))),
            "{ev:?}"
        );
    }
}

#[tokio::test]
async fn a_built_in_job_logs_what_it_does() {
    let s = TestServer::start().await;
    let st = run_one(
        &s,
        req::job("diskErase", &[("machine", "aab00"), ("site", "aab")]),
    )
    .await;
    let r = logs(&s, &st.id, None, 0).await;
    let t = texts(&r.lines, "log");
    assert!(
        t.iter().any(|l| l.starts_with("erasing aab00 at aab")),
        "{st:?} {t:?}"
    );
    assert!(t.iter().any(|l| l == "erased aab00"), "{t:?}");
}
