//! Replays the fuzz corpus on stable: every file of `fuzz/corpus/<target>/`
//! and, when present, every crash file of `fuzz/artifacts/<target>/`, through
//! the target's function in `interlock_fuzzing`. A panic in any of them
//! fails the test, naming the file. Also checks that each target has a
//! non-empty seed corpus and a cargo-fuzz target, and that the seeds reach
//! the accepting paths (the sample request is admitted).

use interlock_core::{Limits, validate_structure};
use interlock_fuzzing::{TARGETS, fixtures};
use interlock_proto::v1;
use interlock_server::convert;
use prost::Message;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_target_has_a_seed_corpus_and_a_cargo_fuzz_target() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        let corpus = fuzz_dir().join("corpus").join(name);
        assert!(
            !files(&corpus).is_empty(),
            "{} has no seed files",
            corpus.display()
        );
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("interlock_fuzzing::{name}(data)")),
            "{} does not call interlock_fuzzing::{name}",
            source.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
    }
}

#[test]
fn corpus_and_crash_files_replay_without_panics() {
    let mut failed = Vec::new();
    let mut replayed = 0;
    for (name, target) in TARGETS {
        for dir in ["corpus", "artifacts"] {
            for file in files(&fuzz_dir().join(dir).join(name)) {
                let data = std::fs::read(&file).unwrap();
                replayed += 1;
                if std::panic::catch_unwind(|| target(&data)).is_err() {
                    failed.push(format!("{name}: {}", file.display()));
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {replayed} inputs panicked:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn the_sample_request_passes_every_admission_check() {
    let req = fixtures::sample_request();
    let structure = validate_structure(&req, fixtures::catalog(), &Limits::default());
    assert!(structure.is_empty(), "{structure:?}");
    assert_eq!(fixtures::shipped_policies().admit(&req), Ok(()));
}

#[test]
fn the_request_seeds_are_the_sample_request() {
    let corpus = fuzz_dir().join("corpus");
    let wire = interlock_proto::server::v1::WorkReq::decode(
        std::fs::read(corpus.join("work_req/erase-aab.pb"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert_eq!(convert::work_req(wire).unwrap(), fixtures::sample_request());
    let text = std::fs::read_to_string(corpus.join("work_req_json/erase-aab.json")).unwrap();
    let wire: v1::WorkReq = serde_json::from_str(&text).unwrap();
    assert_eq!(
        convert::work_req(convert::from_client(&wire)).unwrap(),
        fixtures::sample_request()
    );
}
