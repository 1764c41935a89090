//! The dag-pb codec against ipld/codec-fixtures: positive blocks round-trip byte for byte and
//! hash to the CID in their file name; negative fixtures are refused by the decoder or by the
//! data-model validator.

use std::path::PathBuf;

use bytes::Bytes;
use cairn_merkle::dagpb_json::DagPbFormError;
use cairn_merkle::hash::{CidFormat, HashAlg, DAG_PB};
use cairn_merkle::links::links;
use cairn_merkle::{Cid, PbNode};
use serde_json::Value;

fn codec_fixtures() -> PathBuf {
    crate::fixtures().join("codec-fixtures")
}

/// Every `<CID>.dag-pb` under `fixtures/*/`: (CID text, bytes, folder).
fn positive_fixtures() -> Vec<(String, Bytes, String)> {
    let mut out = Vec::new();
    let root = codec_fixtures().join("fixtures");
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "dag-pb") {
                let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
                let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
                out.push((stem, Bytes::from(std::fs::read(&f).unwrap()), folder));
            }
        }
    }
    out.sort();
    out
}

fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn negative(rel: &str) -> Vec<Value> {
    let path = codec_fixtures().join("negative-fixtures/dag-pb").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match serde_json::from_str(&text).unwrap() {
        Value::Array(cases) => cases,
        other => panic!("{rel} is not a list: {other}"),
    }
}

#[test]
fn positive_dag_pb_fixtures_round_trip_and_hash_to_their_name() {
    let fixtures = positive_fixtures();
    assert!(fixtures.len() >= 17, "found only {} dag-pb fixtures", fixtures.len());
    for (name, bytes, folder) in fixtures {
        let node = PbNode::decode(&bytes).unwrap_or_else(|e| panic!("{folder}/{name}: {e}"));
        assert_eq!(node.encode(), bytes.to_vec(), "{folder}/{name}: re-encoding differs");
        assert_eq!(node.encoded_len(), bytes.len(), "{folder}/{name}");
        let cid = CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(DAG_PB, &bytes);
        assert_eq!(cid.to_string(), name, "{folder}: CID of the bytes");
        // the links module sees the same links as the decoder
        let expected: Vec<Cid> = node.links.iter().map(|l| l.cid).collect();
        assert_eq!(links(&cid, &bytes).unwrap(), expected, "{folder}/{name}");
    }
}

/// The folders' names promise their shape; check a few that the decoder must get right.
#[test]
fn positive_fixtures_have_the_shape_their_folder_names() {
    for (name, bytes, folder) in positive_fixtures() {
        let node = PbNode::decode(&bytes).unwrap();
        let (links, data) = (node.links.len(), node.data.as_ref().map(|d| d.len()));
        match folder.as_str() {
            "dagpb_empty" => assert_eq!((links, data), (0, None), "{name}"),
            "dagpb_Data_zero" => assert_eq!((links, data), (0, Some(0)), "{name}"),
            "dagpb_Data_some" => assert_eq!((links, data), (0, Some(5)), "{name}"),
            "dagpb_1link" => assert_eq!((links, data), (1, None), "{name}"),
            "dagpb_2link+data" => assert_eq!(links, 2, "{name}"),
            "dagpb_4namedlinks+data" => {
                assert_eq!(links, 4, "{name}");
                assert!(node.links.iter().all(|l| !l.name().is_empty()));
            }
            "dagpb_7unnamedlinks+data" => assert_eq!(links, 7, "{name}"),
            "dagpb_11unnamedlinks+data" => assert_eq!(links, 11, "{name}"),
            "dagpb_Links_Hash_some_Name_zero" => {
                assert_eq!(node.links[0].name.as_deref(), Some(""))
            }
            "dagpb_Links_Hash_some_Name_some" => {
                assert_eq!(node.links[0].name.as_deref(), Some("some name"))
            }
            "dagpb_Links_Hash_some_Tsize_zero" => assert_eq!(node.links[0].tsize, Some(0)),
            "dagpb_Links_Hash_some_Tsize_some" => {
                assert_eq!(node.links[0].tsize, Some((1 << 53) - 1))
            }
            "dagpb_Links_Hash_some" => {
                assert_eq!((node.links[0].name.as_ref(), node.links[0].tsize), (None, None));
            }
            _ => {}
        }
    }
}

#[test]
fn negative_decode_fixtures_are_refused() {
    let cases = negative("decode/edges.json");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let hex = case["hex"].as_str().unwrap_or_else(|| panic!("{name}: no hex"));
        let bytes = Bytes::from(hex_decode(hex));
        assert!(PbNode::decode(&bytes).is_err(), "{name}: {hex} decoded");
    }
}

#[test]
fn negative_encode_fixtures_are_refused_by_the_form_check() {
    let mut seen = 0;
    for file in ["encode/basic-datamodel-kinds.json", "encode/invalid-forms.json"] {
        for case in negative(file) {
            let name = case["name"].as_str().unwrap();
            let form = &case["dag-json"];
            let expected = case["error"].as_str().unwrap();
            let err = PbNode::from_dag_json(form).expect_err(name);
            // Same reason as the reference implementation (ours adds the link index).
            assert!(err.to_string().starts_with(expected), "{file} {name}: {err} vs {expected}");
            seen += 1;
        }
    }
    assert!(seen >= 60, "only {seen} negative encode cases");
}

/// No `.dag-json` twins ship with these dag-pb fixtures, so each positive fixture's
/// data-model form is produced here, checked against the form check, and converted back.
#[test]
fn positive_fixtures_pass_the_form_check_and_convert_back() {
    for (name, bytes, folder) in positive_fixtures() {
        let node = PbNode::decode(&bytes).unwrap();
        let form = node.to_dag_json();
        // go through text, as a .dag-json file would
        let text = serde_json::to_string(&form).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let back = PbNode::from_dag_json(&parsed).unwrap_or_else(|e| panic!("{folder}/{name}: {e}"));
        assert_eq!(back, node, "{folder}/{name}");
        assert_eq!(back.encode(), bytes.to_vec(), "{folder}/{name}");
        // Any twin file that does exist must agree.
        let twin = codec_fixtures().join("fixtures").join(&folder).join(format!("{name}.dag-json"));
        if let Ok(text) = std::fs::read_to_string(twin) {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(PbNode::from_dag_json(&v).unwrap(), node, "{folder}/{name}.dag-json");
        }
    }
}

#[test]
fn form_check_details() {
    let h = serde_json::json!({"/": "QmNPWHBrVQiiV8FpyNuEPhB9E2rbvdy9Yx79EY1EJuyf9o"});
    // equal names keep their order; a missing name sorts as ""
    let ok = serde_json::json!({"Links": [{"Hash": h}, {"Hash": h, "Name": ""}, {"Hash": h, "Name": "a"}, {"Hash": h, "Name": "a"}]});
    assert_eq!(PbNode::from_dag_json(&ok).unwrap().links.len(), 4);
    let bad = serde_json::json!({"Links": [{"Hash": h, "Name": "a"}, {"Hash": h}]});
    assert_eq!(PbNode::from_dag_json(&bad), Err(DagPbFormError::Unsorted(1)));
    let bad = serde_json::json!({"Links": [{"Hash": {"/": "not a cid"}}]});
    assert_eq!(PbNode::from_dag_json(&bad), Err(DagPbFormError::HashNotACid(0)));
    let bad = serde_json::json!({"Data": {"/": {"bytes": "!!"}}, "Links": []});
    assert_eq!(PbNode::from_dag_json(&bad), Err(DagPbFormError::DataNotBytes));
}
