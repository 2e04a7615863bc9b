//! The right to erasure in the vault, over real sled files and a real journal: a
//! forgotten customer's token stops resolving, her records are destroyed, her key is
//! refused from then on, and neither a crash nor a restore brings her back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use persona_event::{ContactKind, Token};
use persona_privacy::kms::LocalKms;
use persona_privacy::vault::{inspect, restore};
use persona_privacy::{CustomerKey, ErasureJournal, Error, Forgotten, Pii, Vault};

fn kms(dir: &Path) -> Arc<LocalKms> {
    Arc::new(LocalKms::open(&dir.join("kms")).unwrap())
}

fn open(dir: &Path) -> Vault {
    Vault::open(&dir.join("vault"), kms(dir)).unwrap()
}

fn journal_dir(dir: &Path) -> PathBuf {
    dir.join("erasures")
}

fn journal(dir: &Path) -> ErasureJournal {
    ErasureJournal::open(&journal_dir(dir)).unwrap()
}

/// Three customers with an email and a phone each; their tokens.
fn fill(vault: &Vault) -> Vec<Token> {
    (1..=3)
        .map(|i| {
            let (token, _) = vault.tokenize(&CustomerKey::new(format!("C{i}"))).unwrap();
            for (kind, value) in [
                (ContactKind::Email, format!("c{i}@example.com")),
                (ContactKind::Phone, format!("+9198000000{i}")),
            ] {
                vault.store_contact(&token, kind, &Pii::new(value)).unwrap();
            }
            token
        })
        .collect()
}

fn assert_forgotten(vault: &Vault, key: &str, token: &Token) {
    assert!(vault.resolve(token).unwrap().is_none(), "the token no longer resolves");
    assert!(
        vault.contact_kinds(token).unwrap().is_empty(),
        "no contact kind is left"
    );
    for kind in [ContactKind::Email, ContactKind::Phone] {
        assert_eq!(vault.contact(token, kind).unwrap(), None);
    }
    assert!(
        matches!(vault.tokenize(&CustomerKey::new(key)), Err(Error::Forgotten)),
        "her key is refused, not given a token"
    );
}

#[test]
fn a_forgotten_customer_is_gone_from_the_vault_and_her_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vault = open(dir.path());
    let tokens = fill(&vault);
    let mut erasures = journal(dir.path());

    let outcome = vault.forget(&CustomerKey::new("C2"), &mut erasures).unwrap();
    assert_eq!(outcome, Forgotten::Erased(tokens[1].clone()));
    assert_forgotten(&vault, "C2", &tokens[1]);
    // The others are as they were.
    for (i, token) in [(1, &tokens[0]), (3, &tokens[2])] {
        assert_eq!(vault.resolve(token).unwrap().unwrap().expose_secret(), format!("C{i}"));
        assert_eq!(
            vault.contact(token, ContactKind::Email).unwrap().unwrap().expose(),
            &format!("c{i}@example.com")
        );
        assert_eq!(
            vault.tokenize(&CustomerKey::new(format!("C{i}"))).unwrap(),
            ((*token).clone(), false)
        );
    }
    assert_eq!(vault.token_count(), 2);

    // Idempotent, and an unknown key is said to be one (and is not blocked).
    assert_eq!(
        vault.forget(&CustomerKey::new("C2"), &mut erasures).unwrap(),
        Forgotten::Already(tokens[1].clone())
    );
    assert_eq!(
        vault.forget(&CustomerKey::new("C9"), &mut erasures).unwrap(),
        Forgotten::Unknown
    );
    assert!(
        vault.tokenize(&CustomerKey::new("C9")).unwrap().1,
        "a stranger still gets a token"
    );

    // Journaled once, with her token and the time; nothing of her key in clear.
    assert_eq!(erasures.entries().len(), 1);
    assert_eq!(erasures.entries()[0].token, tokens[1]);
    assert_eq!(erasures.undelivered().len(), 1);
    let text = std::fs::read_to_string(journal_dir(dir.path()).join("journal.jsonl")).unwrap();
    assert!(text.contains(tokens[1].as_str()), "{text}");
    assert!(!text.contains("C2") && !text.contains("c2@"), "{text}");
    drop(vault);

    // Deleted, not flagged: C1, C3 and the stranger's tokens, the 4 contacts of C1
    // and C3, and one tombstone.
    let status = inspect(&dir.path().join("vault")).unwrap();
    assert_eq!((status.tokens, status.contacts, status.forgotten), (3, 4, 1));
    let vault = open(dir.path());
    assert_forgotten(&vault, "C2", &tokens[1]);
}

#[test]
fn the_cloud_cursor_survives_a_reopen_and_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let vault = open(dir.path());
    let tokens = fill(&vault);
    let mut erasures = journal(dir.path());
    vault.forget(&CustomerKey::new("C1"), &mut erasures).unwrap();
    vault.forget(&CustomerKey::new("C3"), &mut erasures).unwrap();
    erasures.mark_delivered(1).unwrap();

    let mut reopened = journal(dir.path());
    let pending: Vec<&Token> = reopened.undelivered().iter().map(|e| &e.token).collect();
    assert_eq!(pending, [&tokens[2]]);
    reopened.mark_delivered(0).unwrap();
    assert_eq!(reopened.undelivered().len(), 1, "never backwards");
    reopened.mark_delivered(2).unwrap();
    assert!(journal(dir.path()).undelivered().is_empty());
    assert_eq!(journal(dir.path()).entries().len(), 2);
}

