//! Vault administration through the `persona` binary, local KMS: rotate, rewrap
//! (killed with SIGKILL halfway, then resumed), backup and restore, status, and the
//! admin audit trail, which names tokens, versions and counts but no customer.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use persona_tests::{Demo, jsonl, persona, persona_command, persona_unchecked};
use serde_json::{Value, json};

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Every token of a demo's customers (features.jsonl has one line per customer).
fn tokens(out: &Path) -> Vec<String> {
    jsonl(&out.join("features.jsonl"))
        .iter()
        .map(|f| f["token"].as_str().unwrap().to_owned())
        .collect()
}

/// `vault resolve` of `tokens`: token -> customer key ("-" when unknown).
fn resolve(data: &Path, tokens: &[String]) -> BTreeMap<String, String> {
    let mut args = vec!["vault", "resolve", "--data", s(data)];
    args.extend(tokens.iter().map(String::as_str));
    let out = String::from_utf8(persona(&args).stdout).unwrap();
    out.lines()
        .map(|l| {
            let (t, k) = l.split_once('\t').expect("TOKEN<TAB>KEY");
            (t.to_owned(), k.to_owned())
        })
        .collect()
}

fn status(data: &Path) -> Value {
    let out = persona(&["vault", "status", "--data", s(data), "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn audit(data: &Path) -> Vec<Value> {
    jsonl(&data.join("trusted").join("audit").join("admin.jsonl"))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn rotate_rewrap_backup_and_restore_keep_every_token_resolving() {
    let demo = Demo::run(120, 30);
    let out = demo.out();
    let data = out.join("data");
    let tokens = tokens(&out);
    let keys = resolve(&data, &tokens);
    assert_eq!(keys.len(), 120);
    assert!(keys.values().all(|k| k != "-"));

    let before = status(&data);
    let records = before["tokens"].as_u64().unwrap() + before["contacts"].as_u64().unwrap();
    assert_eq!(before["provider"], "local");
    assert_eq!(before["key_versions"], json!([1]));
    assert_eq!(before["sealed_by_version"], json!({"1": records}));

    let rotated = persona(&["vault", "rotate", "--data", s(&data)]);
    assert!(
        stdout(&rotated).starts_with("vault key version 2 made"),
        "{}",
        stdout(&rotated)
    );
    let rewrapped = persona(&["vault", "rewrap", "--data", s(&data), "--batch", "50"]);
    assert_eq!(
        stdout(&rewrapped),
        format!("rewrapped {records} of {records} records under key version 2\n")
    );
    let after = status(&data);
    assert_eq!(after["key_versions"], json!([1, 2]));
    assert_eq!(after["sealed_by_version"], json!({"2": records}));
    assert_eq!(after["rewrap_pending"], Value::Null);
    assert_eq!(resolve(&data, &tokens), keys);

    // Backup, then a restore over the vault: refused, then forced.
    let file = demo.dir.path().join("vault.backup");
    let backed = persona(&["vault", "backup", "--data", s(&data), "--to", s(&file)]);
    assert!(
        stdout(&backed).starts_with("backed up 120 tokens"),
        "{}",
        stdout(&backed)
    );
    let refused = persona_unchecked(&["vault", "restore", "--from", s(&file), "--data", s(&data)]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("is not empty"), "{}", stderr(&refused));
    persona(&["vault", "restore", "--from", s(&file), "--data", s(&data), "--force"]);
    assert_eq!(resolve(&data, &tokens), keys);

    // Elsewhere: the local KMS's master key is not in the backup, and is asked for.
    let elsewhere = demo.dir.path().join("elsewhere");
    let missing = persona_unchecked(&["vault", "restore", "--from", s(&file), "--data", s(&elsewhere)]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("master.key is missing"),
        "{}",
        stderr(&missing)
    );
    let kms_dir = elsewhere.join("trusted").join("kms");
    std::fs::create_dir_all(&kms_dir).unwrap();
    std::fs::copy(data.join("trusted/kms/master.key"), kms_dir.join("master.key")).unwrap();
    let restored = persona(&["vault", "restore", "--from", s(&file), "--data", s(&elsewhere)]);
    assert!(
        stdout(&restored).contains("all 4 keys unwrap with the local KMS"),
        "{}",
        stdout(&restored)
    );
    assert_eq!(resolve(&elsewhere, &tokens), keys);
    assert_eq!(status(&elsewhere)["sealed_by_version"], json!({"2": records}));

    // The trail: every act, in order, with its outcome; no customer in it.
    let trail = audit(&data);
    let acts: Vec<String> = trail
        .iter()
        .filter(|a| a["action"] != "resolve")
        .map(|a| {
            format!(
                "{} {}",
                a["action"].as_str().unwrap(),
                a["outcome"].as_str().or(a["phase"].as_str()).unwrap()
            )
        })
        .collect();
    assert_eq!(
        acts,
        [
            "rotate ok",
            "rewrap start",
            "rewrap ok",
            "backup ok",
            "restore failed",
            "restore ok"
        ]
    );
    assert_eq!(trail.iter().filter(|a| a["action"] == "resolve").count(), 3 * 120);
    let rewrap_end = trail.iter().find(|a| a["phase"] == "end").unwrap();
    assert_eq!(rewrap_end["rewrapped"], records);
    assert_eq!(rewrap_end["target"], 2);
    let text = std::fs::read_to_string(data.join("trusted/audit/admin.jsonl")).unwrap();
    let deliveries = jsonl(&out.join("deliveries.jsonl"));
    for key in keys.values() {
        assert!(
            !text.contains(&format!("\"{key}\"")),
            "a customer key in the audit trail"
        );
    }
    for d in &deliveries {
        assert!(
            !text.contains(d["to"].as_str().unwrap()),
            "a contact in the audit trail"
        );
    }
}

#[test]
fn a_rewrap_killed_halfway_resumes_and_leaves_every_record_under_the_newest_key() {
    let demo = Demo::run(300, 20);
    let data = demo.out().join("data");
    let tokens = tokens(&demo.out());
    let keys = resolve(&data, &tokens);
    persona(&["vault", "rotate", "--data", s(&data)]);
    let before = status(&data);
    let records = before["tokens"].as_u64().unwrap() + before["contacts"].as_u64().unwrap();

    // Small batches with a pause between, so the kill lands halfway; the process is
    // not told anything: SIGKILL, wherever it is.
    let mut child = persona_command(&[
        "vault",
        "rewrap",
        "--data",
        s(&data),
        "--batch",
        "10",
        "--pause",
        "20ms",
    ])
    .env("RUST_LOG", "warn,persona::vault=debug")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut seen = 0;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(done) = line.split("done=").nth(1) {
            seen = done.split_whitespace().next().unwrap().parse::<u64>().unwrap();
            if seen >= 100 {
                break;
            }
        }
    }
    assert!(seen >= 100, "the rewrap reported progress before it ended");
    child.kill().unwrap();
    let exit = child.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit.signal(), Some(9), "killed, not finished: {exit:?}");
    }

    // Halfway: some records under version 2, the rest still under 1, the cursor kept.
    let halfway = status(&data);
    assert_eq!(halfway["rewrap_pending"], 2);
    let moved = halfway["sealed_by_version"]["2"].as_u64().unwrap();
    assert!(moved >= seen && moved < records, "{halfway}");
    assert_eq!(halfway["sealed_by_version"]["1"].as_u64().unwrap(), records - moved);
    let last = audit(&data).pop().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["phase"].as_str()),
        (Some("rewrap"), Some("start"))
    );

    // Every token resolves meanwhile, under either version.
    assert_eq!(resolve(&data, &tokens), keys);

    let resumed = persona(&["vault", "rewrap", "--data", s(&data)]);
    let text = stdout(&resumed);
    assert!(text.contains("resumed an interrupted rewrap"), "{text}");
    let done_before: u64 = text
        .split("resumed an interrupted rewrap: ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(done_before >= seen && done_before <= moved, "{text}");
    let after = status(&data);
    assert_eq!(after["sealed_by_version"], json!({"2": records}));
    assert_eq!(after["rewrap_pending"], Value::Null);
    assert_eq!(resolve(&data, &tokens), keys);
}

#[test]
fn status_and_backup_of_a_missing_vault_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nothing");
    for args in [
        vec!["vault", "status", "--data", s(&data)],
        vec!["vault", "backup", "--data", s(&data), "--to", s(&dir.path().join("b"))],
    ] {
        let out = persona_unchecked(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("no vault at"), "{}", stderr(&out));
    }
    assert!(!data.join("trusted/vault").exists(), "no empty vault was made");
}
