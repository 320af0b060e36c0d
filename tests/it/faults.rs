//! The store's disk misbehaving: full, or read-only. A full disk holds
//! running work (nothing new starts, nothing is lost) and shows in health
//! until space returns; a read-only database is refused at start-up.
//!
//! These tests mount a small tmpfs, which needs root (as on CI). Elsewhere
//! they skip with one line, unless `CI=true`, where they fail.

use interlock_proto::v1::Status;
use interlock_tests::daemon::DaemonSpec;
use interlock_tests::{TestServer, eventually, interlockd, req, wait_final};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"));
        if !root {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "disk fault tests need root to mount a tmpfs, and CI=true is set"
            );
            println!("skipping: disk fault tests need root (to mount a small tmpfs)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            &path,
        );
        Some(Self { path, _dir: dir })
    }

    fn remount(&self, opts: &str) {
        run("mount", &["-o", &format!("remount,{opts}")], &self.path);
    }

    /// Fills the file system up; returns the filler file.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        // dd stops with "No space left on device": expected.
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", filler.display()))
            .stderr(std::process::Stdio::null())
            .status();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn run(cmd: &str, args: &[&str], path: &Path) {
    let ok = Command::new(cmd)
        .args(args)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{cmd} {args:?} {}", path.display());
}

async fn serving(s: &TestServer) -> bool {
    let ch = tonic::transport::Channel::from_shared(s.addr())
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_work_and_health_until_space_returns() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let db = fs.path.join("var/interlock.db");
    let s = TestServer::start_with(|c| {
        c.db = db;
        c.lease_ttl = Duration::from_millis(600);
    })
    .await;
    let c = s.client().await;
    let before = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(1, (0..4).map(|_| req::probe(150)).collect())],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("the first probe runs", || async {
        !s.probe.starts_of(&id).is_empty()
    })
    .await;
    let filler = fs.fill();
    eventually("health says the store cannot be written", || async {
        !serving(&s).await
    })
    .await;
    let held = c.status(&id).await.unwrap();
    assert_eq!(held.status, Status::Running as i32, "{}", held.reason);
    let started = s.probe.starts_of(&id).len();
    let refused = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(tonic::Code::Unavailable), "{refused}");
    // Nothing new starts while its start cannot be recorded.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.probe.starts_of(&id).len(), started);

    std::fs::remove_file(filler).unwrap();
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(s.probe.starts_of(&id).len(), 4, "each job ran once");
    eventually("health recovers", || async { serving(&s).await }).await;
    c.status(&before).await.expect("acknowledged work is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_refused_at_start_up() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DaemonSpec::new(interlockd!(), dir.path());
    spec.db = fs.path.join("interlock.db").display().to_string();
    let mut first = spec.spawn().expect("starts on a writable disk");
    first.signal("TERM");
    first.wait_exit(Duration::from_secs(10)).expect("stops");
    fs.remount("ro");
    let e = spec.spawn().err().expect("refused");
    assert_eq!(e.status.code(), Some(2), "{}", e.stderr);
    assert!(
        e.stderr.contains("cannot be written") && e.stderr.contains("read-only"),
        "{}",
        e.stderr
    );
}
