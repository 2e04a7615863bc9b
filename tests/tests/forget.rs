//! The right to erasure end to end, through the `persona` binary on the kaveri bank
//! (tests/fixtures/kaveri), local KMS: `vault forget` makes the token unresolvable and
//! destroys her vault records at once, audited without her key; the next `persona
//! run` refuses her records (no new token) and has the cloud zone delete her state;
//! and neither a later run nor a restore of an older vault backup brings her back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use persona_tests::{jsonl, persona, persona_command, persona_unchecked, run_files};
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("kaveri")
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(data: &Path, out: &Path) -> (Value, Output) {
    let output = run_files(&fixture().join("specs"), &fixture().join("sources"), data, out, &[]);
    let summary = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    (summary, output)
}

/// Member id -> token, through the admin look-up of every token in features.jsonl.
fn members(data: &Path, out: &Path) -> BTreeMap<String, String> {
    let tokens: Vec<String> = jsonl(&out.join("features.jsonl"))
        .iter()
        .map(|f| f["token"].as_str().unwrap().to_owned())
        .collect();
    let mut args = vec!["vault", "resolve", "--data", s(data)];
    args.extend(tokens.iter().map(String::as_str));
    text(&persona(&args).stdout)
        .lines()
        .map(|l| {
            let (t, k) = l.split_once('\t').unwrap();
            (k.to_owned(), t.to_owned())
        })
        .collect()
}

fn resolve(data: &Path, token: &str) -> String {
    text(&persona(&["vault", "resolve", "--data", s(data), token]).stdout)
}

fn status(data: &Path) -> Value {
    serde_json::from_slice(&persona(&["vault", "status", "--data", s(data), "--json"]).stdout).unwrap()
}

/// Every entry of the shard's store that names `token` (key or value), read through
/// sled: what "the cloud zone holds her state" means.
fn cloud_mentions(data: &Path, token: &str) -> Vec<String> {
    let db = sled::Config::new()
        .path(data.join("cloud").join("shard-0"))
        .open()
        .unwrap();
    let needle = token.as_bytes();
    let has = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let mut found = Vec::new();
    for name in db.tree_names() {
        for entry in db.open_tree(&name).unwrap().iter() {
            let (k, v) = entry.unwrap();
            if has(&k) || has(&v) {
                found.push(format!("{}/{}", text(&name), text(&k)));
            }
        }
    }
    found
}

