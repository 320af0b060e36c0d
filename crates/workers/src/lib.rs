//! Remote job types: what the operator declares workers may serve
//! ([`decl`]), how attempts are leased to workers ([`dispatch`]), and the
//! runner that puts them beside the built-in jobs ([`Runners`]).
//!
//! This crate knows nothing about gRPC: the server's Worker service turns
//! a worker's stream into [`Dispatcher`] calls.

pub mod board;
pub mod decl;
pub mod dispatch;
mod runner;

pub use board::{Board, BoardOpts};
pub use decl::{Declarations, JOBS, RemoteType};
pub use dispatch::{
    DispatchError, DispatchOpts, Dispatcher, SessionView, TaskResult, TaskSpec, ToWorker,
    WaitingView,
};
pub use runner::Runners;
