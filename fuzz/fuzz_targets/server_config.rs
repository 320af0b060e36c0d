//! Fuzz target `server_config` — interlockd's JSON config file: Config as Config::from_args reads it, then Config::validate.
//! The work is done by `interlock_fuzzing::server_config`, which the corpus replay
//! test (crates/fuzzing/tests/corpus.rs) runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interlock_fuzzing::server_config(data));
