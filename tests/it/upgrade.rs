//! Upgrades: a database written by every released schema version opens
//! with today's code, migrates in place, and reads back every workflow.
//!
//! The fixtures under `tests/fixtures/schema/` are written by the released
//! `interlockd` of each version, never by hand: `scripts/write-schema-fixture
//! COMMIT` builds that commit's server and runs [`write_schema_fixture`]
//! (ignored here) against it. The writer drives the server over gRPC only, so
//! the same writer serves every version. Each fixture comes with a manifest:
//! what that server itself answered for each workflow before it stopped.

use interlock_proto::v1;
use interlock_tests::daemon::DaemonSpec;
use interlock_tests::{TestServer, interlockd, repo, req, wait_final};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/schema")
}

/// The fixtures of one backend (`sqlite` or `postgres`): (version, data
/// file, manifest), oldest first.
fn fixtures_of(backend: &str, ext: &str) -> Vec<(u32, PathBuf, Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(fixtures()).expect("tests/fixtures/schema") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(v) = name
            .strip_prefix(&format!("{backend}-v"))
            .and_then(|r| r.strip_suffix(&format!(".{ext}")))
        else {
            continue;
        };
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(path.with_extension("json")).expect("manifest beside it"),
        )
        .expect("manifest is JSON");
        found.push((v.parse().expect("version number"), path, manifest));
    }
    found.sort_by_key(|f| f.0);
    found
}

fn job_statuses(st: &v1::StatusResp) -> Vec<Vec<i32>> {
    st.blocks
        .iter()
        .map(|b| b.jobs.iter().map(|j| j.status).collect())
        .collect()
}

/// What a server answers for `id`, as the manifest records it.
fn manifest_entry(st: &v1::StatusResp) -> Value {
    json!({
        "id": st.id,
        "name": st.name,
        "status": st.status,
        "had_errors": st.had_errors,
        "jobs": job_statuses(st),
    })
}

/// Reads every workflow of `manifest` back from `s` and checks what it says
/// against what the writing server said; then proves the migrated database
/// takes new work.
async fn reads_back(s: &TestServer, version: u32, manifest: &Value) {
    let c = s.client().await;
    let expected = manifest["workflows"].as_array().expect("workflows");
    assert!(
        expected.len() >= 4,
        "v{version}: a fixture holds a few workflows"
    );
    for want in expected {
        let id = want["id"].as_str().unwrap();
        let st = c
            .status(id)
            .await
            .unwrap_or_else(|e| panic!("v{version}: {id} unreadable: {e}"));
        assert_eq!(manifest_entry(&st), *want, "v{version}: {id} reads back");
    }
    let listed = s
        .raw()
        .await
        .list(v1::ListReq {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.workflows.len(), expected.len(), "v{version}: List");
    let audit = s.audit_log().await;
    assert!(!audit.is_empty(), "v{version}: the audit log survives");

    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap_or_else(|e| panic!("v{version}: Submit after the upgrade: {e}"));
    c.exec(&id).await.unwrap();
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "v{version}");
}

#[tokio::test]
async fn every_released_sqlite_schema_opens_migrates_and_reads_back() {
    let all = fixtures_of("sqlite", "db");
    assert!(
        all.len() >= 4,
        "fixtures of the released schemas are present"
    );
    for (version, file, manifest) in all {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("interlock.db");
        std::fs::copy(&file, &db).unwrap();
        // Retention off: the fixtures' workflows age, and must read back.
        let s = TestServer::start_with(|c| {
            c.db = db.clone();
            c.retention = None;
            c.audit_retention = None;
        })
        .await;
        reads_back(&s, version, &manifest).await;
    }
}

#[tokio::test]
async fn every_released_postgres_schema_opens_migrates_and_reads_back() {
    let all = fixtures_of("postgres", "sql");
    assert!(
        all.len() >= 2,
        "fixtures of the released schemas are present"
    );
    for (version, file, manifest) in all {
        let Some(db) = interlock_store_postgres::testing::TestDb::create().await else {
            return;
        };
        load_dump(&db.url, &file).await;
        let url = db.url.clone();
        let s = TestServer::start_with(|c| {
            c.db = PathBuf::from(url);
            c.retention = None;
            c.audit_retention = None;
        })
        .await;
        reads_back(&s, version, &manifest).await;
    }
}

