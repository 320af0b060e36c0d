//! Typed template parameters: their declaration and the checking of a
//! caller's value against it.
//!
//! Values arrive as text (a CLI's `key=value`, a map on the wire); a list is
//! written comma-separated. Each rule a value breaks is reported with the
//! parameter's name and the rule, so the caller knows what to change.

use crate::Inventory;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The kinds of parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    String,
    Int,
    Enum,
    Duration,
    Bool,
    /// A site name present in the inventory.
    Site,
    /// A machine name present in the inventory.
    Machine,
    /// A comma-separated list of `items`.
    List,
}

impl Kind {
    /// The name a template writes it by.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Int => "int",
            Kind::Enum => "enum",
            Kind::Duration => "duration",
            Kind::Bool => "bool",
            Kind::Site => "site",
            Kind::Machine => "machine",
            Kind::List => "list",
        }
    }
}

/// A parameter as a template declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub kind: Option<Kind>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub desc: String,
    /// The value when the caller gives none; without one the parameter is
    /// required. Written as text (a list comma-separated).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalar"
    )]
    pub default: Option<String>,
    /// `string`: a regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `int`: inclusive bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// `enum`: the allowed values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// `list`: the declaration every item satisfies (not itself a list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<ParamSpec>>,
    /// `list`: bounds on the number of items (default 1..=1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_items: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<usize>,
}

/// A default written as a YAML/JSON scalar or sequence, kept as text.
fn scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    let v = serde_json::Value::deserialize(d)?;
    let one = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(D::Error::custom(format!(
            "a default is a string, number, boolean or a list of them, not {other}"
        ))),
    };
    match &v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Array(items) => Ok(Some(
            items
                .iter()
                .map(one)
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
        )),
        other => one(other).map(Some),
    }
}

/// A checked parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Int(i64),
    Bool(bool),
    Duration(Duration),
    List(Vec<Value>),
}

impl Value {
    /// The value as it is written into a request's text.
    pub fn render(&self) -> Result<String, String> {
        Ok(match self {
            Value::Text(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Duration(d) => humantime::format_duration(*d).to_string().replace(' ', ""),
            Value::List(_) => {
                return Err("is a list; a list can only be the items of a forEach".into());
            }
        })
    }
}

const MAX_ITEMS: usize = 1000;

impl ParamSpec {
    /// Problems with the declaration itself (`name` for the messages).
    pub fn problems(&self, name: &str, inside_list: bool) -> Vec<String> {
        let mut out = Vec::new();
        let p = |m: String| format!("parameter {name:?}: {m}");
        let Some(kind) = self.kind else {
            out.push(p(
                "has no type; give one of string, int, enum, duration, bool, site, machine, list"
                    .into(),
            ));
            return out;
        };
        let only = |field: &str, set: bool, kinds: &str, out: &mut Vec<String>| {
            if set {
                out.push(p(format!("{field} applies to {kinds} parameters only")));
            }
        };
        only(
            "pattern",
            self.pattern.is_some() && kind != Kind::String,
            "string",
            &mut out,
        );
        only(
            "min/max",
            (self.min.is_some() || self.max.is_some()) && kind != Kind::Int,
            "int",
            &mut out,
        );
        only(
            "values",
            !self.values.is_empty() && kind != Kind::Enum,
            "enum",
            &mut out,
        );
        only(
            "items/minItems/maxItems",
            (self.items.is_some() || self.min_items.is_some() || self.max_items.is_some())
                && kind != Kind::List,
            "list",
            &mut out,
        );
        if let Some(pat) = &self.pattern
            && let Err(e) = regex::Regex::new(pat)
        {
            out.push(p(format!(
                "pattern {pat:?} is not a valid regular expression: {e}"
            )));
        }
        if let (Some(lo), Some(hi)) = (self.min, self.max)
            && lo > hi
        {
            out.push(p(format!("min {lo} is above max {hi}")));
        }
        if kind == Kind::Enum && self.values.is_empty() {
            out.push(p("an enum needs its values".into()));
        }
        if kind == Kind::List {
            if inside_list {
                out.push(p("a list's items cannot be lists".into()));
            }
            match &self.items {
                None => out.push(p("a list needs items: the declaration of each item".into())),
                Some(item) => out.extend(item.problems(&format!("{name}[]"), true)),
            }
            if let (Some(lo), Some(hi)) = (self.min_items, self.max_items)
                && lo > hi
            {
                out.push(p(format!("minItems {lo} is above maxItems {hi}")));
            }
            if self.max_items.is_some_and(|m| m > MAX_ITEMS) {
                out.push(p(format!("maxItems is at most {MAX_ITEMS}")));
            }
        }
        if inside_list && self.default.is_some() {
            out.push(p(
                "an item has no default of its own; give the list one".into()
            ));
        }
        out
    }

