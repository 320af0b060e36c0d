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
use std::sync::Arc;

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
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: interlock_core::RecordsError,
    },
    /// The same site, or the same machine at one site, is listed twice. Which
    /// entry wins must not depend on file order: fix the file.
    #[error("{path}: {what} is listed twice (entries {first} and {second}); remove one")]
    Duplicate {
        path: String,
        what: String,
        first: usize,
        second: usize,
    },
}

/// The loaded inventory. A machine is identified by its site and its name,
/// as job arguments name it: the ancestor's data reuses machine names
/// (`aa00`…) in every site.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    sites: HashMap<String, Site>,
    machines: HashMap<(String, String), Machine>,
}

impl Inventory {
    /// Loads `sites.json` and `machines.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let sites_path = dir.join("sites.json");
        let machines_path = dir.join("machines.json");
        let sites: Vec<Site> = read_records(&sites_path)?;
        let machines: Vec<Machine> = read_records(&machines_path)?;
        Self::from_records(sites, machines).map_err(|e| match e {
            Error::Duplicate {
                path,
                what,
                first,
                second,
            } => Error::Duplicate {
                path: if path == "sites" {
                    sites_path.display().to_string()
                } else {
                    machines_path.display().to_string()
                },
                what,
                first,
                second,
            },
            other => other,
        })
    }

    /// Parses the text of `sites.json` and `machines.json` (one object per
    /// line, or an array) and checks it as an import must be: no repeats,
    /// every site's type and status known, every machine at a listed site.
    pub fn parse_import(sites: &str, machines: &str) -> Result<Self, String> {
        let sites: Vec<Site> =
            interlock_core::parse_records(sites).map_err(|e| format!("sites: {e}"))?;
        let machines: Vec<Machine> =
            interlock_core::parse_records(machines).map_err(|e| format!("machines: {e}"))?;
        let inv = Self::from_records(sites, machines).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        for s in inv.sites() {
            if !KINDS.contains(&s.kind.as_str()) {
                problems.push(format!(
                    "site {:?} has type {:?}; the types are {}",
                    s.name,
                    s.kind,
                    KINDS.join(", ")
                ));
            }
            if !STATUSES.contains(&s.status.as_str()) {
                problems.push(format!(
                    "site {:?} has status {:?}; the statuses are {}",
                    s.name,
                    s.status,
                    STATUSES.join(", ")
                ));
            }
        }
        for m in inv.machines() {
            if inv.site(&m.site).is_none() {
                problems.push(format!(
                    "machine {:?} is at site {:?}, which is not listed",
                    m.name, m.site
                ));
            }
        }
        if inv.sites.is_empty() {
            problems.push(
                "no sites: an empty inventory would refuse every erase; import a real one".into(),
            );
        }
        problems.truncate(20);
        if problems.is_empty() {
            Ok(inv)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Every machine, by site then name.
    pub fn machines(&self) -> Vec<&Machine> {
        let mut v: Vec<_> = self.machines.values().collect();
        v.sort_by(|a, b| (&a.site, &a.name).cmp(&(&b.site, &b.name)));
        v
    }

    /// Builds an inventory; refuses a site listed twice or a (site, machine)
    /// pair listed twice (`path` in the error is "sites" or "machines").
    pub fn from_records(sites: Vec<Site>, machines: Vec<Machine>) -> Result<Self, Error> {
        let mut by_name = HashMap::with_capacity(sites.len());
        let mut first = HashMap::new();
        for (i, s) in sites.into_iter().enumerate() {
            if let Some(f) = first.insert(s.name.clone(), i) {
                return Err(Error::Duplicate {
                    path: "sites".into(),
                    what: format!("site {:?}", s.name),
                    first: f,
                    second: i,
                });
            }
            by_name.insert(s.name.clone(), s);
        }
        let mut by_key = HashMap::with_capacity(machines.len());
        let mut first = HashMap::new();
        for (i, m) in machines.into_iter().enumerate() {
            let key = (m.site.clone(), m.name.clone());
            if let Some(f) = first.insert(key.clone(), i) {
                return Err(Error::Duplicate {
                    path: "machines".into(),
                    what: format!("machine {:?} of site {:?}", m.name, m.site),
                    first: f,
                    second: i,
                });
            }
            by_key.insert(key, m);
        }
        Ok(Self {
            sites: by_name,
            machines: by_key,
        })
    }

    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.get(name)
    }

    /// The machine named `name` at `site`.
    pub fn machine(&self, site: &str, name: &str) -> Option<&Machine> {
        self.machines.get(&(site.to_string(), name.to_string()))
    }

    /// Sites that have a machine named `name` (to explain a wrong site).
    pub fn sites_with_machine(&self, name: &str) -> Vec<&str> {
        let mut v: Vec<_> = self
            .machines
            .values()
            .filter(|m| m.name == name)
            .map(|m| m.site.as_str())
            .collect();
        v.sort_unstable();
        v
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

/// The site statuses the inventory knows.
pub const STATUSES: [&str; 3] = ["decom", "inService", "removed"];
/// The site types the inventory knows.
pub const KINDS: [&str; 2] = ["satellite", "cluster"];

/// The inventory in force while the server runs: replaced as a whole when
/// the store's copy changes, so a reader sees one version throughout.
#[derive(Debug, Default)]
pub struct LiveInventory(std::sync::RwLock<Arc<Inventory>>);

impl LiveInventory {
    pub fn new(inv: Inventory) -> Arc<Self> {
        Arc::new(Self(std::sync::RwLock::new(Arc::new(inv))))
    }

    /// The inventory now.
    pub fn current(&self) -> Arc<Inventory> {
        self.0.read().expect("inventory lock").clone()
    }

    pub fn replace(&self, inv: Inventory) {
        *self.0.write().expect("inventory lock") = Arc::new(inv);
    }
}

impl interlock_templates::Inventory for LiveInventory {
    fn site_exists(&self, site: &str) -> bool {
        self.current().site_exists(site)
    }
    fn machine_exists(&self, machine: &str) -> bool {
        self.current().machine_exists(machine)
    }
    fn machines_of(&self, site: &str) -> Option<Vec<String>> {
        self.current().machines_of(site)
    }
    fn site_names(&self) -> Vec<String> {
        self.current().site_names()
    }
}

/// What templates check parameter values against and fan out over.
impl interlock_templates::Inventory for Inventory {
    fn site_exists(&self, site: &str) -> bool {
        self.sites.contains_key(site)
    }

    fn machine_exists(&self, machine: &str) -> bool {
        self.machines.values().any(|m| m.name == machine)
    }

    fn machines_of(&self, site: &str) -> Option<Vec<String>> {
        self.site(site)?;
        Some(
            self.machines_at(site)
                .into_iter()
                .map(|m| m.name.clone())
                .collect(),
        )
    }

    fn site_names(&self) -> Vec<String> {
        self.sites().into_iter().map(|s| s.name.clone()).collect()
    }
}

fn read_records<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    interlock_core::parse_records(&text).map_err(|source| Error::Parse {
        path: path.display().to_string(),
        source,
    })
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
        assert!(inv.machine("aab", "aab03").is_some());
        let kinds: std::collections::HashSet<_> = inv
            .sites()
            .iter()
            .map(|s| (s.kind.clone(), s.status.clone()))
            .collect();
        assert_eq!(kinds.len(), 6, "every type × status combination exists");
        assert_eq!(inv.site("aab").unwrap().status, "decom");
        assert_eq!(inv.machines_at("aab").len(), 8);
    }

    fn m(site: &str, name: &str) -> Machine {
        Machine {
            name: name.into(),
            site: site.into(),
        }
    }

    fn site(name: &str) -> Site {
        Site {
            name: name.into(),
            kind: "satellite".into(),
            status: "decom".into(),
        }
    }

    #[test]
    fn machines_are_identified_by_site_and_name() {
        // The ancestor's shape: the same machine names in every site.
        let inv = Inventory::from_records(
            vec![site("aap"), site("adv")],
            vec![m("aap", "aa00"), m("adv", "aa00"), m("aap", "aa01")],
        )
        .unwrap();
        assert_eq!(inv.machine("aap", "aa00").unwrap().site, "aap");
        assert_eq!(inv.machine("adv", "aa00").unwrap().site, "adv");
        assert!(inv.machine("adv", "aa01").is_none());
        assert_eq!(inv.sites_with_machine("aa00"), ["aap", "adv"]);
        assert_eq!(inv.machines_at("aap").len(), 2);
    }

    #[test]
    fn a_repeated_pair_or_site_is_refused_not_resolved_by_order() {
        let e = Inventory::from_records(
            vec![site("aap")],
            vec![m("aap", "aa00"), m("aap", "aa01"), m("aap", "aa00")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("machine \"aa00\" of site \"aap\" is listed twice (entries 0 and 2)"),
            "{e}"
        );
        let e = Inventory::from_records(vec![site("aap"), site("aap")], vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("site \"aap\" is listed twice"), "{e}");
    }

    #[test]
    fn a_duplicate_in_a_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sites.json"), to_lines(&[site("aap")])).unwrap();
        std::fs::write(
            dir.path().join("machines.json"),
            to_lines(&[m("aap", "aa00"), m("aap", "aa00")]),
        )
        .unwrap();
        let e = Inventory::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("machines.json") && e.contains("listed twice"),
            "{e}"
        );
        std::fs::write(dir.path().join("machines.json"), "").unwrap();
        let e = Inventory::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