/// Loads a `pg_dump --inserts` file: plain SQL, minus psql's own commands.
async fn load_dump(url: &str, file: &Path) {
    let sql: String = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n");
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(conn);
    client.batch_execute(&sql).await.expect("dump loads");
    drop(client);
    let _ = driver.await;
}

/// The machines of the decom satellite the fixtures erase.
const MACHINES: [&str; 6] = ["aab00", "aab01", "aab02", "aab03", "aab04", "aab05"];

/// Writes a fixture (see the module docs). Run by
/// `scripts/write-schema-fixture`, which sets:
/// - `INTERLOCK_FIXTURE_BIN`: the released interlockd (default: this build),
/// - `INTERLOCK_FIXTURE_CONFIGS`: that release's shipped configs,
/// - `INTERLOCK_FIXTURE_DB`: where it keeps its database (path or URL),
/// - `INTERLOCK_FIXTURE_MANIFEST`: where the manifest goes,
/// - `INTERLOCK_FIXTURE_RELEASE`: the commit, recorded in the manifest.
// Multi-threaded: the dropped clients' connections must close while this
// thread blocks waiting for the server to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a schema fixture; run by scripts/write-schema-fixture"]
async fn write_schema_fixture() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is required"));
    let bin = std::env::var("INTERLOCK_FIXTURE_BIN").unwrap_or_else(|_| interlockd!().into());
    let work = tempfile::tempdir().unwrap();
    let configs = work.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    for f in ["policies.json", "es.json", "buckets.json"] {
        let from = Path::new(&var("INTERLOCK_FIXTURE_CONFIGS")).join(f);
        std::fs::copy(&from, configs.join(f)).unwrap();
    }
    let mut spec = DaemonSpec::new(&bin, work.path()).args(["--erase-duration", "10ms"]);
    spec.db = var("INTERLOCK_FIXTURE_DB");
    spec.http = None;
    let mut d = spec.spawn().expect("the released interlockd starts");
    let c = d.client().await;
    let mut ids = Vec::new();

    let run = |site: &'static str, machines: &'static [&'static str]| {
        let c = c.clone();
        async move {
            let id = c
                .submit(req::satellite_erase(site, machines))
                .await
                .unwrap();
            c.exec(&id).await.unwrap();
            wait_final(&c, &id).await;
            id
        }
    };
    // Completed: an erase of a decom satellite, three blocks.
    ids.push(run("aab", &MACHINES).await);
    // Failed in block one: an in-service cluster.
    ids.push(run("aad", &["aad00", "aad01"]).await);
    // Failed on the bucket: a second erase too soon after the first.
    ids.push(run("aab", &MACHINES).await);
    // Cancelled before it ran.
    let id = c
        .submit(req::satellite_erase("aab", &MACHINES))
        .await
        .unwrap();
    let mut raw = v1::workflow_client::WorkflowClient::connect(d.url())
        .await
        .unwrap();
    raw.cancel(v1::CancelReq {
        id: id.clone(),
        reason: "fixture: cancelled before exec".into(),
    })
    .await
    .unwrap();
    ids.push(id);
    // Submitted, never executed.
    ids.push(
        c.submit(req::satellite_erase("aab", &MACHINES))
            .await
            .unwrap(),
    );

    let mut workflows = Vec::new();
    for id in &ids {
        workflows.push(manifest_entry(&c.status(id).await.unwrap()));
    }
    // Early releases wait for open connections before they exit.
    drop((c, raw));
    d.signal("TERM");
    let exit = d.wait_exit(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| s.success()),
        "the released interlockd stops cleanly ({exit:?}): {}",
        d.stderr()
    );
    let manifest = json!({
        "written_by": std::env::var("INTERLOCK_FIXTURE_RELEASE").unwrap_or(bin),
        "workflows": workflows,
    });
    std::fs::write(
        var("INTERLOCK_FIXTURE_MANIFEST"),
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap();
}
