//! One module per scenario; each returns rows for the report.

pub mod compare;
pub mod dashboard;
pub mod estop;
pub mod list;
pub mod overload;
pub mod reload;
pub mod replicas;
pub mod retention;
pub mod scale;
pub mod submit;
pub mod traced;
pub mod transitions;
pub mod workers;
pub mod workflows;
