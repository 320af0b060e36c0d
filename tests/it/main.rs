//! Black-box tests: the real server on 127.0.0.1:0, spoken to over gRPC.
//! One binary, one module per concern.

mod compat;
mod diskerase;
mod exec;
mod executor;
mod restart;
mod submit;
