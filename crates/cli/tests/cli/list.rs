//! `interlock list`: the table, time filters, short ids, and ids passed
//! through as given.

use crate::{GOOD, cli, file, submit_n};
use interlock_tests::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_a_table_and_filters_by_creation_time() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.json", GOOD);
    let ids = submit_n(&s, &good, 2).await;
    let long_reason = "r".repeat(300);
    let (code, _, err) = cli(&s, &["cancel", &ids[1], "--reason", &long_reason]).await;
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = cli(&s, &["list"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "STATUS", "NAME", "CREATED", "AGE", "REASON"],
        "{out}"
    );
    assert_eq!(lines.len(), 3, "{out}");
    // Newest first.
    for (line, id) in lines[1..].iter().zip(ids.iter().rev()) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(id.starts_with(cols[0]) && cols[0].len() >= 13, "{line}");
        assert_eq!(cols[2], "x");
        let created = humantime::parse_rfc3339(cols[3]).unwrap();
        assert!(cols[3].len() == 20 && cols[3].ends_with('Z'), "{line}");
        assert!(created <= std::time::SystemTime::now());
        assert!(cols[4].ends_with('s') || cols[4].ends_with('m'), "{line}");
        assert!(line.chars().count() <= 120, "{line}");
    }
    let short: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_ne!(short[0], short[1], "short ids stay unique");
    assert!(
        lines[1].contains("Cancelled") && lines[1].ends_with('…'),
        "{out}"
    );
    assert!(lines[2].contains("NotStarted"), "{out}");

    let count = |out: &str| {
        serde_json::from_str::<serde_json::Value>(out).unwrap()["workflows"]
            .as_array()
            .unwrap()
            .len()
    };
    let future = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    )
    .to_string();
    for (args, want) in [
        (vec!["--since", "1h"], 2),
        (vec!["--until", "1h"], 0),
        (vec!["--since", &future], 0),
        (vec!["--until", &future], 2),
        (vec!["--since", "2020-01-01T00:00:00+02:00"], 2),
    ] {
        let mut a = vec!["--json", "list"];
        a.extend(&args);
        let (code, out, err) = cli(&s, &a).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(count(&out), want, "{args:?}");
    }
    let (code, _, err) = cli(&s, &["list", "--since", "yesterday"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("RFC 3339"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_are_not_uuids_go_to_the_server_as_given() {
    // The server decides what an id may be (a UUID, or a unique prefix of
    // 8 or more characters): the CLI must not refuse one itself, which
    // would exit 2.
    let s = TestServer::start().await;
    for cmd in [
        "status", "exec", "cancel", "pause", "resume", "watch", "clone",
    ] {
        let (code, _, err) = cli(&s, &[cmd, "01a20a33-316e"]).await;
        assert_eq!(code, 3, "{cmd}: {err}");
        assert!(
            err.contains("InvalidArgument") || err.contains("NotFound"),
            "{cmd}: {err}"
        );
    }
}

/// The short ids `list` prints are unique prefixes: `status` and `cancel`
/// take them. A prefix several workflows share is refused as ambiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_ids_from_list_work_and_an_ambiguous_prefix_is_refused() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.json", GOOD);
    let ids = submit_n(&s, &good, 3).await;
    let (code, out, err) = cli(&s, &["list"]).await;
    assert_eq!(code, 0, "{err}");
    let short: Vec<String> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(short.len(), 3, "{out}");
    for (short, id) in short.iter().zip(ids.iter().rev()) {
        assert!(short.len() < id.len() && id.starts_with(short.as_str()));
        let (code, out, err) = cli(&s, &["--json", "status", short]).await;
        assert_eq!(code, 0, "{short}: {err}");
        let st: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(st["id"], id.as_str(), "{out}");
    }
    let (code, _, err) = cli(&s, &["cancel", &short[0], "--reason", "short id"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = cli(&s, &["status", &ids[2]]).await;
    assert_eq!(code, 1, "a cancelled workflow: {out}");
    assert!(out.contains("[Cancelled]"), "{out}");

    // UUIDv7 ids begin with the time, and their first 8 characters change
    // once every 65 s: of three made at once, two consecutive ones share
    // at least those.
    let prefix = ids
        .windows(2)
        .map(|w| {
            w[0].chars()
                .zip(w[1].chars())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect::<String>()
        })
        .max_by_key(String::len)
        .unwrap();
    assert!(prefix.len() >= 8, "{ids:?}");
    let (code, out, err) = cli(&s, &["status", &prefix]).await;
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.starts_with(&format!(
            "interlock: InvalidArgument: id prefix {prefix:?} is ambiguous: it matches "
        )),
        "{err}"
    );
}
