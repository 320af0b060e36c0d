//! interlockd's settings: docs/CONFIG.md checked against the real parsers
//! (`Args` through clap's introspection, `Config` through serde), so the
//! reference cannot drift from the code; and the config file's spelling of
//! `metrics_listen`.

use clap::CommandFactory;
use interlock_server::{Args, Config};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const NONE: &str = "—";

/// One row of the settings table, backticks removed; `None` for a dash.
#[derive(Debug)]
struct Row {
    key: Option<String>,
    flag: Option<String>,
    env: Option<String>,
    default: String,
}

fn doc() -> String {
    std::fs::read_to_string(interlock_tests::repo().join("docs/CONFIG.md")).unwrap()
}

/// The rows of the table headed `| Key | Flag | Environment | Default | Description |`.
fn rows(doc: &str) -> Vec<Row> {
    let mut lines = doc
        .lines()
        .skip_while(|l| l.trim() != "| Key | Flag | Environment | Default | Description |")
        .skip(2); // the header and its |---| line
    let mut out = Vec::new();
    for line in lines.by_ref().take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        assert_eq!(cells.len(), 5, "a row of five cells: {line}");
        let cell = |i: usize| {
            let c = cells[i].trim().trim_matches('`');
            assert!(!c.is_empty() && !c.contains('`'), "cell {i} of {line}");
            (c != NONE).then(|| c.to_string())
        };
        assert!(!cells[4].trim().is_empty(), "no description: {line}");
        out.push(Row {
            key: cell(0),
            flag: cell(1),
            env: cell(2),
            default: cell(3).expect("a default"),
        });
    }
    assert!(out.len() > 10, "the settings table was not found");
    out
}

/// Every leaf of the serialized default config, objects flattened to
/// dotted keys (`limits.max_blocks`).
fn file_keys() -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        "",
        &serde_json::to_value(Config::default()).unwrap(),
        &mut out,
    );
    out
}

/// Each flag (`--long`) with its environment variable.
fn flags() -> BTreeMap<String, String> {
    Args::command()
        .get_arguments()
        // Actions, not settings.
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version" | "man"))
        .map(|a| {
            let long = a.get_long().expect("every setting has a long flag");
            let env = a
                .get_env()
                .unwrap_or_else(|| panic!("--{long} has no variable"));
            (format!("--{long}"), env.to_string_lossy().into_owned())
        })
        .collect()
}

/// A default as the doc writes it: strings bare, `none` for null.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn every_flag_and_variable_is_documented_and_no_row_names_one_that_does_not_exist() {
    let rows = rows(&doc());
    let flags = flags();
    for (flag, env) in &flags {
        let row = rows
            .iter()
            .find(|r| r.flag.as_ref() == Some(flag))
            .unwrap_or_else(|| panic!("{flag} is not in docs/CONFIG.md"));
        assert_eq!(row.env.as_ref(), Some(env), "{flag}'s variable");
    }
    let mut seen = BTreeSet::new();
    for row in &rows {
        if let Some(flag) = &row.flag {
            assert!(
                flags.contains_key(flag),
                "{flag} is not a flag of interlockd"
            );
            assert!(seen.insert(flag), "{flag} twice");
        } else {
            assert_eq!(row.env, None, "a variable without a flag: {row:?}");
        }
        if let (Some(flag), Some(key)) = (&row.flag, &row.key) {
            assert_eq!(flag, &format!("--{}", key.replace('_', "-")), "{row:?}");
        }
    }
}

#[test]
fn every_file_key_is_documented_with_its_default_in_code() {
    let rows = rows(&doc());
    let keys = file_keys();
    for key in keys.keys() {
        assert!(
            rows.iter().any(|r| r.key.as_ref() == Some(key)),
            "{key} is not in docs/CONFIG.md"
        );
    }
    let mut seen = BTreeSet::new();
    for row in &rows {
        match &row.key {
            Some(key) => {
                let default = keys
                    .get(key)
                    .unwrap_or_else(|| panic!("{key} is not a config file key"));
                assert!(seen.insert(key), "{key} twice");
                assert_eq!(row.default, text(default), "the default of {key}");
            }
            // A flag with no key (--config) has no default either.
            None => assert_eq!(row.default, "none", "{row:?}"),
        }
    }
}

/// The first ```json block after `heading`.
fn json_block(doc: &str, heading: &str) -> String {
    let after = &doc[doc.find(heading).expect("the heading")..];
    let start = after.find("```json\n").expect("a json block") + "```json\n".len();
    let len = after[start..].find("```").expect("the block's end");
    after[start..start + len].to_string()
}