#[test]
fn a_forgotten_member_is_erased_in_both_zones_and_stays_forgotten() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (first, _) = run(&data, &tmp.path().join("out1"));
    assert_eq!(first["customers_forgotten"], 0);
    let member = members(&data, &tmp.path().join("out1"));
    let anna = member["M-001"].clone();
    assert_eq!(status(&data)["contacts"], 4, "M-001 has an email and a phone");
    assert!(!cloud_mentions(&data, &anna).is_empty(), "her actor's state is stored");
    let backup = tmp.path().join("before.backup");
    persona(&["vault", "backup", "--data", s(&data), "--to", s(&backup)]);

    // Trusted zone, at once: unresolvable, vault records destroyed, audited by token.
    let forgot = persona(&["vault", "forget", "--data", s(&data), "M-001"]);
    assert_eq!(text(&forgot.stdout), format!("{anna}\tforgotten\n"));
    let said = text(&forgot.stdout) + &text(&forgot.stderr);
    assert!(!said.contains("M-001"), "the key is not echoed: {said}");
    assert!(said.contains("at the next `persona run"), "{said}");
    assert_eq!(resolve(&data, &anna), format!("{anna}\t-\n"));
    assert_eq!(
        resolve(&data, &member["M-003"]),
        format!("{}\tM-003\n", member["M-003"])
    );
    let after = status(&data);
    assert_eq!(
        (&after["tokens"], &after["contacts"], &after["forgotten"]),
        (&json!(2), &json!(2), &json!(1))
    );
    let audit = std::fs::read_to_string(data.join("trusted/audit/admin.jsonl")).unwrap();
    let line: Value = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["action"] == "forget")
        .unwrap();
    assert_eq!(
        (&line["token"], &line["result"], &line["outcome"]),
        (&json!(anna), &json!("forgotten"), &json!("ok"))
    );
    let journal = std::fs::read_to_string(data.join("trusted/erasures/journal.jsonl")).unwrap();
    assert!(journal.contains(&anna));
    for file in [&audit, &journal] {
        for secret in ["M-001", "anna.weber", "4915112345678"] {
            assert!(!file.contains(secret), "{secret} in {file}");
        }
    }
    // The cloud zone is told by the next run, not before.
    assert!(!cloud_mentions(&data, &anna).is_empty());

    // The next run: her records are refused (no new token), her actor forgets.
    let out2 = tmp.path().join("out2");
    let (second, output) = run(&data, &out2);
    assert_eq!(second["customers_forgotten"], 1);
    assert_eq!(second["records_forgotten"], 4, "her profile and her three transactions");
    assert_eq!(second["tokens_issued"], 0);
    let refused: Vec<(String, u64, String)> = jsonl(&out2.join("dead_letter.jsonl"))
        .iter()
        .filter(|d| d["reason"].as_str().unwrap().contains("forgotten"))
        .map(|d| {
            (
                d["file"].as_str().unwrap().to_owned(),
                d["line"].as_u64().unwrap(),
                d["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("ledger.csv".to_owned(), 2, "Member".to_owned()),
            ("ledger.csv".to_owned(), 3, "Member".to_owned()),
            ("ledger.csv".to_owned(), 4, "Member".to_owned()),
            ("members.jsonl".to_owned(), 1, "memberId".to_owned()),
        ]
    );
    let features = jsonl(&out2.join("features.jsonl"));
    assert_eq!(features.len(), 2);
    assert!(features.iter().all(|f| f["token"] != anna.as_str()));
    for file in ["matches.jsonl", "features.jsonl", "audit.jsonl", "deliveries.jsonl"] {
        let content = std::fs::read_to_string(out2.join(file)).unwrap();
        assert!(
            !content.contains(&anna) && !content.contains("M-001"),
            "{file}: {content}"
        );
    }
    assert_eq!(
        cloud_mentions(&data, &anna),
        Vec::<String>::new(),
        "nothing in DATA/cloud holds her"
    );
    assert!(!cloud_mentions(&data, &member["M-002"]).is_empty(), "the others stay");
    let printed = text(&output.stdout) + &text(&output.stderr);
    assert!(!printed.contains("M-001") && !printed.contains("Anna"), "{printed}");
    assert_eq!(
        std::fs::read_to_string(data.join("trusted/erasures/cloud.cursor")).unwrap(),
        "1\n"
    );

    // A later run: still refused; the cloud was told once.
    let (third, _) = run(&data, &tmp.path().join("out3"));
    assert_eq!(
        (&third["records_forgotten"], &third["customers_forgotten"]),
        (&json!(4), &json!(0))
    );

    // Forgetting again is harmless; an unknown key is reported, with exit 1.
    let again = persona_unchecked(&["vault", "forget", "--data", s(&data), "M-001", "M-999"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(text(&again.stdout), format!("{anna}\talready-forgotten\n-\tunknown\n"));
    assert!(
        text(&again.stderr).contains("1 key(s) unknown to the vault"),
        "{}",
        text(&again.stderr)
    );

    // A restore of the backup made before the erasure keeps her forgotten.
    let restored = persona(&["vault", "restore", "--from", s(&backup), "--data", s(&data), "--force"]);
    assert!(
        text(&restored.stdout).contains("1 customer(s) forgotten since the backup was made stay forgotten"),
        "{}",
        text(&restored.stdout)
    );
    assert_eq!(resolve(&data, &anna), format!("{anna}\t-\n"));
    let (fourth, _) = run(&data, &tmp.path().join("out4"));
    assert_eq!(
        (&fourth["records_forgotten"], &fourth["tokens_issued"]),
        (&json!(4), &json!(0))
    );
    assert!(
        jsonl(&tmp.path().join("out4/features.jsonl"))
            .iter()
            .all(|f| f["token"] != anna.as_str())
    );
    assert_eq!(cloud_mentions(&data, &anna), Vec::<String>::new());
}

#[test]
fn keys_can_come_from_standard_input_and_nothing_is_forgotten_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    run(&data, &out);
    let member = members(&data, &out);

    let mut child = persona_command(&["vault", "forget", "--data", s(&data), "--keys-from", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"M-002\n\n  M-003  \n").unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert_eq!(
        text(&done.stdout),
        format!("{}\tforgotten\n{}\tforgotten\n", member["M-002"], member["M-003"])
    );
    assert_eq!(status(&data)["forgotten"], 2);

    let none = persona_unchecked(&["vault", "forget", "--data", s(&data)]);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none.stderr).contains("no customer key"), "{}", text(&none.stderr));
}
