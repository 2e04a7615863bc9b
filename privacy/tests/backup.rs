//! Backup and restore of the vault over real files: a restored vault answers like
//! the original, a damaged or foreign backup changes nothing, and a vault with data
//! is replaced only on request.

use std::path::Path;
use std::sync::Arc;

use persona_event::{ContactKind, Token};
use persona_privacy::kms::LocalKms;
use persona_privacy::vault::restore;
use persona_privacy::{CustomerKey, Error, Pii, Vault};

fn kms(dir: &Path) -> Arc<LocalKms> {
    Arc::new(LocalKms::open(&dir.join("kms")).unwrap())
}

/// A vault under `dir` with `n` customers and an email each.
fn filled(dir: &Path, n: usize) -> Vec<(String, Token)> {
    let vault = Vault::open(&dir.join("vault"), kms(dir)).unwrap();
    let customers = (0..n)
        .map(|i| {
            let key = format!("C{i}");
            let (token, _) = vault.tokenize(&CustomerKey::new(key.clone())).unwrap();
            vault
                .store_contact(&token, ContactKind::Email, &Pii::new(format!("c{i}@example.com")))
                .unwrap();
            (key, token)
        })
        .collect();
    vault.flush().unwrap();
    customers
}

fn assert_answers(vault: &Vault, customers: &[(String, Token)]) {
    for (i, (key, token)) in customers.iter().enumerate() {
        assert_eq!(vault.resolve(token).unwrap().unwrap().expose_secret(), key);
        assert_eq!(
            vault.contact(token, ContactKind::Email).unwrap().unwrap().expose(),
            &format!("c{i}@example.com")
        );
        // The same customer keeps her token: the index (and its key) came along.
        assert_eq!(
            vault.tokenize(&CustomerKey::new(key.clone())).unwrap(),
            (token.clone(), false)
        );
    }
}

#[test]
fn a_restored_vault_answers_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let customers = filled(dir.path(), 300);
    let file = dir.path().join("vault.backup");
    let vault = Vault::open(&dir.path().join("vault"), kms(dir.path())).unwrap();
    let event_id = vault.event_id("txn", b"REF-1").unwrap();
    let backup = vault.backup(&file).unwrap();
    assert_eq!((backup.tokens, backup.contacts), (300, 300));
    assert_eq!(backup.bytes, std::fs::metadata(&file).unwrap().len());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second backup to the same file is refused.
    assert!(matches!(vault.backup(&file), Err(Error::Backup { .. })));
    drop(vault);

    // Restore into another data directory that has the same KMS master key.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("kms")).unwrap();
    std::fs::copy(dir.path().join("kms/master.key"), other.path().join("kms/master.key")).unwrap();
    let restored = restore(
        &file,
        &other.path().join("vault"),
        kms(other.path()),
        false,
        &mut no_erasures(),
    )
    .unwrap();
    assert_eq!(restored.entries, backup.entries);
    assert_eq!(restored.tokens, 300);
    assert_eq!(restored.keys_verified, 3, "index, event-id and vault/1 unwrapped");
    let vault = Vault::open(&other.path().join("vault"), kms(other.path())).unwrap();
    assert_answers(&vault, &customers);
    assert_eq!(vault.event_id("txn", b"REF-1").unwrap(), event_id);
    assert!(!other.path().join("vault.restoring").exists());
}

#[test]
fn a_vault_with_data_is_replaced_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let customers = filled(dir.path(), 20);
    let file = dir.path().join("backup");
    Vault::open(&dir.path().join("vault"), kms(dir.path()))
        .unwrap()
        .backup(&file)
        .unwrap();
    // Later work that the backup does not have.
    let (later, _) = Vault::open(&dir.path().join("vault"), kms(dir.path()))
        .unwrap()
        .tokenize(&CustomerKey::new("later"))
        .unwrap();

    let err = restore(
        &file,
        &dir.path().join("vault"),
        kms(dir.path()),
        false,
        &mut no_erasures(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NotEmpty { .. }), "{err:?}");
    let vault = Vault::open(&dir.path().join("vault"), kms(dir.path())).unwrap();
    assert!(vault.resolve(&later).unwrap().is_some(), "nothing was touched");
    drop(vault);

    restore(
        &file,
        &dir.path().join("vault"),
        kms(dir.path()),
        true,
        &mut no_erasures(),
    )
    .unwrap();
    let vault = Vault::open(&dir.path().join("vault"), kms(dir.path())).unwrap();
    assert_answers(&vault, &customers);
    assert!(vault.resolve(&later).unwrap().is_none(), "the vault is the backup's");
    assert!(!dir.path().join("vault.replaced").exists());
}

#[test]
fn an_empty_vault_is_restored_over_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let customers = filled(dir.path(), 5);
    let file = dir.path().join("backup");
    Vault::open(&dir.path().join("vault"), kms(dir.path()))
        .unwrap()
        .backup(&file)
        .unwrap();
    let target = dir.path().join("fresh");
    drop(Vault::open(&target, kms(dir.path())).unwrap());
    restore(&file, &target, kms(dir.path()), false, &mut no_erasures()).unwrap();
    assert_answers(&Vault::open(&target, kms(dir.path())).unwrap(), &customers);
}

#[test]
fn a_damaged_or_foreign_backup_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 10);
    let file = dir.path().join("backup");
    Vault::open(&dir.path().join("vault"), kms(dir.path()))
        .unwrap()
        .backup(&file)
        .unwrap();
    let target = dir.path().join("target");

    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let damaged = dir.path().join("damaged");
    std::fs::write(&damaged, &bytes).unwrap();
    let err = restore(&damaged, &target, kms(dir.path()), true, &mut no_erasures()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("vault backup {}: damaged (checksum mismatch)", damaged.display())
    );

    let truncated = dir.path().join("truncated");
    std::fs::write(&truncated, &bytes[..10]).unwrap();
    assert!(matches!(
        restore(&truncated, &target, kms(dir.path()), true, &mut no_erasures()),
        Err(Error::Backup { .. })
    ));
    assert!(!target.exists(), "nothing was written");

    // The right file, but a KMS that cannot unwrap its keys: refused before it
    // replaces anything.
    let stranger = tempfile::tempdir().unwrap();
    let err = restore(&file, &target, kms(stranger.path()), true, &mut no_erasures()).unwrap_err();
    assert!(matches!(err, Error::Unwrap), "{err:?}");
    assert!(!target.exists());
    assert!(!dir.path().join("target.restoring").exists());
}

/// An erasure journal with nothing in it (restores re-apply a journal's erasures).
fn no_erasures() -> persona_privacy::ErasureJournal {
    let dir = tempfile::tempdir().unwrap();
    persona_privacy::ErasureJournal::open(&dir.path().join("erasures")).unwrap()
}
