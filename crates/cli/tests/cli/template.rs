//! `interlock template` and `interlock run`: store the shipped templates,
//! read them back, dry-run and run one, and the refusals in words.

use crate::cli;
use interlock_tests::{TestServer, repo};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_show_and_run_the_shipped_templates() {
    let s = TestServer::start().await;
    let dir = repo().join("configs/templates");
    let dir = dir.to_str().unwrap();
    // The server stored the shipped files at start: applying them again
    // adds nothing; a changed copy is the next revision.
    let (code, out, err) = cli(&s, &["template", "apply", dir]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("erase-cluster: unchanged at revision 1"),
        "{out}"
    );
    assert!(
        out.contains("erase-satellite: unchanged at revision 1"),
        "{out}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let shipped =
        std::fs::read_to_string(repo().join("configs/templates/erase-satellite.yaml")).unwrap();
    let changed = crate::file(
        &tmp,
        "erase.yaml",
        &shipped.replace("default: 5", "default: 6"),
    );
    let (code, out, err) = cli(&s, &["template", "apply", &changed]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("erase-satellite: stored as revision 2"),
        "{out}"
    );
    let bad = crate::file(
        &tmp,
        "bad.yaml",
        "name: bad\nworkflow: {name: W, blocks: []}",
    );
    let (code, _, err) = cli(&s, &["template", "apply", &bad]).await;
    assert_eq!(code, 3);
    assert!(
        err.contains("bad.yaml") && err.contains("at least one block"),
        "{err}"
    );

    let (code, out, err) = cli(&s, &["template", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("erase-satellite") && out.contains("SatelliteDiskErase"),
        "{out}"
    );
    let (code, out, err) = cli(&s, &["template", "show", "erase-cluster"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wave int = 8 [1 to 24]"), "{out}");
    assert!(
        out.contains("ticket string (required) [matches [A-Z]+-[0-9]+]"),
        "{out}"
    );

    // A dry run of the cluster erase: 24 machines in waves of 10.
    let (code, out, err) = cli(
        &s,
        &[
            "run",
            "erase-cluster",
            "site=aal",
            "ticket=CHG-9",
            "wave=10",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("block 1: fans out over machines of site aal (24 items, 3 block(s))"),
        "{out}"
    );
    assert!(
        out.contains("request: ClusterDiskErase (5 blocks, 50 jobs)"),
        "{out}"
    );
    assert!(out.contains("e-stop: go"), "{out}");

    // Refused values exit 3 and say which parameter and why.
    let (code, _, err) = cli(&s, &["run", "erase-satellite", "site=aab", "ticket=later"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("parameter \"ticket\": \"later\" does not match"),
        "{err}"
    );

    // Run and follow it to the end.
    let (code, out, err) = cli(
        &s,
        &[
            "run",
            "erase-satellite",
            "site=aab",
            "ticket=CHG-1",
            "rate=8",
            "--watch",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("fans out over machines of site aab (8 items)"),
        "{err}"
    );
    let id = out.lines().next().unwrap().trim().to_string();
    let (_, st, _) = cli(&s, &["--json", "status", &id]).await;
    let st: Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["status"], "Completed");
    assert_eq!(st["labels"]["interlock.template"], "erase-satellite");
    assert_eq!(st["labels"]["ticket"], "CHG-1");

    let (code, out, err) = cli(
        &s,
        &[
            "template",
            "disable",
            "erase-satellite",
            "--reason",
            "site freeze",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("erase-satellite: disabled (site freeze)"),
        "{out}"
    );
    let (code, _, err) = cli(&s, &["run", "erase-satellite", "site=aab", "ticket=CHG-2"]).await;
    assert_eq!(code, 3);
    assert!(err.contains("site freeze"), "{err}");
    let (code, out, _) = cli(&s, &["template", "revisions", "erase-satellite"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("file:templates/erase-satellite.yaml"), "{out}");
    let (code, out, _) = cli(&s, &["--json", "template", "show", "erase-satellite"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["disabledReason"], "site freeze");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_created_listed_paused_and_deleted() {
    let s = TestServer::start().await;
    let (code, out, err) = cli(
        &s,
        &[
            "schedule",
            "create",
            "nightly",
            "erase-satellite",
            "site=aab",
            "ticket=CHG-4",
            "--cron",
            "30 2 * * MON-FRI",
            "--tz",
            "Europe/Berlin",
            "--missed",
            "run-once",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "nightly: template erase-satellite (revision latest), workflow SatelliteDiskErase"
        ),
        "{out}"
    );
    assert!(
        out.contains("when: 30 2 * * MON-FRI Europe/Berlin; missed: runOnce; overlap: skip"),
        "{out}"
    );
    assert!(out.contains("next fire: "), "{out}");

    let (code, out, _) = cli(&s, &["schedule", "list"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("nightly") && out.contains("active"), "{out}");
    let (code, out, _) = cli(&s, &["schedule", "pause", "nightly"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("PAUSED; next fire"), "{out}");
    let (code, out, _) = cli(&s, &["--json", "schedule", "resume", "nightly"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["paused"], false);
    assert_eq!(v["timeZone"], "Europe/Berlin");

    // Refusals say what is wrong.
    let (code, _, err) = cli(
        &s,
        &[
            "schedule",
            "create",
            "past",
            "erase-satellite",
            "site=aab",
            "ticket=CHG-4",
            "--at",
            "2020-01-01T00:00:00Z",
        ],
    )
    .await;
    assert_eq!(code, 3);
    assert!(err.contains("would never fire"), "{err}");
    let (code, _, err) = cli(
        &s,
        &[
            "schedule",
            "create",
            "typo",
            "erase-satellite",
            "site=aab",
            "--cron",
            "0 3 * * *",
        ],
    )
    .await;
    assert_eq!(code, 3);
    assert!(err.contains("parameter \"ticket\" is required"), "{err}");

    let (code, out, _) = cli(&s, &["schedule", "delete", "nightly"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("nightly: deleted"));
    let (code, _, err) = cli(&s, &["schedule", "show", "nightly"]).await;
    assert_eq!(code, 3);
    assert!(err.contains("no schedule named \"nightly\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_import_list_and_set_status() {
    let s = TestServer::start().await;
    let (code, out, _) = cli(&s, &["inventory", "list"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("inventory from the data files"), "{out}");
    let data = repo().join("data");
    let (code, out, err) = cli(&s, &["inventory", "import", data.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("inventory from the store, version 1"),
        "{out}"
    );
    let (code, out, err) = cli(
        &s,
        &[
            "inventory",
            "set-status",
            "aaa",
            "decom",
            "--reason",
            "rack retired",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("aaa        satellite  decom      8"), "{out}");
    assert!(out.contains("machines: aaa00, aaa01"), "{out}");
    let (code, _, err) = cli(
        &s,
        &["inventory", "set-status", "aaa", "gone", "--reason", "x"],
    )
    .await;
    assert_eq!(code, 3);
    assert!(err.contains("one of decom, inService, removed"), "{err}");
}
