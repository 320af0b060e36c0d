//! Fuzz target `work_req` — WorkReq admission from protobuf bytes: decode, convert, validate_structure, the shipped policies.
//! The work is done by `interlock_fuzzing::work_req`, which the corpus replay
//! test (crates/fuzzing/tests/corpus.rs) runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interlock_fuzzing::work_req(data));
