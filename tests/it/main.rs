//! Black-box tests: the real server on 127.0.0.1:0, spoken to over gRPC.
//! One binary, one module per concern.

mod agree;
mod audit;
mod backup;
mod binary;
mod buckets;
mod compat;
mod config;
mod config_files;
mod crash;
mod dashboard;
mod deploy;
mod diskerase;
mod durable;
mod estop;
mod exec;
mod executor;
mod faults;
mod http;
mod ids;
mod lifecycle;
mod limits;
mod model;
mod notify;
mod observe;
mod overload;
mod policy;
mod replicas;
mod restart;
mod retention;
mod security;
mod submit;
mod upgrade;
mod watch;
mod web;
mod windows;
