//! Fuzz target `tokens` — tokens.json: Tokens::parse, then Tokens::verify.
//! The work is done by `interlock_fuzzing::tokens`, which the corpus replay
//! test (crates/fuzzing/tests/corpus.rs) runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interlock_fuzzing::tokens(data));
