//! The `aws` KMS provider against a real KMS API: moto's server, which
//! `./scripts/test` starts and names in `PERSONA_TEST_KMS_ENDPOINT`. Round trips,
//! scoping by encryption context, refusals, an endpoint that is gone, calls from
//! inside tokio runtimes, and the whole vault (tokenize, contacts, resolve, rotate,
//! rewrap, backup, restore) on it.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use persona_event::ContactKind;
use persona_privacy::kms::{AwsCredentials, AwsKms, AwsKmsConfig, Kms, LocalKms, context};
use persona_privacy::vault::{RewrapOptions, restore};
use persona_privacy::{CustomerKey, Error, KmsCalls, Pii, Vault, WrappedKey};
use zeroize::Zeroizing;

const REGION: &str = "us-east-1";

/// The KMS endpoint of the test run. Fails (never skips) without one: these tests
/// are the only proof the aws provider works.
fn endpoint() -> String {
    std::env::var("PERSONA_TEST_KMS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "PERSONA_TEST_KMS_ENDPOINT is unset: the aws KMS tests need a KMS endpoint. \
             Run ./scripts/test, which installs and starts one (moto) and sets it."
        )
    })
}

/// The admin side of the test: a client that creates and disables keys.
fn admin() -> (tokio::runtime::Runtime, aws_sdk_kms::Client) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    (runtime, aws_sdk_kms::Client::from_conf(config))
}

/// A new symmetric KMS key, made with CreateKey.
fn create_key() -> String {
    let (runtime, client) = admin();
    runtime.block_on(async {
        let out = client
            .create_key()
            .description("persona test key")
            .send()
            .await
            .expect("CreateKey on the test KMS");
        out.key_metadata().expect("key metadata").key_id().to_owned()
    })
}

fn config(key_id: &str) -> AwsKmsConfig {
    AwsKmsConfig {
        region: Some(REGION.to_owned()),
        endpoint: Some(endpoint()),
        credentials: AwsCredentials::Static {
            access_key_id: "testing".to_owned(),
            secret_access_key: Zeroizing::new("testing".to_owned()),
        },
        timeout: Duration::from_secs(10),
        ..AwsKmsConfig::new(key_id)
    }
}

fn provider(key_id: &str) -> Arc<AwsKms> {
    Arc::new(AwsKms::connect(config(key_id)).expect("connect to the test KMS"))
}

#[test]
fn data_keys_round_trip_and_unwrap_only_under_their_context() {
    let key_id = create_key();
    let kms = provider(&key_id);
    assert_eq!(kms.provider(), "aws");
    assert_eq!(kms.key_id(), key_id);
    let index = context([("purpose", "index"), ("version", "1")]);
    let (plain, wrapped) = kms.generate_data_key(&index).unwrap();
    assert_ne!(plain.expose_secret(), &[0u8; 32]);
    assert!(!wrapped.as_bytes().windows(32).any(|w| w == plain.expose_secret()));
    assert_eq!(
        kms.decrypt(&wrapped, &index).unwrap().expose_secret(),
        plain.expose_secret()
    );

    // Every key is new.
    let (other, _) = kms.generate_data_key(&index).unwrap();
    assert_ne!(other.expose_secret(), plain.expose_secret());

    for wrong in [
        context([("purpose", "vault"), ("version", "1")]),
        context([("purpose", "index"), ("version", "2")]),
        context([]),
    ] {
        assert!(matches!(kms.decrypt(&wrapped, &wrong), Err(Error::Unwrap)), "{wrong:?}");
    }
    let mut tampered = wrapped.as_bytes().to_vec();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(matches!(
        kms.decrypt(&WrappedKey::from_bytes(tampered), &index),
        Err(Error::Unwrap)
    ));
}

#[test]
fn refusals_name_the_service_code_and_nothing_else() {
    let kms = provider(&create_key());
    let ctx = context([("purpose", "vault"), ("version", "1")]);

    // A blob wrapped by another KMS key: Decrypt names ours, so KMS refuses it.
    let stranger = provider(&create_key());
    let (_, foreign) = stranger.generate_data_key(&ctx).unwrap();
    let err = kms.decrypt(&foreign, &ctx).unwrap_err();
    assert_eq!(err.to_string(), "kms Decrypt refused: AccessDeniedException");

    let unknown = provider("00000000-0000-4000-8000-000000000000");
    let err = unknown.generate_data_key(&ctx).unwrap_err();
    assert_eq!(err.to_string(), "kms GenerateDataKey refused: NotFoundException");
    let err = unknown.decrypt(&foreign, &ctx).unwrap_err();
    assert_eq!(err.to_string(), "kms Decrypt refused: NotFoundException");
}

