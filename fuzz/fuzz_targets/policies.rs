//! Fuzz target `policies` — policies.json: PolicySet::parse against the built-in job catalog, then checks with the parsed set.
//! The work is done by `interlock_fuzzing::policies`, which the corpus replay
//! test (crates/fuzzing/tests/corpus.rs) runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interlock_fuzzing::policies(data));
