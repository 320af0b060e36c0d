//! Workflow templates: a named WorkReq shape with typed parameters, made
//! concrete at instantiation.
//!
//! - [`text`]: the one reference syntax, `{{name}}`, parsed once; values are
//!   inserted as data, never re-parsed (a value `{{x}}` stays those
//!   characters), and nothing is evaluated.
//! - [`param`]: parameter kinds (string with pattern, int with range, enum,
//!   duration, bool, site, machine, lists of these) and the check of a value.
//! - [`document`]: the template file (YAML or JSON, the WorkReq's own field
//!   names plus `params` and `forEach`) and every check that needs no values.
//! - [`expand`]: values + inventory → a WorkReq, with fan-out counts.
//!
//! Invariant: pure. The inventory comes in through [`Inventory`]; storage,
//! revisions and the checks a WorkReq gets (structure, policies, e-stop)
//! belong to the caller, which must run them on every expansion.
#![forbid(unsafe_code)]

pub mod document;
pub mod expand;
pub mod param;
pub mod text;

pub use document::{Document, Invalid, Template, valid_template_name};
pub use expand::{Expansion, FanOut};
pub use param::{Kind, ParamSpec, Value};

/// The sites and machines instantiation checks values against and fans
/// out over.
pub trait Inventory: Send + Sync {
    fn site_exists(&self, site: &str) -> bool;
    fn machine_exists(&self, machine: &str) -> bool;
    /// The machines of `site` by name, in a stable order; `None` when the
    /// site is unknown.
    fn machines_of(&self, site: &str) -> Option<Vec<String>>;
    /// Every site name (for "did you mean").
    fn site_names(&self) -> Vec<String>;
}

#[cfg(test)]
mod tests;