#[test]
fn an_endpoint_that_is_gone_is_an_error_not_a_hang() {
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kms = AwsKms::connect(AwsKmsConfig {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        timeout: Duration::from_secs(5),
        ..config("alias/persona")
    })
    .unwrap();
    let started = Instant::now();
    let err = kms.generate_data_key(&context([("purpose", "index")])).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert_eq!(
        err.to_string(),
        "kms GenerateDataKey failed: cannot connect to the endpoint"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn calls_work_from_a_current_thread_runtime() {
    endpoint();
    // Runtime::block_on would panic here; the provider's own runtime does not.
    let key_id = tokio::task::spawn_blocking(create_key).await.unwrap();
    let kms = provider(&key_id);
    let ctx = context([("purpose", "index")]);
    let (plain, wrapped) = kms.generate_data_key(&ctx).unwrap();
    assert_eq!(
        kms.decrypt(&wrapped, &ctx).unwrap().expose_secret(),
        plain.expose_secret()
    );
    drop(kms); // Dropping the provider inside a runtime must not panic either.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_work_from_tasks_of_a_multi_thread_runtime() {
    endpoint();
    let key_id = tokio::task::spawn_blocking(create_key).await.unwrap();
    let kms = provider(&key_id);
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let kms = kms.clone();
            tokio::spawn(async move {
                let ctx = context([("purpose", "vault"), ("task", &i.to_string())]);
                let (plain, wrapped) = kms.generate_data_key(&ctx).unwrap();
                kms.decrypt(&wrapped, &ctx).unwrap().expose_secret() == plain.expose_secret()
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
}

/// Customers with an email each, tokenized through `vault`.
fn fill(vault: &Vault, from: usize, to: usize) -> Vec<(String, persona_event::Token)> {
    (from..to)
        .map(|i| {
            let key = format!("AWS-C{i}");
            let (token, _) = vault.tokenize(&CustomerKey::new(key.clone())).unwrap();
            vault
                .store_contact(&token, ContactKind::Email, &Pii::new(format!("c{i}@example.com")))
                .unwrap();
            (key, token)
        })
        .collect()
}

fn assert_resolves(vault: &Vault, customers: &[(String, persona_event::Token)]) {
    for (key, token) in customers {
        assert_eq!(vault.resolve(token).unwrap().unwrap().expose_secret(), key);
        let i = &key["AWS-C".len()..];
        assert_eq!(
            vault.contact(token, ContactKind::Email).unwrap().unwrap().expose(),
            &format!("c{i}@example.com")
        );
    }
}

#[test]
fn the_vault_runs_on_the_aws_provider() {
    let key_id = create_key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");

    // First process: 500 customers cost three KMS calls, whatever the count.
    let first = {
        let vault = Vault::open(&path, provider(&key_id)).unwrap();
        let customers = fill(&vault, 0, 500);
        assert_resolves(&vault, &customers);
        vault.event_id("txn", b"REF-1").unwrap();
        assert_eq!(
            vault.kms_calls(),
            KmsCalls {
                generate_data_key: 3,
                decrypt: 0
            }
        );
        vault.flush().unwrap();
        customers
    };

    // Second process: unwraps what it needs once, writes under a version of its own.
    let vault = Vault::open(&path, provider(&key_id)).unwrap();
    let second = fill(&vault, 500, 700);
    assert_resolves(&vault, &first);
    assert_resolves(&vault, &second);
    assert_eq!(
        vault.kms_calls(),
        KmsCalls {
            generate_data_key: 1,
            decrypt: 2
        },
        "index key and vault key 1 unwrapped, vault key 2 made"
    );
    assert_eq!(vault.status().unwrap().provider.as_deref(), Some("aws"));

    // Rotate, then rewrap everything under the new version.
    let version = vault.rotate().unwrap();
    assert_eq!(version, 3);
    let report = vault
        .rewrap(&RewrapOptions { batch: 64 }, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert!(report.complete);
    assert_eq!(report.rewrapped, 1_400);
    let status = vault.status().unwrap();
    assert_eq!(status.sealed_by_version, BTreeMap::from([(3, 1_400)]));
    assert_resolves(&vault, &first);

    // Back up, restore elsewhere: the restore proves every key unwraps on this KMS.
    let backup = dir.path().join("vault.backup");
    vault.backup(&backup).unwrap();
    drop(vault);
    let restored = dir.path().join("restored");
    let report = restore(&backup, &restored, provider(&key_id), false, &mut no_erasures()).unwrap();
    assert_eq!(report.keys_verified, 2 + 3, "index, event-id and vault keys 1-3");
    let vault = Vault::open(&restored, provider(&key_id)).unwrap();
    assert_resolves(&vault, &first);
    assert_resolves(&vault, &second);
    assert_eq!(
        vault.tokenize(&CustomerKey::new("AWS-C7")).unwrap(),
        (first[7].1.clone(), false)
    );
    drop(vault);

    // The vault's keys are the aws provider's: the local one is turned away clearly.
    let local = Arc::new(LocalKms::open(&dir.path().join("kms")).unwrap());
    let err = Vault::open(&path, local).unwrap_err();
    assert!(matches!(err, Error::ProviderMismatch { .. }), "{err:?}");
}

/// An erasure journal with nothing in it (restores re-apply a journal's erasures).
fn no_erasures() -> persona_privacy::ErasureJournal {
    let dir = tempfile::tempdir().unwrap();
    persona_privacy::ErasureJournal::open(&dir.path().join("erasures")).unwrap()
}
