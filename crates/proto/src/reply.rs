//! The server's Status reply: a `StatusResp` whose blocks are encoded
//! late, by the server, straight from its own record of the workflow.
//!
//! Why: a `StatusResp` built whole holds every job as an owned message
//! (name, description, an argument map, timestamps, attempts): about
//! 660 bytes per job, 33 MB for a 50,000-job workflow, on top of the
//! record it is built from, all at once, before a byte is sent. Encoded
//! from the record, a job costs its bytes on the wire and nothing more.
//!
//! Invariants:
//! - The encoding is a valid `interlock.v1.StatusResp`: `head`'s fields,
//!   then the blocks as field 4 (protobuf readers accept fields in any
//!   order). Generated clients decode it as `StatusResp`, unchanged.
//! - `head.blocks` and the late blocks are both sent; the server leaves
//!   `head.blocks` empty when it supplies late blocks.
//! - Decoding a `StatusReply` puts every block into `head.blocks`.

use crate::v1;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};

/// Blocks (field 4 of `StatusResp`, keys included) that encode themselves.
pub trait EncodeBlocks: Send + Sync + 'static {
    /// Exactly the number of bytes [`EncodeBlocks::encode`] writes.
    fn encoded_len(&self) -> usize;
    /// Writes every block as field 4, in order.
    fn encode(&self, buf: &mut dyn BufMut);
}

/// A Status reply: `head` as built, then `blocks` encoded as it is sent.
#[derive(Default)]
pub struct StatusReply {
    pub head: v1::StatusResp,
    pub blocks: Option<Box<dyn EncodeBlocks>>,
}

impl StatusReply {
    /// The reply as the generated message, blocks included: for the
    /// callers that need one whole (JSON over HTTP, a watcher's
    /// snapshot). It goes through the encoding, so there is one mapping
    /// from a record to its status, not two.
    pub fn into_resp(self) -> Result<v1::StatusResp, prost::DecodeError> {
        if self.blocks.is_none() {
            return Ok(self.head);
        }
        prost::Message::decode(prost::Message::encode_to_vec(&self).as_slice())
    }
}

impl std::fmt::Debug for StatusReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusReply")
            .field("head", &self.head)
            .field(
                "late_blocks_bytes",
                &self.blocks.as_ref().map(|b| b.encoded_len()),
            )
            .finish()
    }
}

impl prost::Message for StatusReply {
    fn encode_raw(&self, mut buf: &mut impl BufMut) {
        self.head.encode_raw(buf);
        if let Some(b) = &self.blocks {
            b.encode(&mut buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.head.merge_field(tag, wire_type, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.head.encoded_len() + self.blocks.as_ref().map_or(0, |b| b.encoded_len())
    }

    fn clear(&mut self) {
        self.head.clear();
        self.blocks = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// Two blocks written by hand as field 4, after the head's fields.
    struct Two(Vec<v1::BlockStatus>);

    impl EncodeBlocks for Two {
        fn encoded_len(&self) -> usize {
            prost::encoding::message::encoded_len_repeated(4, &self.0)
        }
        fn encode(&self, mut buf: &mut dyn BufMut) {
            for b in &self.0 {
                prost::encoding::message::encode(4, b, &mut buf);
            }
        }
    }

    #[test]
    fn late_blocks_decode_as_the_generated_message() {
        let block = |desc: &str| v1::BlockStatus {
            desc: desc.into(),
            status: v1::Status::Running as i32,
            ..Default::default()
        };
        let head = v1::StatusResp {
            name: "erase".into(),
            id: "w1".into(),
            status: v1::Status::Running as i32,
            ..Default::default()
        };
        let reply = StatusReply {
            head: head.clone(),
            blocks: Some(Box::new(Two(vec![block("a"), block("b")]))),
        };
        let bytes = reply.encode_to_vec();
        assert_eq!(bytes.len(), reply.encoded_len());
        let whole = v1::StatusResp {
            blocks: vec![block("a"), block("b")],
            ..head
        };
        assert_eq!(v1::StatusResp::decode(bytes.as_slice()).unwrap(), whole);
        assert_eq!(reply.into_resp().unwrap(), whole);
        // And back: decoded as a reply, the blocks are in the head.
        let again = StatusReply::decode(bytes.as_slice()).unwrap();
        assert_eq!(again.head, whole);
    }
}
