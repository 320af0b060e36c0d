//! Fuzz target `inventory` — the inventory: sites.json, a `---` line, machines.json; parse_records and Inventory::from_records.
//! The work is done by `interlock_fuzzing::inventory`, which the corpus replay
//! test (crates/fuzzing/tests/corpus.rs) runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interlock_fuzzing::inventory(data));
