//! Fuzz target `rbac` — rbac.json: Rbac::parse, then Rbac::check.
//! The work is done by `interlock_fuzzing::rbac`, which the corpus replay
//! test (crates/fuzzing/tests/corpus.rs) runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interlock_fuzzing::rbac(data));
