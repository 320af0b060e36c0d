//! Targets for the configuration files Interlock reads: `policies.json`,
//! `es.json`, `buckets.json`, `tokens.json`, `rbac.json`, the inventory
//! (`sites.json` / `machines.json`) and interlockd's own JSON config file.
//!
//! Each target takes the bytes of one file (the inventory: two files, see
//! [`inventory`]), parses them with the parser the server uses, and — when
//! the input is accepted — uses the result as the server would and re-parses
//! a canonical re-serialization, which must give the same result. Invalid
//! UTF-8 is refused before parsing, as the server's `read_to_string` does.

use crate::fixtures::{NOW_MICROS, catalog, now, sample_request};
use interlock_auth::{Action, Denied, Identity, Rbac, Tokens};
use interlock_core::parse_records;
use interlock_engine::{BucketDef, EsState, buckets};
use interlock_inventory::{Inventory, Machine, Site, to_lines};
use interlock_policy::PolicySet;
use interlock_server::Config;
use serde::Deserialize;
use serde_json::{Value, json};

/// A token whose hash the seed `tokens.json` files list, so that the
/// accepted and expired paths of `Tokens::verify` are reached.
pub const FUZZ_TOKEN: &str = "ilk_fuzz";

/// Separates `sites.json` from `machines.json` in an [`inventory`] input.
/// It cannot occur inside valid JSON (a raw newline is not allowed in a
/// string, and `---` is not a JSON value).
pub const INVENTORY_SEPARATOR: &str = "\n---\n";

/// `policies.json`: [`PolicySet::parse`] against the built-in job catalog;
/// an accepted set checks the sample request under each of its workflow
/// names, and the same records written as one JSON array parse to a set
/// with the same workflows and verdicts.
pub fn policies(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(set) = PolicySet::parse(text, "policies.json", catalog()) else {
        return;
    };
    let verdicts = |set: &PolicySet| {
        let mut req = sample_request();
        let mut out = vec![set.check(&req)];
        let _ = set.admit(&req);
        for name in set.workflow_names() {
            req.name = name.to_string();
            out.push(set.check(&req));
        }
        out
    };
    let records: Vec<Value> = parse_records(text).expect("an accepted file's records parse");
    let canonical = serde_json::to_string(&records).expect("JSON values serialize");
    let again = PolicySet::parse(&canonical, "policies.json", catalog())
        .unwrap_or_else(|e| panic!("the canonical form of an accepted file is refused: {e}"));
    assert_eq!(again.workflow_names(), set.workflow_names());
    assert_eq!(verdicts(&again), verdicts(&set));
}

/// `es.json`: [`EsState::parse`]; an accepted state answers for every name
/// it lists and for a name it does not, and its entries written back as a
/// JSON array parse to the same entries.
pub fn estop(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(state) = EsState::parse(text) else {
        return;
    };
    assert!(state.error.is_none(), "an accepted es.json has no error");
    for (name, _) in state.entries() {
        let _ = state.stopped(name);
    }
    let _ = state.stopped("SatelliteDiskErase");
    let canonical: Vec<Value> = state
        .entries()
        .into_iter()
        .map(|(name, e)| json!({"Name": name, "Status": e.mode.as_str(), "Reason": e.reason}))
        .collect();
    let canonical = serde_json::to_string(&canonical).expect("JSON values serialize");
    let again = EsState::parse(&canonical)
        .unwrap_or_else(|e| panic!("the canonical form of an accepted file is refused: {e}"));
    assert_eq!(again.entries(), state.entries());
}

/// `buckets.json`: [`buckets::parse_config`]; every accepted bucket becomes
/// the rule it says and is used as the store uses it (window, takes until
/// empty, level, replay after a restart, at a fixed "now"), and the
/// definitions written back (periods in humantime form) parse to the same
/// definitions.
pub fn buckets(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(defs) = buckets::parse_config(text) else {
        return;
    };
    for def in &defs {
        use_bucket(def);
    }
    let canonical: Vec<Value> = defs
        .iter()
        .map(|d| {
            let mut v = json!({
                "Name": d.name,
                "Capacity": d.capacity,
                "Refill": d.refill,
                "Period": humantime::format_duration(d.period).to_string(),
            });
            if let Some(k) = &d.key_arg {
                v["KeyArg"] = json!(k);
            }
            v
        })
        .collect();
    let canonical = serde_json::to_string(&canonical).expect("JSON values serialize");
    let again = buckets::parse_config(&canonical)
        .unwrap_or_else(|e| panic!("the canonical form of an accepted file is refused: {e}"));
    assert_eq!(again, defs);
}

/// What the store does with a bucket's rule on a take (both stores) and
/// what the Buckets RPC does to show its level.
fn use_bucket(def: &BucketDef) {
    let rule = def.gcra();
    let configured = def.period.as_micros() / u128::from(def.refill);
    assert_eq!(
        (rule.per_token as u128, rule.burst),
        (configured.max(1), def.capacity),
        "the store applies the configured rule"
    );
    let at = NOW_MICROS;
    // A bucket whose rule changed replays takes from this time on.
    let since = at - rule.window();
    let mut tat = rule.replay([]);
    let _ = rule.level(tat, at);
    let mut taken = Vec::new();
    for _ in 0..3 {
        match rule.take(tat, at) {
            Ok(next) => {
                tat = next;
                taken.push(at);
            }
            Err(_) => break,
        }
    }
    let _ = rule.level(tat, at);
    assert_eq!(
        rule.replay(taken.into_iter().filter(|t| *t >= since)),
        tat,
        "replaying the takes after a restart gives the state the live takes left"
    );
}

