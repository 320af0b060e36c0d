//! `configs/commands.json`: the only commands the `exec.*` jobs may run.
//!
//! Each entry becomes the job type `exec.NAME`, whose arguments are the
//! entry's placeholders. A command is an argv template: the program is an
//! absolute path with no placeholder, and each placeholder `{arg}` is
//! replaced inside its own argv element, so a value is always exactly one
//! argument and never reaches a shell. A value must match its
//! placeholder's pattern (whole value), and is refused outright if it holds
//! a control character (NUL, newline) or, unless the placeholder allows
//! it, starts with `-` (an option the program would obey).

use interlock_core::schema::{intern, leak};
use interlock_core::{ArgFormat, ArgSpec, Idempotency, JobSchema};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The file's name in the config directory.
pub const COMMANDS: &str = "commands.json";
/// Job types of commands are `exec.` and the entry's name.
pub const PREFIX: &str = "exec.";
/// Output kept of each stream, from its end.
pub const TAIL_BYTES: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    commands: Vec<CommandFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandFile {
    name: String,
    #[serde(default)]
    description: String,
    argv: Vec<String>,
    #[serde(default)]
    args: BTreeMap<String, PlaceholderFile>,
    /// Variables set for the command (the environment is otherwise empty).
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Variables passed through from the server's environment.
    #[serde(default)]
    pass_env: Vec<String>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    /// SIGTERM, then this long, then SIGKILL (default 5s).
    #[serde(default, with = "humantime_serde")]
    grace: Option<Duration>,
    idempotency: IdempotencyFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceholderFile {
    pattern: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    leading_dash: bool,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum IdempotencyFile {
    Safe,
    Unsafe,
}

/// One argv element: literal text and placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Arg(String),
}

/// A placeholder's rule.
#[derive(Debug, Clone)]
pub struct Placeholder {
    pattern: regex::Regex,
    source: String,
    leading_dash: bool,
}

/// One allowed command.
#[derive(Debug, Clone)]
pub struct Command {
    pub name: String,
    pub schema: &'static JobSchema,
    program: PathBuf,
    argv: Vec<Vec<Piece>>,
    args: BTreeMap<String, Placeholder>,
    pub env: BTreeMap<String, String>,
    pub pass_env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
    pub grace: Duration,
}

/// Splits `{name}` placeholders out of an argv element.
fn pieces(element: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = element;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(Piece::Text(rest[..open].to_string()));
        }
        let close = rest[open..].find('}').ok_or_else(|| {
            format!("{element:?} opens a placeholder with {{ and never closes it")
        })?;
        let name = &rest[open + 1..open + close];
        ArgFormat::Name
            .check(name)
            .map_err(|e| format!("placeholder in {element:?}: {e}"))?;
        out.push(Piece::Arg(name.to_string()));
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{element:?} has a }} without a {{"));
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

impl Command {
    /// Why `value` may not fill placeholder `arg`, if it may not.
    pub fn refuse(&self, arg: &str, value: &str) -> Option<String> {
        let p = self.args.get(arg)?;
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Some(format!(
                "argument {arg:?} holds the control character {c:?}; commands take none"
            ));
        }
        if value.starts_with('-') && !p.leading_dash {
            return Some(format!(
                "argument {arg:?} starts with '-', which the command would read as an option"
            ));
        }
        if !p.pattern.is_match(value) {
            return Some(format!(
                "argument {arg:?} = {value:?} does not match the pattern {:?} that commands.json sets",
                p.source
            ));
        }
        None
    }

    /// Every problem with `args` (present ones; the schema checks presence).
    pub fn check(&self, args: &interlock_core::Args) -> Result<(), String> {
        let problems: Vec<String> = args.iter().filter_map(|(k, v)| self.refuse(k, v)).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The program and its arguments, each placeholder filled in within
    /// its own element; refused values are refused again here.
    pub fn argv(&self, args: &interlock_core::Args) -> Result<(PathBuf, Vec<String>), String> {
        self.check(args)?;
        let mut out = Vec::with_capacity(self.argv.len());
        for element in &self.argv {
            let mut s = String::new();
            for p in element {
                match p {
                    Piece::Text(t) => s.push_str(t),
                    Piece::Arg(a) => s.push_str(
                        args.get(a)
                            .ok_or_else(|| format!("argument {a:?} is missing"))?,
                    ),
                }
            }
            out.push(s);
        }
        Ok((self.program.clone(), out))
    }
}

/// A loaded commands.json.
#[derive(Debug, Clone, Default)]
pub struct Commands(pub Vec<Command>);

impl Commands {
    pub fn parse(text: &str) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let file: File = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{COMMANDS}: {}: {}", e.path(), e.inner()))?;
        let mut out: Vec<Command> = Vec::new();
        for (i, c) in file.commands.into_iter().enumerate() {
            let at = format!("{COMMANDS}: commands[{i}] ({:?})", c.name);
            ArgFormat::Name
                .check(&c.name)
                .map_err(|e| format!("{at}: name {e}"))?;
            if out.iter().any(|o| o.name == c.name) {
                return Err(format!("{at}: declared twice"));
            }
            let Some((program, rest)) = c.argv.split_first() else {
                return Err(format!("{at}: argv is empty"));
            };
            if !program.starts_with('/') || program.contains('{') {
                return Err(format!(
                    "{at}: argv[0] {program:?} must be an absolute path without placeholders \
                     (no PATH lookup, no chosen program)"
                ));
            }
            let argv = rest
                .iter()
                .map(|e| pieces(e).map_err(|m| format!("{at}: {m}")))
                .collect::<Result<Vec<_>, _>>()?;
            let used: std::collections::BTreeSet<&str> = argv
                .iter()
                .flatten()
                .filter_map(|p| match p {
                    Piece::Arg(a) => Some(a.as_str()),
                    Piece::Text(_) => None,
                })
                .collect();
            if let Some(u) = used.iter().find(|u| !c.args.contains_key(**u)) {
                return Err(format!(
                    "{at}: argv uses {{{u}}}, which \"args\" does not declare"
                ));
            }
            if let Some(u) = c.args.keys().find(|a| !used.contains(a.as_str())) {
                return Err(format!(
                    "{at}: argument {u:?} is declared but argv never uses it"
                ));
            }
            let mut args = BTreeMap::new();
            for (name, p) in &c.args {
                // On its own first, so a pattern cannot close the anchoring
                // group around it ("a)|(.*").
                regex::Regex::new(&p.pattern)
                    .map_err(|e| format!("{at}: argument {name:?}: pattern: {e}"))?;
                let pattern = regex::Regex::new(&format!("^(?:{})$", p.pattern))
                    .map_err(|e| format!("{at}: argument {name:?}: pattern: {e}"))?;
                args.insert(
                    name.clone(),
                    Placeholder {
                        pattern,
                        source: p.pattern.clone(),
                        leading_dash: p.leading_dash,
                    },
                );
            }
            if c.timeout.is_zero() {
                return Err(format!("{at}: timeout must be more than zero"));
            }
            if let Some(d) = &c.cwd
                && !d.is_absolute()
            {
                return Err(format!(
                    "{at}: cwd {} must be an absolute path",
                    d.display()
                ));
            }
            let name = format!("{PREFIX}{}", c.name);
            let key = serde_json::json!([
                name,
                c.description,
                c.args
                    .iter()
                    .map(|(n, p)| (n, &p.description, &p.pattern))
                    .collect::<Vec<_>>(),
                c.idempotency as u8
            ])
            .to_string();
            let schema = intern(key, || JobSchema {
                name: leak(&name),
                description: leak(if c.description.is_empty() {
                    "a command from commands.json"
                } else {
                    &c.description
                }),
                args: c
                    .args
                    .iter()
                    .map(|(n, p)| ArgSpec {
                        name: leak(n),
                        required: true,
                        description: leak(&if p.description.is_empty() {
                            format!("matches {}", p.pattern)
                        } else {
                            format!("{} (matches {})", p.description, p.pattern)
                        }),
                        format: ArgFormat::Text,
                    })
                    .collect(),
                idempotency: match c.idempotency {
                    IdempotencyFile::Safe => Idempotency::Safe,
                    IdempotencyFile::Unsafe => Idempotency::Unsafe,
                },
                reconcilable: false,
            });
            out.push(Command {
                name: c.name,
                schema,
                program: PathBuf::from(program),
                argv,
                args,
                env: c.env,
                pass_env: c.pass_env,
                cwd: c.cwd,
                timeout: c.timeout,
                grace: c.grace.unwrap_or(Duration::from_secs(5)),
            });
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = r#"{"commands": [{"name": "greet", "argv": ["/bin/echo", "--to={who}", "{who}"],
        "args": {"who": {"pattern": "[a-z]+"}}, "timeout": "5s", "idempotency": "safe"}]}"#;

    fn args(kv: &[(&str, &str)]) -> interlock_core::Args {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_placeholder_fills_exactly_its_own_elements() {
        let c = &Commands::parse(ECHO).unwrap().0[0];
        assert_eq!(c.schema.name, "exec.greet");
        let (program, argv) = c.argv(&args(&[("who", "bob")])).unwrap();
        assert_eq!(program, PathBuf::from("/bin/echo"));
        assert_eq!(argv, ["--to=bob", "bob"]);
    }

    #[test]
    fn injection_attempts_are_refused_by_pattern_or_rule() {
        let c = &Commands::parse(ECHO).unwrap().0[0];
        for bad in ["; rm -rf /", "$(id)", "a\nb", "a\0b", "--help", "Bob", ""] {
            assert!(
                c.argv(&args(&[("who", bad)])).is_err(),
                "{bad:?} must be refused"
            );
        }
        let open = &Commands::parse(
            r#"{"commands": [{"name": "say", "argv": ["/bin/echo", "{text}"],
                "args": {"text": {"pattern": ".*"}}, "timeout": "5s", "idempotency": "safe"}]}"#,
        )
        .unwrap()
        .0[0];
        // Allowed by a permissive pattern: still one argv element each.
        let (_, argv) = open.argv(&args(&[("text", "a; rm -rf / $(id)")])).unwrap();
        assert_eq!(argv, ["a; rm -rf / $(id)"]);
        let e = open.argv(&args(&[("text", "-n")])).unwrap_err();
        assert!(e.contains("starts with '-'"), "{e}");
        let e = open.argv(&args(&[("text", "x\ny")])).unwrap_err();
        assert!(e.contains("control character"), "{e}");
    }

    #[test]
    fn mistakes_in_the_file_are_refused_with_where_and_what() {
        let t = |argv: &str, args: &str| {
            format!(
                r#"{{"commands": [{{"name": "c", "argv": {argv}, "args": {args},
                    "timeout": "1s", "idempotency": "unsafe"}}]}}"#
            )
        };
        for (text, want) in [
            (t(r#"["echo"]"#, "{}"), "absolute path"),
            (
                t(r#"["/bin/{x}"]"#, r#"{"x": {"pattern": "a"}}"#),
                "absolute path",
            ),
            (t("[]", "{}"), "argv is empty"),
            (t(r#"["/bin/echo", "{x}"]"#, "{}"), "does not declare"),
            (
                t(r#"["/bin/echo"]"#, r#"{"x": {"pattern": "a"}}"#),
                "never uses it",
            ),
            (
                t(r#"["/bin/echo", "{x"]"#, r#"{"x": {"pattern": "a"}}"#),
                "never closes",
            ),
            (
                t(r#"["/bin/echo", "{x}"]"#, r#"{"x": {"pattern": "("}}"#),
                "pattern",
            ),
        ] {
            let e = Commands::parse(&text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
