//! Site and machine inventory, read from `sites.json` and `machines.json`.
//!
//! The files use the ancestor's line-delimited format, one JSON object per
//! line (`{"Name":"aaa","Type":"satellite","Status":"decom"}`,
//! `{"Name":"aaa00","Site":"aaa"}`); a JSON array of the same objects is also
//! accepted. This inventory stands in for the authoritative source a real
//! deployment would query. Loading validates every line and names the line
//! that is wrong; nothing is half-loaded.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    #[serde(rename = "Name")]
    pub name: String,
    /// `satellite` or `cluster`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `decom`, `inService` or `removed`.
    #[serde(rename = "Status")]
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Site")]
    pub site: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
}

/// The loaded inventory, indexed by name.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    sites: HashMap<String, Site>,
    machines: HashMap<String, Machine>,
}

impl Inventory {
    /// Loads `sites.json` and `machines.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let sites: Vec<Site> = read_records(&dir.join("sites.json"))?;
        let machines: Vec<Machine> = read_records(&dir.join("machines.json"))?;
        Ok(Self::from_records(sites, machines))
    }

    pub fn from_records(sites: Vec<Site>, machines: Vec<Machine>) -> Self {
        Self {
            sites: sites.into_iter().map(|s| (s.name.clone(), s)).collect(),
            machines: machines.into_iter().map(|m| (m.name.clone(), m)).collect(),
        }
    }

    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.get(name)
    }

    pub fn machine(&self, name: &str) -> Option<&Machine> {
        self.machines.get(name)
    }

    /// Machines at `site`, sorted by name.
    pub fn machines_at(&self, site: &str) -> Vec<&Machine> {
        let mut v: Vec<_> = self.machines.values().filter(|m| m.site == site).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// All sites, sorted by name.
    pub fn sites(&self) -> Vec<&Site> {
        let mut v: Vec<_> = self.sites.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

fn read_records<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_records(&text).map_err(|(line, message)| Error::Parse {
        path: path.display().to_string(),
        line,
        message,
    })
}

/// Parses a JSON array, or a stream of objects (one per line or concatenated).
/// The error carries the 1-based line where parsing failed.
pub fn parse_records<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<Vec<T>, (usize, String)> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).map_err(|e| (e.line(), e.to_string()));
    }
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
    loop {
        match stream.next() {
            None => return Ok(out),
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Err((e.line(), e.to_string())),
        }
    }
}

/// The deterministic inventory shipped in `data/`: 48 sites named `aaa`…,
/// satellites with 8 machines and clusters with 24, in every status.
pub fn generate() -> (Vec<Site>, Vec<Machine>) {
    let mut sites = Vec::new();
    let mut machines = Vec::new();
    for i in 0..48u32 {
        let name = site_name(i);
        // A fixed pattern rather than randomness: every (type, status)
        // combination appears, and the README can name examples.
        let kind = if i % 4 == 3 { "cluster" } else { "satellite" };
        let status = match i % 5 {
            0 | 3 => "inService",
            1 | 4 => "decom",
            _ => "removed",
        };
        let count = if kind == "satellite" { 8 } else { 24 };
        for m in 0..count {
            machines.push(Machine {
                name: format!("{name}{m:02}"),
                site: name.clone(),
            });
        }
        sites.push(Site {
            name,
            kind: kind.into(),
            status: status.into(),
        });
    }
    (sites, machines)
}

fn site_name(i: u32) -> String {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    let a = letters[(i / (26 * 26)) as usize % 26] as char;
    let b = letters[(i / 26) as usize % 26] as char;
    let c = letters[(i % 26) as usize] as char;
    format!("{a}{b}{c}")
}

/// Renders records in the line-delimited format, one object per line.
pub fn to_lines<T: Serialize>(records: &[T]) -> String {
    let mut s = String::new();
    for r in records {
        s.push_str(&serde_json::to_string(r).expect("plain records serialize"));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_files_match_the_generator() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (sites, machines) = generate();
        assert_eq!(
            std::fs::read_to_string(dir.join("sites.json")).unwrap(),
            to_lines(&sites),
            "data/sites.json is stale: run `cargo run -p interlock-inventory`"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("machines.json")).unwrap(),
            to_lines(&machines)
        );
        let inv = Inventory::load(dir).unwrap();
        let kinds: std::collections::HashSet<_> = inv
            .sites()
            .iter()
            .map(|s| (s.kind.clone(), s.status.clone()))
            .collect();
        assert_eq!(kinds.len(), 6, "every type × status combination exists");
        assert_eq!(inv.site("aab").unwrap().status, "decom");
        assert_eq!(inv.machines_at("aab").len(), 8);
    }

    #[test]
    fn concatenated_and_array_forms_parse_and_errors_name_the_line() {
        let a: Vec<Machine> =
            parse_records("{\"Name\":\"a\",\"Site\":\"s\"}{\"Name\":\"b\",\"Site\":\"s\"}")
                .unwrap();
        let b: Vec<Machine> = parse_records("[{\"Name\":\"a\",\"Site\":\"s\"}]").unwrap();
        assert_eq!((a.len(), b.len()), (2, 1));
        let e =
            parse_records::<Machine>("{\"Name\":\"a\",\"Site\":\"s\"}\n{\"Name\":").unwrap_err();
        assert_eq!(e.0, 2);
    }
}