    /// `text` checked against this declaration; every rule broken, each
    /// naming the parameter. Inventory checks need `inventory`; without one
    /// (a template checked before any instantiation) they are skipped.
    pub fn check(
        &self,
        name: &str,
        text: &str,
        inventory: Option<&dyn Inventory>,
    ) -> Result<Value, Vec<String>> {
        let bad = |rule: String| vec![format!("parameter {name:?}: {rule}")];
        let Some(kind) = self.kind else {
            return Err(bad("has no type".into()));
        };
        match kind {
            Kind::String => {
                if let Some(pat) = &self.pattern {
                    let whole = format!("^(?:{pat})$");
                    let re = regex::Regex::new(&whole).map_err(|e| bad(e.to_string()))?;
                    if !re.is_match(text) {
                        return Err(bad(format!("{text:?} does not match the pattern {pat:?}")));
                    }
                }
                Ok(Value::Text(text.to_string()))
            }
            Kind::Int => {
                let i: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("{text:?} is not an integer")))?;
                if let Some(lo) = self.min
                    && i < lo
                {
                    return Err(bad(format!("{i} is below the minimum {lo}")));
                }
                if let Some(hi) = self.max
                    && i > hi
                {
                    return Err(bad(format!("{i} is above the maximum {hi}")));
                }
                Ok(Value::Int(i))
            }
            Kind::Enum => {
                if self.values.iter().any(|v| v == text) {
                    Ok(Value::Text(text.to_string()))
                } else {
                    Err(bad(format!(
                        "{text:?} is not one of {}",
                        self.values.join(", ")
                    )))
                }
            }
            Kind::Duration => humantime::parse_duration(text.trim())
                .map(Value::Duration)
                .map_err(|e| {
                    bad(format!(
                        "{text:?} is not a duration such as 90s or 5m ({e})"
                    ))
                }),
            Kind::Bool => match text.trim() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(bad(format!("{text:?} is not true or false"))),
            },
            Kind::Site => match inventory {
                Some(inv) if !inv.site_exists(text) => {
                    let hint = interlock_core::did_you_mean(
                        text,
                        inv.site_names().iter().map(String::as_str),
                    )
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_default();
                    Err(bad(format!(
                        "{text:?} is not a site in the inventory{hint}"
                    )))
                }
                _ => Ok(Value::Text(text.to_string())),
            },
            Kind::Machine => match inventory {
                Some(inv) if !inv.machine_exists(text) => {
                    Err(bad(format!("{text:?} is not a machine in the inventory")))
                }
                _ => Ok(Value::Text(text.to_string())),
            },
            Kind::List => {
                let Some(item) = &self.items else {
                    return Err(bad("a list without items".into()));
                };
                let parts: Vec<&str> = if text.trim().is_empty() {
                    Vec::new()
                } else {
                    text.split(',').map(str::trim).collect()
                };
                let (lo, hi) = (
                    self.min_items.unwrap_or(1),
                    self.max_items.unwrap_or(MAX_ITEMS),
                );
                if parts.len() < lo {
                    return Err(bad(format!(
                        "has {} items; at least {lo} needed",
                        parts.len()
                    )));
                }
                if parts.len() > hi {
                    return Err(bad(format!(
                        "has {} items; at most {hi} allowed",
                        parts.len()
                    )));
                }
                let mut values = Vec::new();
                let mut errs = Vec::new();
                for (i, part) in parts.iter().enumerate() {
                    match item.check(&format!("{name}[{i}]"), part, inventory) {
                        Ok(v) => values.push(v),
                        Err(e) => errs.extend(e),
                    }
                }
                if errs.is_empty() {
                    Ok(Value::List(values))
                } else {
                    Err(errs)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ParamSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn each_rule_names_the_parameter_and_the_rule() {
        let int = spec("{type: int, min: 1, max: 20}");
        assert_eq!(int.check("rate", "5", None), Ok(Value::Int(5)));
        let e = int.check("rate", "80", None).unwrap_err();
        assert_eq!(e, ["parameter \"rate\": 80 is above the maximum 20"]);
        assert!(int.check("rate", "x", None).unwrap_err()[0].contains("not an integer"));

        let s = spec("{type: string, pattern: 'CHG[0-9]+'}");
        assert!(s.check("ticket", "CHG12", None).is_ok());
        // The whole value must match, not a part of it.
        let e = s.check("ticket", "xCHG12", None).unwrap_err();
        assert!(
            e[0].contains("\"ticket\"") && e[0].contains("does not match"),
            "{e:?}"
        );

        let en = spec("{type: enum, values: [quick, secure]}");
        assert!(
            en.check("mode", "slow", None).unwrap_err()[0].contains("not one of quick, secure")
        );
        let d = spec("{type: duration}");
        assert_eq!(
            d.check("wait", "90s", None),
            Ok(Value::Duration(Duration::from_secs(90)))
        );
        assert_eq!(
            Value::Duration(Duration::from_secs(5400)).render().unwrap(),
            "1h30m"
        );
        assert!(spec("{type: bool}").check("b", "yes", None).is_err());
    }

    #[test]
    fn lists_check_every_item() {
        let l = spec("{type: list, items: {type: int, max: 3}, maxItems: 3}");
        assert_eq!(
            l.check("n", "1, 2", None),
            Ok(Value::List(vec![Value::Int(1), Value::Int(2)]))
        );
        let e = l.check("n", "1,5,9", None).unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e[0].starts_with("parameter \"n[1]\""), "{e:?}");
        assert!(l.check("n", "", None).unwrap_err()[0].contains("at least 1"));
        assert!(l.check("n", "1,1,1,1", None).unwrap_err()[0].contains("at most 3"));
    }

    #[test]
    fn declarations_are_checked() {
        assert!(
            spec("{type: int, pattern: x}").problems("p", false)[0]
                .contains("string parameters only")
        );
        assert!(
            spec("{type: string, pattern: '('}").problems("p", false)[0].contains("not a valid")
        );
        assert!(spec("{type: enum}").problems("p", false)[0].contains("needs its values"));
        assert!(spec("{type: list}").problems("p", false)[0].contains("needs items"));
        assert!(
            spec("{type: list, items: {type: list, items: {type: int}}}").problems("p", false)[0]
                .contains("cannot be lists")
        );
        assert!(spec("{desc: x}").problems("p", false)[0].contains("has no type"));
        assert_eq!(
            spec("{type: list, items: {type: int}, default: [1, 2]}")
                .default
                .as_deref(),
            Some("1,2")
        );
    }
}