fn load(file_text: &str, args: Args) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interlockd.json");
    std::fs::write(&path, file_text).unwrap();
    Config::from_args(&Args {
        config: Some(path),
        ..args
    })
}

#[test]
fn the_documented_example_file_loads() {
    let example = json_block(&doc(), "## Example config file");
    let c = load(&example, Args::default()).unwrap_or_else(|e| panic!("{e}\n{example}"));
    assert_eq!(c.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(c.drain, std::time::Duration::from_secs(30));
    assert_eq!(c.limits.max_jobs_per_block, 10_000);
    assert_eq!(
        c.limits.max_blocks, 2_000,
        "an omitted key keeps its default"
    );
    assert!(c.auth_enabled());
    // As the doc says, a flag wins over the file.
    let c = load(
        &example,
        Args {
            log_format: Some(interlock_server::config::LogFormat::Text),
            ..Args::default()
        },
    )
    .unwrap();
    assert_eq!(c.log_format, interlock_server::config::LogFormat::Text);
}

#[test]
fn metrics_listen_in_the_file_takes_off_as_the_flag_does() {
    let with = |v: &str| load(&format!(r#"{{"metrics_listen": {v}}}"#), Args::default());
    assert_eq!(with(r#""off""#).unwrap().metrics_listen, None);
    assert_eq!(with("null").unwrap().metrics_listen, None);
    assert_eq!(
        with(r#""127.0.0.1:9999""#).unwrap().metrics_listen,
        Some("127.0.0.1:9999".parse().unwrap())
    );
    let err = with(r#""nowhere""#).unwrap_err();
    assert!(
        err.contains("metrics_listen") && err.contains("off"),
        "{err}"
    );
    // The flag still overrides the file, both ways.
    let flag = |file: &str, flag: &str| {
        load(
            &format!(r#"{{"metrics_listen": {file}}}"#),
            Args {
                metrics_listen: Some(flag.into()),
                ..Args::default()
            },
        )
        .unwrap()
        .metrics_listen
    };
    assert_eq!(flag(r#""127.0.0.1:9999""#, "off"), None);
    assert_eq!(
        flag(r#""off""#, "127.0.0.1:9998"),
        Some("127.0.0.1:9998".parse().unwrap())
    );
}

#[test]
fn a_config_round_trips_through_its_file_form() {
    for metrics_listen in [None, Some("127.0.0.1:9999".parse().unwrap())] {
        let c = Config {
            metrics_listen,
            ..Config::default()
        };
        let text = serde_json::to_string(&c).unwrap();
        let back = load(&text, Args::default()).unwrap();
        assert_eq!(back, c, "{text}");
    }
}

/// A config file is one JSON object; whatever follows it is an error, not
/// ignored (a second object pasted below the first would silently lose).
#[test]
fn anything_after_the_config_object_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interlockd.json");
    std::fs::write(&path, r#"{"insecure": false} {"insecure": true}"#).unwrap();
    let args = interlock_server::Args {
        config: Some(path),
        ..Default::default()
    };
    let e = interlock_server::Config::from_args(&args).unwrap_err();
    assert!(e.contains("after the JSON object"), "{e}");
}

#[test]
fn retention_takes_off_and_keeps_audit_longer_than_workflows() {
    use clap::Parser;
    let load = |r: &str, a: &str| {
        let args =
            Args::try_parse_from(["interlockd", "--retention", r, "--audit-retention", a]).unwrap();
        Config::from_args(&args)
    };
    let c = load("30d", "1y").unwrap();
    assert_eq!(
        c.retention,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
    let c = load("off", "off").unwrap();
    assert_eq!((c.retention, c.audit_retention), (None, None));
    let e = load("90d", "30d").unwrap_err();
    assert!(e.contains("shorter than retention"), "{e}");
    let e = load("off", "400d").unwrap_err();
    assert!(
        e.contains("audit_retention (400days) is shorter than retention (off)"),
        "{e}"
    );
    let e = load("2h", "off").unwrap_err();
    assert!(
        e.contains("retention is 2h; it must be at least 1day "),
        "{e}"
    );
    let e = Args::try_parse_from(["interlockd", "--retention", "soon"])
        .err()
        .unwrap();
    assert!(e.to_string().contains("give a duration such as 90d"), "{e}");
    let file: Config =
        serde_json::from_str(r#"{"retention": "off", "audit_retention": null}"#).unwrap();
    assert_eq!((file.retention, file.audit_retention), (None, None));
}
