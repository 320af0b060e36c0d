//! Generated code for the Interlock wire protocol.
//!
//! `interlock::v1` is the product's protocol; `diskerase` is the ancestor's
//! service path, served with the same messages. Messages implement serde
//! following the protobuf JSON mapping. Generated code is never edited by
//! hand: change the `.proto` files under `proto/` instead.
#![allow(clippy::all, missing_docs)]

pub mod codec;

pub mod interlock {
    pub mod v1 {
        tonic::include_proto!("interlock.v1");
        include!(concat!(env!("OUT_DIR"), "/interlock.v1.serde.rs"));
    }
}

pub mod diskerase {
    tonic::include_proto!("diskerase");
}

/// Encoded `FileDescriptorSet` of every Interlock proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

pub use interlock::v1;
/// Well-known types (Timestamp, Duration) as used by the generated messages.
pub use pbjson_types;
