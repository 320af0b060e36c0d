//! Fuzz target `work_req_json` — WorkReq admission from protobuf JSON: pbjson, convert, validate_structure, the shipped policies.
//! The work is done by `interlock_fuzzing::work_req_json`, which the corpus replay
//! test (crates/fuzzing/tests/corpus.rs) runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interlock_fuzzing::work_req_json(data));
