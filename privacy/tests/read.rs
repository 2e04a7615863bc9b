//! Reading real source files: CSV quoting and line numbers, JSON Lines, refusals of
//! malformed lines, and file discovery.

use std::fs;

use persona_privacy::{Read, Source};

fn source(format: &str, extra: &str) -> Source {
    Source::from_yaml(&format!(
        "kind: Source\nmetadata: {{name: src}}\nspec:\n  format: {format}\n  event: e\n{extra}  time: {{value: \"2026-01-01T00:00:00Z\"}}\n  fields:\n    id: key\n    note: {{attr: note}}\n"
    ))
    .unwrap()
}

/// Each item as (line, the `note` attribute or the refusal reason).
fn lines_of(items: Vec<Read>) -> Vec<(u64, Result<Option<String>, String>)> {
    items
        .into_iter()
        .map(|r| match r {
            Read::Record(rec) => {
                let s = source("csv", "");
                let note = s.scrub(&rec).map(|s| s.attrs.get("note").map(|v| v.to_key()));
                (rec.line(), Ok(note.ok().flatten()))
            }
            Read::Refused { line, refusal } => (line, Err(refusal.reason)),
        })
        .collect()
}

#[test]
fn csv_lines_are_physical_and_quoting_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.csv");
    fs::write(
        &path,
        "id,note\n1,plain\n2,\"two\nlines, quoted\"\n3\n4,\"say \"\"hi\"\"\"\n5,a,extra\n",
    )
    .unwrap();
    let s = source("csv", "");
    let items: Vec<Read> = s.read(&path, "src.csv").unwrap().map(Result::unwrap).collect();
    let got = lines_of(items);
    let note = |v: &str| Ok(Some(v.to_owned()));
    assert_eq!(got[0], (2, note("plain")));
    assert_eq!(got[1], (3, note("two\nlines, quoted")));
    assert_eq!(got[2], (5, Err("record has 1 fields, the header has 2".to_owned())));
    assert_eq!(got[3], (6, note("say \"hi\"")));
    assert_eq!(got[4], (7, Err("record has 3 fields, the header has 2".to_owned())));
    assert_eq!(got.len(), 5);
}

#[test]
fn csv_lines_stay_physical_with_crlf_and_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let body = "id,note\n1,plain\n2,\"two\nlines\"\n3\n4,last\n";
    for (name, bytes) in [
        ("crlf", body.replace('\n', "\r\n").into_bytes()),
        ("bom", [b"\xef\xbb\xbf".as_slice(), body.as_bytes()].concat()),
        (
            "bom-crlf",
            [b"\xef\xbb\xbf".as_slice(), body.replace('\n', "\r\n").as_bytes()].concat(),
        ),
    ] {
        let path = dir.path().join(format!("{name}.csv"));
        fs::write(&path, bytes).unwrap();
        let s = source("csv", "");
        let items: Vec<Read> = s.read(&path, "x.csv").unwrap().map(Result::unwrap).collect();
        let lines: Vec<u64> = lines_of(items).iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![2, 3, 5, 6], "{name}");
    }
}

#[test]
fn jsonl_lines_objects_and_literal_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.jsonl");
    fs::write(
        &path,
        "{\"id\": \"1\", \"note\": \"a\", \"merchant.mall\": \"Phoenix\"}\n\n{\"id\": 2, \"note\": {\"x\": [1]}}\n{bad json\n[1,2]\n{\"id\": \"5\", \"note\": null}\n",
    )
    .unwrap();
    let s = source("jsonl", "");
    let items: Vec<Read> = s.read(&path, "src.jsonl").unwrap().map(Result::unwrap).collect();
    match &items[0] {
        Read::Record(rec) => assert!(rec.names().any(|n| n == "merchant.mall")),
        other => panic!("{other:?}"),
    }
    let got = lines_of(items);
    assert_eq!(got[0].0, 1);
    assert_eq!(got[1], (3, Ok(Some("{\"x\":[1]}".to_owned()))));
    assert_eq!(got[2].0, 4);
    assert!(got[2].1.as_ref().unwrap_err().starts_with("invalid json at column"));
    assert!(!got[2].1.as_ref().unwrap_err().contains("bad"));
    assert_eq!(got[3], (5, Err("json line is not an object".to_owned())));
    assert_eq!(got[4], (6, Ok(None)));
}

#[test]
fn files_follow_the_pattern_sorted() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["txn-2.csv", "txn-1.csv", "other.csv", "txn-10.csv"] {
        fs::write(dir.path().join(name), "id,note\n").unwrap();
    }
    fs::create_dir(dir.path().join("txn-dir.csv")).unwrap();
    let s = source("csv", "  files: \"txn-*.csv\"\n");
    let names: Vec<String> = s
        .files(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["txn-1.csv", "txn-10.csv", "txn-2.csv"]);
    let s = source("csv", "");
    assert!(s.files(dir.path()).unwrap().is_empty());
    assert!(s.read(&dir.path().join("src.csv"), "src.csv").is_err());
}

#[test]
fn jsonl_numbers_keep_their_text_and_a_bom_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.jsonl");
    let body = "\u{feff}{\"id\": 100000000000000000001, \"note\": 1.10}\n{\"id\": 100000000000000000002, \"note\": \"x\\\"y\"}\n";
    fs::write(&path, body).unwrap();
    let s = source("jsonl", "");
    let items: Vec<Read> = s.read(&path, "src.jsonl").unwrap().map(Result::unwrap).collect();
    let keys: Vec<String> = items
        .iter()
        .map(|r| match r {
            Read::Record(rec) => s
                .scrub(rec)
                .unwrap()
                .key
                .expect("a keyed source")
                .expose_secret()
                .to_owned(),
            Read::Refused { refusal, .. } => panic!("refused: {}", refusal.reason),
        })
        .collect();
    assert_eq!(keys, vec!["100000000000000000001", "100000000000000000002"]);
    assert_eq!(lines_of(items).iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn a_duplicated_csv_column_refuses_the_records_and_a_stray_quote_names_its_span() {
    let dir = tempfile::tempdir().unwrap();
    let dup = dir.path().join("dup.csv");
    fs::write(&dup, "id,note,note\n1,a,b\n").unwrap();
    let s = source("csv", "");
    let got = lines_of(s.read(&dup, "dup.csv").unwrap().map(Result::unwrap).collect());
    assert_eq!(got, vec![(2, Err("the header names column `note` twice".to_owned()))]);

    let stray = dir.path().join("stray.csv");
    fs::write(&stray, "id,note\n1,\"open\n2,b\n3,c\n").unwrap();
    let got = lines_of(s.read(&stray, "stray.csv").unwrap().map(Result::unwrap).collect());
    // The unclosed quote swallowed lines 3-4 into line 2's record.
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 2);
}
