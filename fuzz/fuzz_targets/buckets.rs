//! Fuzz target `buckets` — buckets.json: buckets::parse_config, then the store's arithmetic on each accepted bucket.
//! The work is done by `interlock_fuzzing::buckets`, which the corpus replay
//! test (crates/fuzzing/tests/corpus.rs) runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interlock_fuzzing::buckets(data));
