//! `persona` on the aws KMS provider, against the real KMS API of moto's server
//! (started by `./scripts/test`): `persona run --kms aws` over the demo's files
//! reaches the same customers as the local run with a handful of KMS calls, and the
//! vault administration (resolve, rotate, rewrap, backup, restore) works on it,
//! configured through the environment as a deployment would.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use persona_tests::{Demo, files_under, jsonl, kms, persona_command, succeeded};
use serde_json::{Value, json};

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `persona ARGS` on the test KMS (through the environment); panics when it fails.
fn aws(key_id: &str, args: &[&str]) -> Output {
    succeeded(aws_unchecked(key_id, args), args)
}

fn aws_unchecked(key_id: &str, args: &[&str]) -> Output {
    let mut command = persona_command(args);
    kms::use_aws_kms(&mut command, key_id);
    command.output().expect("running persona")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Who got which offer on which channel: the same bank reaches the same people
/// whatever its tokens are.
fn reached(out: &Path) -> BTreeSet<(String, String, String, String)> {
    jsonl(&out.join("deliveries.jsonl"))
        .iter()
        .map(|d| {
            let field = |k: &str| d[k].as_str().unwrap().to_owned();
            (field("customer_key"), field("offer"), field("channel"), field("to"))
        })
        .collect()
}

#[test]
fn persona_run_on_the_aws_kms_and_the_vault_administration_after_it() {
    let key_id = kms::create_key();
    let demo = Demo::run(150, 30);
    let out = demo.out();
    let tmp = demo.dir.path();
    let data = tmp.join("aws-data");
    let result = tmp.join("aws-out");

    // The flags on the command line (the environment gives credentials and region).
    let mut command = persona_command(&[
        "run",
        "--specs",
        s(&out.join("specs")),
        "--sources",
        s(&out.join("sources")),
        "--data",
        s(&data),
        "--out",
        s(&result),
        "--kms",
        "aws",
        "--kms-key-id",
        &key_id,
        "--kms-endpoint",
        &kms::endpoint(),
        "--kms-region",
        kms::REGION,
    ]);
    kms::use_aws_kms(&mut command, "not-this-one");
    command.env_remove("PERSONA_KMS_KEY_ID").env_remove("PERSONA_KMS");
    let run = command.output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let logs = String::from_utf8_lossy(&run.stderr);
    assert!(!logs.contains("LOCAL KMS IN USE"), "{logs}");

    // Same customers, offers, channels and contacts as the demo's local run; the
    // whole run took three KMS calls (index, event-id and vault key, each made once).
    assert_eq!(reached(&result), reached(&out));
    assert!(!reached(&result).is_empty());
    let summary = read_json(&result.join("summary.json"));
    assert_eq!(summary["kms"], "aws");
    assert_eq!(summary["kms_calls"], json!({"generate_data_key": 3, "decrypt": 0}));
    assert!(summary["records_read"].as_u64().unwrap() > 5_000);
    assert!(
        !files_under(&data.join("trusted"))
            .iter()
            .any(|f| f.file_name().unwrap() == "master.key"),
        "no local master key beside an aws vault"
    );

    // Admin look-ups on the aws vault, configured by the environment only.
    let matches = jsonl(&result.join("matches.jsonl"));
    let delivery = jsonl(&result.join("deliveries.jsonl")).remove(0);
    let token = matches
        .iter()
        .find(|m| m["match_id"] == delivery["match_id"])
        .and_then(|m| m["token"].as_str())
        .unwrap()
        .to_owned();
    let expected = format!("{token}\t{}\n", delivery["customer_key"].as_str().unwrap());
    let resolve = |data: &Path| aws(&key_id, &["vault", "resolve", "--data", s(data), &token]);
    assert_eq!(String::from_utf8(resolve(&data).stdout).unwrap(), expected);

    // The local provider is turned away, and leaves no master key behind.
    let local = persona_command(&["vault", "resolve", "--data", s(&data), &token])
        .output()
        .unwrap();
    assert_eq!(local.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&local.stderr).contains("wrapped by the `aws` kms provider"),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    assert!(!data.join("trusted/kms/master.key").exists());

    // Rotate and rewrap on aws.
    aws(&key_id, &["vault", "rotate", "--data", s(&data)]);
    let rewrap = aws(&key_id, &["vault", "rewrap", "--data", s(&data), "--batch", "100"]);
    assert!(String::from_utf8_lossy(&rewrap.stdout).contains("under key version 2"));
    let status: Value = serde_json::from_slice(
        &persona_command(&["vault", "status", "--data", s(&data), "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let records = status["tokens"].as_u64().unwrap() + status["contacts"].as_u64().unwrap();
    assert_eq!(status["provider"], "aws");
    assert_eq!(status["sealed_by_version"], json!({"2": records}));
    assert_eq!(String::from_utf8(resolve(&data).stdout).unwrap(), expected);

    // Backup and restore into a fresh data directory: no master key needed, every
    // key unwraps on the KMS before the restore is accepted.
    let file = tmp.join("aws-vault.backup");
    aws(&key_id, &["vault", "backup", "--data", s(&data), "--to", s(&file)]);
    let elsewhere = tmp.join("restored");
    let restored = aws(
        &key_id,
        &["vault", "restore", "--from", s(&file), "--data", s(&elsewhere)],
    );
    assert!(
        String::from_utf8_lossy(&restored.stdout).contains("all 4 keys unwrap with the aws KMS"),
        "{}",
        String::from_utf8_lossy(&restored.stdout)
    );
    assert_eq!(String::from_utf8(resolve(&elsewhere).stdout).unwrap(), expected);

    // With another KMS key, the restore is refused and nothing is put in place.
    let other_key = kms::create_key();
    let other = tmp.join("other");
    let refused = aws_unchecked(
        &other_key,
        &["vault", "restore", "--from", s(&file), "--data", s(&other)],
    );
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("kms Decrypt refused: AccessDeniedException"), "{err}");
    assert!(!other.join("trusted/vault").exists());
    let trail = jsonl(&other.join("trusted/audit/admin.jsonl"));
    assert_eq!(trail.last().unwrap()["outcome"], "failed");
}

#[test]
fn a_kms_that_cannot_be_reached_or_used_stops_the_run_with_a_clear_error() {
    let demo = Demo::run(20, 10);
    let out = demo.out();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = persona_command(&[
        "run",
        "--specs",
        s(&out.join("specs")),
        "--sources",
        s(&out.join("sources")),
        "--data",
        s(&demo.dir.path().join("d")),
        "--out",
        s(&demo.dir.path().join("o")),
    ]);
    kms::use_aws_kms(&mut command, "alias/persona");
    command.env("PERSONA_KMS_ENDPOINT", format!("http://127.0.0.1:{port}"));
    let run = command.output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("kms GenerateDataKey failed: cannot connect to the endpoint"),
        "{err}"
    );

    // No credentials anywhere in the standard chain: said before any call.
    let nowhere = demo.dir.path().join("no-such-file");
    command
        .env("PERSONA_KMS_ENDPOINT", kms::endpoint())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env("AWS_CONFIG_FILE", &nowhere)
        .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere);
    let run = command.output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no aws credentials"), "{err}");
}
