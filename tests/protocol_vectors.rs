//! The protocol test vectors in docs/protocol-vectors.json: each frame's
//! bytes are what encoding its meaning gives, and decoding them gives the
//! meaning back. The Python tests check the same file.
//!
//! After a deliberate change to the format: `cargo test --test
//! protocol_vectors -- --ignored regenerate` rewrites the frames; review the
//! diff against docs/protocol.md.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use weir::protocol::{
    decode, encode, Frame, Hello, HelloReply, Opcode, WireBatch, WireBatch2, WireCheck, WireCheck2,
    WireDecision, WireDecision2, WireError, WireRelease, WireSettle, WireSettled,
};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol-vectors.json");

fn vectors() -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap()
}

fn body_bytes(kind: &str, body: &Value) -> Vec<u8> {
    fn typed<T: DeserializeOwned + bincode::Encode>(body: &Value) -> Vec<u8> {
        encode(&serde_json::from_value::<T>(body.clone()).unwrap())
    }
    match kind {
        "empty" => Vec::new(),
        "Hello" => typed::<Hello>(body),
        "HelloReply" => typed::<HelloReply>(body),
        "WireCheck" => typed::<WireCheck>(body),
        "WireChecks" => typed::<Vec<WireCheck>>(body),
        "WireDecision" => typed::<WireDecision>(body),
        "WireBatch" => typed::<WireBatch>(body),
        "WireError" => typed::<WireError>(body),
        "WireCheck2" => typed::<WireCheck2>(body),
        "WireChecks2" => typed::<Vec<WireCheck2>>(body),
        "WireDecision2" => typed::<WireDecision2>(body),
        "WireBatch2" => typed::<WireBatch2>(body),
        "WireRelease" => typed::<WireRelease>(body),
        "WireSettle" => typed::<WireSettle>(body),
        "WireSettled" => typed::<WireSettled>(body),
        other => panic!("unknown vector type {other}"),
    }
}

fn body_meaning(kind: &str, bytes: &[u8]) -> Value {
    fn typed<T: Serialize + bincode::Decode<()>>(bytes: &[u8]) -> Value {
        serde_json::to_value(decode::<T>(bytes).unwrap()).unwrap()
    }
    match kind {
        "empty" => {
            assert!(bytes.is_empty());
            Value::Null
        }
        "Hello" => typed::<Hello>(bytes),
        "HelloReply" => typed::<HelloReply>(bytes),
        "WireCheck" => typed::<WireCheck>(bytes),
        "WireChecks" => typed::<Vec<WireCheck>>(bytes),
        "WireDecision" => typed::<WireDecision>(bytes),
        "WireBatch" => typed::<WireBatch>(bytes),
        "WireError" => typed::<WireError>(bytes),
        "WireCheck2" => typed::<WireCheck2>(bytes),
        "WireChecks2" => typed::<Vec<WireCheck2>>(bytes),
        "WireDecision2" => typed::<WireDecision2>(bytes),
        "WireBatch2" => typed::<WireBatch2>(bytes),
        "WireRelease" => typed::<WireRelease>(bytes),
        "WireSettle" => typed::<WireSettle>(bytes),
        "WireSettled" => typed::<WireSettled>(bytes),
        other => panic!("unknown vector type {other}"),
    }
}

fn frame_of(vector: &Value) -> Vec<u8> {
    let opcode = Opcode::from_byte(vector["opcode"].as_u64().unwrap() as u8).unwrap();
    let kind = vector["type"].as_str().unwrap();
    Frame {
        // Vectors without a version are version 1's.
        version: vector["version"].as_u64().unwrap_or(1) as u8,
        opcode,
        request_id: vector["request_id"].as_u64().unwrap(),
        body: body_bytes(kind, &vector["body"]),
    }
    .to_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_vector_encodes_to_its_frame_and_decodes_to_its_meaning() {
    let vectors = vectors();
    assert!(vectors.len() >= 10);
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let expected = vector["frame"].as_str().unwrap();
        assert_eq!(hex(&frame_of(&vector)), expected, "{name}: encoding");
        let bytes = unhex(expected);
        let frame = Frame::parse(&bytes[4..]).unwrap();
        assert_eq!(frame.opcode as u64, vector["opcode"].as_u64().unwrap(), "{name}");
        assert_eq!(
            frame.version as u64,
            vector["version"].as_u64().unwrap_or(1),
            "{name}"
        );
        assert_eq!(frame.request_id, vector["request_id"].as_u64().unwrap(), "{name}");
        assert_eq!(
            body_meaning(vector["type"].as_str().unwrap(), &frame.body),
            vector["body"],
            "{name}: decoding"
        );
    }
}

#[test]
fn the_ping_frame_is_the_one_docs_protocol_md_spells_out() {
    let ping = &vectors()[0];
    assert_eq!(ping["frame"], "0c000000575201060100000000000000");
}

#[test]
#[ignore = "rewrites docs/protocol-vectors.json; run after a deliberate format change"]
fn regenerate() {
    let mut vectors = vectors();
    for vector in &mut vectors {
        vector["frame"] = Value::String(hex(&frame_of(vector)));
    }
    let mut text = String::from("[\n");
    for (i, vector) in vectors.iter().enumerate() {
        let separator = if i + 1 < vectors.len() { "," } else { "" };
        text.push_str(&format!(
            "  {}{separator}\n",
            serde_json::to_string(vector).unwrap()
        ));
    }
    text.push_str("]\n");
    std::fs::write(PATH, text).unwrap();
}