#[test]
fn a_vault_copied_back_from_before_the_erasure_is_corrected_on_enforce() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = {
        let vault = open(dir.path());
        let tokens = fill(&vault);
        vault.flush().unwrap();
        tokens
    };
    // A copy of the vault's files from before the erasure (a snapshot, a file-level
    // backup, or a crash between journal and vault: the vault did not change).
    let before = dir.path().join("before");
    copy_dir(&dir.path().join("vault"), &before);
    {
        let vault = open(dir.path());
        vault.forget(&CustomerKey::new("C1"), &mut journal(dir.path())).unwrap();
    }
    std::fs::remove_dir_all(dir.path().join("vault")).unwrap();
    std::fs::rename(&before, dir.path().join("vault")).unwrap();

    let vault = open(dir.path());
    assert_eq!(vault.resolve(&tokens[0]).unwrap().unwrap().expose_secret(), "C1");
    let mut erasures = journal(dir.path());
    assert_eq!(vault.enforce(&mut erasures).unwrap(), 1);
    assert_forgotten(&vault, "C1", &tokens[0]);
    assert_eq!(vault.enforce(&mut erasures).unwrap(), 0, "in effect now");
    assert_eq!(erasures.entries().len(), 1, "nothing new to tell the cloud");
}

#[test]
fn a_key_tokenized_again_behind_the_journals_back_is_forgotten_under_both_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("before-her.backup");
    let first = {
        let vault = open(dir.path());
        vault.tokenize(&CustomerKey::new("C2")).unwrap();
        vault.backup(&file).unwrap();
        let (first, _) = vault.tokenize(&CustomerKey::new("C1")).unwrap();
        vault.forget(&CustomerKey::new("C1"), &mut journal(dir.path())).unwrap();
        first
    };
    // A backup from before her first record, restored without the journal: the
    // vault has never heard of her, and gives her a second token.
    let elsewhere = tempfile::tempdir().unwrap();
    let mut unrelated = journal(elsewhere.path());
    restore(&file, &dir.path().join("vault"), kms(dir.path()), true, &mut unrelated).unwrap();
    let second = open(dir.path()).tokenize(&CustomerKey::new("C1")).unwrap().0;
    assert_ne!(first, second);

    let vault = open(dir.path());
    let mut erasures = journal(dir.path());
    assert_eq!(vault.enforce(&mut erasures).unwrap(), 1);
    assert_forgotten(&vault, "C1", &second);
    // The cloud hears of the second token too.
    let told: Vec<&Token> = erasures.undelivered().iter().map(|e| &e.token).collect();
    assert_eq!(told, [&first, &second]);
    assert_eq!(vault.enforce(&mut journal(dir.path())).unwrap(), 0);
}

#[test]
fn a_restore_from_before_the_erasure_keeps_her_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vault.backup");
    let tokens = {
        let vault = open(dir.path());
        let tokens = fill(&vault);
        vault.backup(&file).unwrap();
        vault.forget(&CustomerKey::new("C3"), &mut journal(dir.path())).unwrap();
        tokens
    };
    let report = restore(
        &file,
        &dir.path().join("vault"),
        kms(dir.path()),
        true,
        &mut journal(dir.path()),
    )
    .unwrap();
    assert_eq!(report.erasures_reapplied, 1);
    assert_eq!((report.tokens, report.contacts), (2, 4));
    let vault = open(dir.path());
    assert_forgotten(&vault, "C3", &tokens[2]);
    assert_eq!(vault.resolve(&tokens[0]).unwrap().unwrap().expose_secret(), "C1");
}

#[test]
fn a_journal_torn_by_a_crash_is_cut_back_and_a_damaged_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vault = open(dir.path());
    fill(&vault);
    vault.forget(&CustomerKey::new("C1"), &mut journal(dir.path())).unwrap();
    let path = journal_dir(dir.path()).join("journal.jsonl");
    let whole = std::fs::read_to_string(&path).unwrap();
    // A crash in the middle of the next append: half a line, no newline.
    std::fs::write(&path, format!("{whole}{{\"at\":\"2026-")).unwrap();
    let mut erasures = journal(dir.path());
    assert_eq!(erasures.entries().len(), 1);
    vault.forget(&CustomerKey::new("C2"), &mut erasures).unwrap();
    let reread = journal(dir.path());
    assert_eq!(reread.entries().len(), 2, "the torn tail was cut before the append");
    assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));

    std::fs::write(&path, format!("{whole}not json\n")).unwrap();
    let err = ErasureJournal::open(&journal_dir(dir.path())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("erasure journal {}: line 2: not an erasure record", path.display())
    );
    std::fs::write(journal_dir(dir.path()).join("cloud.cursor"), "7\n").unwrap();
    std::fs::write(&path, &whole).unwrap();
    let err = ErasureJournal::open(&journal_dir(dir.path())).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("says the cloud applied 7 erasures, but the journal holds 1"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn the_journal_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let vault = open(dir.path());
    fill(&vault);
    vault.forget(&CustomerKey::new("C1"), &mut journal(dir.path())).unwrap();
    let mode = std::fs::metadata(journal_dir(dir.path()).join("journal.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
