//! Fuzz target `estop` — es.json: EsState::parse.
//! The work is done by `interlock_fuzzing::estop`, which the corpus replay
//! test (crates/fuzzing/tests/corpus.rs) runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interlock_fuzzing::estop(data));
