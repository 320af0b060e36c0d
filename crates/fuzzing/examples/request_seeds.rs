//! Writes the protobuf seeds of the `work_req` corpus: every JSON seed of
//! `fuzz/corpus/work_req_json/` that is a WorkReq, encoded (`<stem>.pb`),
//! the first half of the sample's encoding, and hand-made malformed
//! encodings. Run after changing the JSON seeds:
//! `cargo run -p interlock-fuzzing --example request_seeds`.

use interlock_proto::v1;
use prost::Message;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let out = corpus.join("work_req");
    std::fs::create_dir_all(&out)?;
    let mut json: Vec<_> = std::fs::read_dir(corpus.join("work_req_json"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    json.sort();
    let write = |name: &str, bytes: &[u8]| {
        println!("{name}: {} bytes", bytes.len());
        std::fs::write(out.join(name), bytes)
    };
    for path in json {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(req) = serde_json::from_str::<v1::WorkReq>(&text) else {
            continue;
        };
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        write(&format!("{stem}.pb"), &req.encode_to_vec())?;
    }

    let sample =
        interlock_server::convert::work_req_to_wire(&interlock_fuzzing::fixtures::sample_request())
            .encode_to_vec();
    write("erase-aab-truncated.pb", &sample[..sample.len() / 2])?;
    // Field 99 (unknown, varint) before a valid request: skipped by decoders.
    let mut unknown = vec![0x98, 0x06, 0x2a];
    unknown.extend_from_slice(&sample);
    write("unknown-field.pb", &unknown)?;
    // Field 1 (name) as a length that runs past the end.
    write("length-past-end.pb", &[0x0a, 0xff, 0xff, 0xff, 0x0f, b'a'])?;
    // A varint longer than ten bytes.
    let overlong: Vec<u8> = [0x08].into_iter().chain([0xff; 11]).collect();
    write("overlong-varint.pb", &overlong)?;
    // Field 1 (name) with the wrong wire type (varint), then a group start.
    write("wrong-wire-type.pb", &[0x08, 0x01, 0x0b, 0x0c])?;
    // Field 1 (name) holding invalid UTF-8.
    write("invalid-utf8-name.pb", &[0x0a, 0x03, 0xff, 0xfe, b'a'])?;
    // One block of 1,000 empty jobs: cheap bytes, many values.
    let mut block = Vec::new();
    for _ in 0..1000 {
        block.extend_from_slice(&[0x1a, 0x00]);
    }
    let mut many = vec![0x0a, 0x01, b'x', 0x1a];
    prost::encoding::encode_varint(block.len() as u64, &mut many);
    many.extend_from_slice(&block);
    write("many-empty-jobs.pb", &many)?;
    // An empty block, then groups of unknown field 15 nested 200 deep.
    let mut deep = vec![0x1a, 0x00];
    deep.extend(std::iter::repeat_n(0x7b, 200));
    deep.extend(std::iter::repeat_n(0x7c, 200));
    write("deep-groups.pb", &deep)?;
    Ok(())
}
