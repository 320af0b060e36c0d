//! Generated code for the Interlock wire protocol.
//!
//! `interlock::v1` is the product's protocol; `diskerase` is the ancestor's
//! service path, served with the same messages. Messages implement serde
//! following the protobuf JSON mapping. Generated code is never edited by
//! hand: change the `.proto` files under `proto/` instead.
#![allow(clippy::all, missing_docs)]

pub mod codec;
pub mod inbound;
pub mod reply;

pub mod interlock {
    pub mod v1 {
        tonic::include_proto!("interlock.v1");
        include!(concat!(env!("OUT_DIR"), "/interlock.v1.serde.rs"));
    }
}

pub mod diskerase {
    tonic::include_proto!("diskerase");
}

/// The server's side of the two Workflow services (`interlock.v1` and the
/// ancestor's `diskerase`), over the messages above but those that hold
/// what a large workflow holds per job:
/// - `WorkReq` and `Job`, generated again here: a job's `args` are the
///   map's entries as sent (`job::ArgsEntry`, the same bytes), one small
///   vector per job instead of a B-tree node;
/// - `Block` is [`inbound::Block`], whose jobs are the domain's, each
///   converted as it is decoded;
/// - Status answers with [`reply::StatusReply`], encoded from the server's
///   record as it is sent.
///
/// Clients use the generated types above; the bytes are the same.
pub mod server {
    pub mod interlock {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/server/interlock.v1.rs"));
        }
    }
    pub use interlock::v1;
    pub mod diskerase {
        include!(concat!(env!("OUT_DIR"), "/server/diskerase.rs"));
    }
}

/// Encoded `FileDescriptorSet` of every Interlock proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

pub use interlock::v1;
/// Well-known types (Timestamp, Duration) as used by the generated messages.
pub use pbjson_types;
