//! Targets for WorkReq admission: a request as the server receives it
//! (protobuf) or as a client writes it (protobuf JSON), taken through the
//! checks Submit applies before anything is stored.
//!
//! The steps: decode, convert to the domain request
//! (`interlock_server::convert::work_req`), [`validate_structure`] against
//! the built-in job catalog and default [`Limits`], then admission by the
//! shipped `configs/policies.json`. Like the engine, admission runs whether
//! or not the structure is valid. A converted request written back in the
//! same encoding must decode and convert to the same request.

use crate::fixtures::{catalog, shipped_policies};
use interlock_core::{Limits, WorkReq, validate_structure};
use interlock_proto::{server, v1};
use interlock_server::convert;
use prost::Message;

/// Protobuf `interlock.v1.WorkReq` bytes, as a Submit carries them.
pub fn work_req(data: &[u8]) {
    let Ok(wire) = server::v1::WorkReq::decode(data) else {
        return;
    };
    let Some(req) = admit(wire) else {
        return;
    };
    let bytes = convert::work_req_to_wire(&req).encode_to_vec();
    let again = server::v1::WorkReq::decode(bytes.as_slice())
        .unwrap_or_else(|e| panic!("the canonical encoding of an accepted request fails: {e}"));
    let again = convert::work_req(again)
        .unwrap_or_else(|e| panic!("an accepted request re-encoded does not convert: {e}"));
    assert_eq!(again, req);
}

/// A WorkReq in the protobuf JSON mapping (as `interlock submit` reads
/// request files), deserialized through the generated pbjson impl.
pub fn work_req_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(wire) = serde_json::from_str::<v1::WorkReq>(text) else {
        return;
    };
    let Some(req) = admit(convert::from_client(&wire)) else {
        return;
    };
    let canonical = serde_json::to_string(&convert::work_req_to_wire(&req))
        .unwrap_or_else(|e| panic!("an accepted request does not serialize to JSON: {e}"));
    let again = serde_json::from_str::<v1::WorkReq>(&canonical).unwrap_or_else(|e| {
        panic!("the canonical JSON of an accepted request is refused: {e}\n{canonical}")
    });
    let again = convert::work_req(convert::from_client(&again))
        .unwrap_or_else(|e| panic!("an accepted request re-read does not convert: {e}"));
    assert_eq!(again, req);
}

/// Conversion, structural validation and policy admission; the domain
/// request when conversion accepted it.
fn admit(wire: server::v1::WorkReq) -> Option<WorkReq> {
    let req = convert::work_req(wire).ok()?;
    let _ = validate_structure(&req, catalog(), &Limits::default());
    let _ = shipped_policies().admit(&req);
    Some(req)
}
