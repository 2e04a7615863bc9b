//! Key rotation and rewrap over real sled files with the local KMS: after a rewrap
//! every record opens with the newest key alone, and a rewrap stopped halfway
//! resumes from its cursor.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use persona_event::{ContactKind, Token};
use persona_privacy::kms::{DataKey, EncryptionContext, Kms, LocalKms, WrappedKey};
use persona_privacy::vault::{RewrapOptions, RewrapProgress};
use persona_privacy::{CustomerKey, Error, Pii, Result, Vault};

fn kms(dir: &Path) -> Arc<LocalKms> {
    Arc::new(LocalKms::open(&dir.join("kms")).unwrap())
}

fn open(dir: &Path) -> Vault {
    Vault::open(&dir.join("vault"), kms(dir)).unwrap()
}

/// A KMS whose grant covers vault keys of one version only (and the HMAC keys).
#[derive(Debug)]
struct OnlyVersion {
    inner: LocalKms,
    version: u32,
}

impl Kms for OnlyVersion {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }
    fn generate_data_key(&self, context: &EncryptionContext) -> Result<(DataKey, WrappedKey)> {
        self.inner.generate_data_key(context)
    }
    fn decrypt(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<DataKey> {
        if context["purpose"] == "vault" && context["version"] != self.version.to_string() {
            return Err(Error::KmsRefused {
                operation: "Decrypt",
                code: "AccessDeniedException".to_owned(),
            });
        }
        self.inner.decrypt(wrapped, context)
    }
}

/// Customers written by three processes (so under vault key versions 1, 2 and 3),
/// each with an email, some with a phone.
fn three_generations(dir: &Path) -> Vec<(String, Token)> {
    let mut customers = Vec::new();
    for generation in 0..3 {
        let vault = open(dir);
        for i in 0..40 {
            let key = format!("G{generation}-C{i}");
            let (token, _) = vault.tokenize(&CustomerKey::new(key.clone())).unwrap();
            vault
                .store_contact(&token, ContactKind::Email, &Pii::new(format!("{key}@example.com")))
                .unwrap();
            if i % 3 == 0 {
                vault
                    .store_contact(&token, ContactKind::Phone, &Pii::new(format!("+91{i:010}")))
                    .unwrap();
            }
            customers.push((key, token));
        }
        vault.flush().unwrap();
    }
    customers
}

/// Every customer resolves and every contact opens.
fn assert_all_open(vault: &Vault, customers: &[(String, Token)]) {
    for (i, (key, token)) in customers.iter().enumerate() {
        assert_eq!(vault.resolve(token).unwrap().unwrap().expose_secret(), key);
        let email = vault.contact(token, ContactKind::Email).unwrap().unwrap();
        assert_eq!(email.expose(), &format!("{key}@example.com"));
        assert_eq!(
            vault.contact(token, ContactKind::Phone).unwrap().is_some(),
            i % 40 % 3 == 0
        );
    }
}

fn rewrap_all(vault: &Vault, batch: usize) -> (persona_privacy::vault::RewrapReport, Vec<RewrapProgress>) {
    let mut seen = Vec::new();
    let report = vault
        .rewrap(&RewrapOptions { batch }, &mut |p| {
            seen.push(*p);
            ControlFlow::Continue(())
        })
        .unwrap();
    (report, seen)
}

#[test]
fn rotate_then_rewrap_leaves_every_record_under_the_newest_key_alone() {
    let dir = tempfile::tempdir().unwrap();
    let customers = three_generations(dir.path());
    let vault = open(dir.path());
    let before = vault.status().unwrap();
    assert_eq!(before.key_versions, [1, 2, 3]);
    let records = before.tokens + before.contacts;
    assert_eq!(before.tokens, 120);
    assert_eq!(before.contacts, 120 + 3 * 14);
    assert_eq!(before.sealed_by_version.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);

    let version = vault.rotate().unwrap();
    assert_eq!(version, 4);
    // Old versions still open before any rewrap.
    assert_all_open(&vault, &customers);

    let (report, progress) = rewrap_all(&vault, 7);
    assert_eq!(report.target, Some(4));
    assert!(report.complete);
    assert_eq!(report.rewrapped, records);
    assert_eq!(report.scanned, records);
    assert_eq!(report.resumed_after, 0);
    // One batch at most per 7 records of each tree.
    assert_eq!(
        progress.len() as u64,
        before.tokens.div_ceil(7) + before.contacts.div_ceil(7)
    );
    assert!(progress.windows(2).all(|w| w[0].done < w[1].done));
    assert_eq!(progress.last().unwrap().done, records);
    assert!(progress.iter().all(|p| p.total == records && p.target == 4));

    let after = vault.status().unwrap();
    assert_eq!(after.sealed_by_version, BTreeMap::from([(4, records)]));
    assert_eq!(after.rewrap_pending, None);
    assert_eq!(after.key_versions, [1, 2, 3, 4], "old versions stay until retired");

    // Nothing left to do, and nothing done.
    let (again, _) = rewrap_all(&vault, 7);
    assert_eq!((again.rewrapped, again.scanned, again.complete), (0, records, true));
    vault.flush().unwrap();
    drop(vault);

    // A process allowed to unwrap version 4 only reads everything.
    let only_newest = Arc::new(OnlyVersion {
        inner: LocalKms::open(&dir.path().join("kms")).unwrap(),
        version: 4,
    });
    let vault = Vault::open(&dir.path().join("vault"), only_newest).unwrap();
    assert_all_open(&vault, &customers);
}