/// The first JSON value of `text`, read as the auth files and the server
/// config are read (serde_path_to_error over a streaming deserializer).
fn first_value(text: &str) -> Value {
    let mut de = serde_json::Deserializer::from_str(text);
    Value::deserialize(&mut de).expect("an accepted file is JSON")
}

/// `tokens.json`: [`Tokens::parse`]; an accepted file verifies tokens at a
/// fixed "now" (including [`FUZZ_TOKEN`], listed by the seeds, expired or
/// not), and its JSON written back compactly parses to equal tokens.
pub fn tokens(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tokens) = Tokens::parse(text) else {
        return;
    };
    for presented in [FUZZ_TOKEN, "", "ilk_unknown"] {
        let _ = tokens.verify(presented, now());
        let _ = tokens.verify(presented, std::time::SystemTime::UNIX_EPOCH);
    }
    let canonical = first_value(text).to_string();
    let again = Tokens::parse(&canonical)
        .unwrap_or_else(|e| panic!("the canonical form of an accepted file is refused: {e}"));
    assert_eq!(again, tokens);
}

/// Answers of `rbac` for a fixed set of callers, actions and workflow names.
fn rbac_answers(rbac: &Rbac) -> Vec<(Vec<String>, Result<(), Denied>)> {
    let callers = [
        Identity::token("diskerase-bot"),
        Identity::token("dashboard"),
        Identity::certificate("a.sre.example.com", vec!["alt.example.com".into()]),
        Identity::anonymous("127.0.0.1:5000"),
    ];
    let mut out = Vec::new();
    for who in &callers {
        let roles: Vec<String> = rbac.roles_of(who).into_iter().map(String::from).collect();
        for action in Action::ALL {
            for workflow in ["SatelliteDiskErase", "*", "", "[a]"] {
                out.push((roles.clone(), rbac.check(who, action, workflow)));
            }
        }
    }
    out
}

/// `rbac.json`: [`Rbac::parse`]; an accepted file answers a fixed set of
/// authorization questions, and its JSON written back compactly parses to a
/// file giving the same answers.
pub fn rbac(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rbac) = Rbac::parse(text) else {
        return;
    };
    let answers = rbac_answers(&rbac);
    let canonical = first_value(text).to_string();
    let again = Rbac::parse(&canonical)
        .unwrap_or_else(|e| panic!("the canonical form of an accepted file is refused: {e}"));
    assert_eq!(rbac_answers(&again), answers);
}

/// The inventory: `sites.json`, [`INVENTORY_SEPARATOR`], `machines.json`
/// (without a separator, the whole input is read as each file).
/// [`parse_records`] into [`Site`]s and [`Machine`]s, then
/// [`Inventory::from_records`] and lookups; accepted records written back
/// (as an array, and one per line) parse to the same records.
pub fn inventory(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (sites_text, machines_text) = text.split_once(INVENTORY_SEPARATOR).unwrap_or((text, text));
    let sites = parse_records::<Site>(sites_text);
    let machines = parse_records::<Machine>(machines_text);
    if let Ok(sites) = &sites {
        assert_records_round_trip(sites);
    }
    if let Ok(machines) = &machines {
        assert_records_round_trip(machines);
    }
    let (Ok(sites), Ok(machines)) = (sites, machines) else {
        return;
    };
    let Ok(inventory) = Inventory::from_records(sites, machines) else {
        return;
    };
    if let Some(site) = inventory.sites().first() {
        for m in inventory.machines_at(&site.name) {
            assert!(inventory.machine(&site.name, &m.name).is_some());
        }
    }
}

/// Records written as a JSON array, and (when there are any: an empty file
/// is refused) one per line as the generator writes them, read back equal.
fn assert_records_round_trip<T>(records: &[T])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let array = serde_json::to_string(records).expect("records serialize");
    let mut forms = vec![array];
    if !records.is_empty() {
        forms.push(to_lines(records));
    }
    for text in forms {
        let again: Vec<T> = parse_records(&text)
            .unwrap_or_else(|e| panic!("the canonical form of accepted records is refused: {e}"));
        assert_eq!(again, records);
    }
}

/// interlockd's config file: [`Config`] deserialized as `Config::from_args`
/// does, then [`Config::validate`]; an accepted config serialized and
/// deserialized again is equal and validates the same way.
pub fn server_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let de = &mut serde_json::Deserializer::from_str(text);
    let Ok(config) = serde_path_to_error::deserialize::<_, Config>(de) else {
        return;
    };
    let verdict = config.validate();
    let _ = (config.erase_target_path(), config.auth_enabled());
    let canonical = serde_json::to_string(&config).expect("a Config serializes");
    let again: Config = serde_json::from_str(&canonical)
        .unwrap_or_else(|e| panic!("the canonical form of an accepted config is refused: {e}"));
    assert_eq!(again, config);
    assert_eq!(again.validate(), verdict);
}