#[test]
fn a_rewrap_stopped_halfway_resumes_after_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let customers = three_generations(dir.path());
    let vault = open(dir.path());
    let target = vault.rotate().unwrap();
    let records = {
        let s = vault.status().unwrap();
        s.tokens + s.contacts
    };
    let mut batches = 0;
    let stopped = vault
        .rewrap(&RewrapOptions { batch: 10 }, &mut |_| {
            batches += 1;
            if batches == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert!(!stopped.complete);
    assert_eq!((stopped.scanned, stopped.rewrapped), (30, 30));
    let status = vault.status().unwrap();
    assert_eq!(status.rewrap_pending, Some(target));
    assert_eq!(status.sealed_by_version[&target], 30);
    drop(vault);

    // A new process picks up after the cursor.
    let vault = open(dir.path());
    let (resumed, progress) = rewrap_all(&vault, 10);
    assert!(resumed.complete);
    assert_eq!(resumed.resumed_after, 30);
    assert_eq!(resumed.scanned, records - 30);
    assert_eq!(resumed.rewrapped, records - 30);
    assert_eq!(
        progress.first().unwrap().done,
        40,
        "progress counts the earlier run's records"
    );
    let status = vault.status().unwrap();
    assert_eq!(status.sealed_by_version, BTreeMap::from([(target, records)]));
    assert_eq!(status.rewrap_pending, None);
    assert_all_open(&vault, &customers);
}

#[test]
fn a_rotation_after_an_interrupted_rewrap_starts_it_over_for_the_newer_key() {
    let dir = tempfile::tempdir().unwrap();
    let customers = three_generations(dir.path());
    let vault = open(dir.path());
    let first = vault.rotate().unwrap();
    let stopped = vault
        .rewrap(&RewrapOptions { batch: 50 }, &mut |_| ControlFlow::Break(()))
        .unwrap();
    assert_eq!((stopped.target, stopped.rewrapped), (Some(first), 50));
    let second = vault.rotate().unwrap();
    let (report, _) = rewrap_all(&vault, 50);
    assert_eq!(report.target, Some(second));
    assert_eq!(report.resumed_after, 0, "the old cursor was for another version");
    let status = vault.status().unwrap();
    assert_eq!(status.sealed_by_version.keys().copied().collect::<Vec<_>>(), [second]);
    assert_all_open(&vault, &customers);
}

#[test]
fn records_written_after_a_rotation_use_the_new_key_and_need_no_rewrap() {
    let dir = tempfile::tempdir().unwrap();
    let vault = open(dir.path());
    let (old, _) = vault.tokenize(&CustomerKey::new("before")).unwrap();
    let version = vault.rotate().unwrap();
    let (new, _) = vault.tokenize(&CustomerKey::new("after")).unwrap();
    let status = vault.status().unwrap();
    assert_eq!(status.sealed_by_version, BTreeMap::from([(1, 1), (version, 1)]));
    let (report, _) = rewrap_all(&vault, 100);
    assert_eq!(report.rewrapped, 1);
    for (token, key) in [(old, "before"), (new, "after")] {
        assert_eq!(vault.resolve(&token).unwrap().unwrap().expose_secret(), key);
    }
}

#[test]
fn an_empty_vault_has_nothing_to_rewrap() {
    let dir = tempfile::tempdir().unwrap();
    let vault = open(dir.path());
    let (report, progress) = rewrap_all(&vault, 10);
    assert_eq!(report.target, None);
    assert!(report.complete && progress.is_empty());
    assert_eq!(vault.kms_calls().total(), 0);
}
