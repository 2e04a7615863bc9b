//! The vault over real sled files: round trips, stability across reopen, concurrent
//! tokenization, key scoping, the bounds of the data-key cache, and a property test
//! of tokenization.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use persona_event::{ContactKind, Token};
use persona_privacy::kms::{DataKey, EncryptionContext, Kms, LocalKms, WrappedKey};
use persona_privacy::{CacheLimits, CustomerKey, Error, KmsCalls, Pii, Result, Vault};
use proptest::prelude::*;

fn open(dir: &Path) -> Vault {
    let kms = LocalKms::open(&dir.join("kms")).unwrap();
    Vault::open(&dir.join("vault"), Arc::new(kms)).unwrap()
}

#[test]
fn tokens_and_contacts_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let vault = open(dir.path());
    let key = CustomerKey::new("C1001");
    let (token, new) = vault.tokenize(&key).unwrap();
    assert!(new);
    assert!(token.as_str().starts_with("tk_"));
    assert_eq!(vault.tokenize(&key).unwrap(), (token.clone(), false));
    assert_eq!(vault.resolve(&token).unwrap().unwrap().expose_secret(), "C1001");

    let email = Pii::new("saanvi@example.com".to_owned());
    vault.store_contact(&token, ContactKind::Email, &email).unwrap();
    vault
        .store_contact(&token, ContactKind::Phone, &Pii::new("+919800000001".to_owned()))
        .unwrap();
    assert_eq!(
        vault.contact_kinds(&token).unwrap(),
        [ContactKind::Email, ContactKind::Phone]
    );
    assert_eq!(vault.contact(&token, ContactKind::Email).unwrap().unwrap(), email);
    assert_eq!(vault.contact(&token, ContactKind::Device).unwrap(), None);

    let stranger = Token::from_bytes([9; 16]);
    assert!(vault.resolve(&stranger).unwrap().is_none());
    assert!(vault.contact_kinds(&stranger).unwrap().is_empty());
    assert_eq!(vault.tokens_issued(), 1);
    assert_eq!(vault.token_count(), 1);
}

#[test]
fn tokens_and_event_ids_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<CustomerKey> = (0..50).map(|i| CustomerKey::new(format!("C{i}"))).collect();
    let (tokens, id) = {
        let vault = open(dir.path());
        let tokens: Vec<Token> = keys.iter().map(|k| vault.tokenize(k).unwrap().0).collect();
        vault
            .store_contact(&tokens[0], ContactKind::Email, &Pii::new("a@b.c".to_owned()))
            .unwrap();
        let id = vault.event_id("txn", b"ACCT1|REF1").unwrap();
        vault.flush().unwrap();
        (tokens, id)
    };
    let vault = open(dir.path());
    for (key, token) in keys.iter().zip(&tokens) {
        assert_eq!(vault.tokenize(key).unwrap(), (token.clone(), false));
        assert_eq!(vault.resolve(token).unwrap().unwrap(), *key);
    }
    // A new process seals with a new vault key version; older records still open.
    let (t, _) = vault.tokenize(&CustomerKey::new("new")).unwrap();
    assert_eq!(vault.resolve(&t).unwrap().unwrap().expose_secret(), "new");
    assert_eq!(
        vault.contact(&tokens[0], ContactKind::Email).unwrap().unwrap().expose(),
        "a@b.c"
    );
    assert_eq!(vault.event_id("txn", b"ACCT1|REF1").unwrap(), id);
    assert_ne!(vault.event_id("other", b"ACCT1|REF1").unwrap(), id);
    assert_ne!(vault.event_id("txn", b"ACCT1|REF2").unwrap(), id);
    assert_eq!(vault.tokens_issued(), 1);
}

#[test]
fn concurrent_tokenization_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Arc::new(open(dir.path()));
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (vault, barrier) = (vault.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..200)
                    .map(|i| vault.tokenize(&CustomerKey::new(format!("K{i}"))).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<(Token, bool)>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for i in 0..200 {
        let tokens: HashSet<&Token> = results.iter().map(|r| &r[i].0).collect();
        assert_eq!(tokens.len(), 1, "key {i} got {} tokens", tokens.len());
        let issued = results.iter().filter(|r| r[i].1).count();
        assert_eq!(issued, 1, "key {i} issued {issued} times");
        let token = tokens.into_iter().next().unwrap();
        assert_eq!(vault.resolve(token).unwrap().unwrap().expose_secret(), format!("K{i}"));
    }
    assert_eq!(vault.tokens_issued(), 200);
    assert_eq!(vault.token_count(), 200);
}

/// A KMS that counts its calls and refuses to unwrap vault-purpose keys, as the
/// gateway's KMS policy would.
#[derive(Debug)]
struct GatewayKms {
    inner: LocalKms,
    calls: AtomicUsize,
}

impl Kms for GatewayKms {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }
    fn generate_data_key(&self, context: &EncryptionContext) -> Result<(DataKey, WrappedKey)> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.generate_data_key(context)
    }
    fn decrypt(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<DataKey> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if context.get("purpose").map(String::as_str) == Some("vault") {
            return Err(persona_privacy::Error::Kms {
                message: "access denied".to_owned(),
            });
        }
        self.inner.decrypt(wrapped, context)
    }
}

#[test]
fn the_gateway_needs_no_vault_decrypt_and_known_keys_cost_no_kms_call() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).tokenize(&CustomerKey::new("old")).unwrap();
    let kms = Arc::new(GatewayKms {
        inner: LocalKms::open(&dir.path().join("kms")).unwrap(),
        calls: AtomicUsize::new(0),
    });
    let vault = Vault::open(&dir.path().join("vault"), kms.clone()).unwrap();
    let (old, _) = vault.tokenize(&CustomerKey::new("old")).unwrap();
    let (new, _) = vault.tokenize(&CustomerKey::new("new")).unwrap();
    vault
        .store_contact(&new, ContactKind::Phone, &Pii::new("+1555".to_owned()))
        .unwrap();
    vault.event_id("s", b"m").unwrap();
    let after_setup = kms.calls.load(Ordering::SeqCst);
    assert_eq!(after_setup, 3, "index unwrap, vault key generation, event-id key");
    for _ in 0..100 {
        vault.tokenize(&CustomerKey::new("old")).unwrap();
        vault.event_id("s", b"m").unwrap();
    }
    assert_eq!(kms.calls.load(Ordering::SeqCst), after_setup);
    // Reading back an older version needs vault Decrypt, which this KMS refuses.
    assert!(vault.resolve(&old).is_err());
    // Records sealed by this process open with the key it holds.
    assert_eq!(vault.resolve(&new).unwrap().unwrap().expose_secret(), "new");
}

/// A KMS that counts what reaches it, to check the vault's own count.
#[derive(Debug)]
struct CountingKms {
    inner: LocalKms,
    generate: AtomicUsize,
    decrypt: AtomicUsize,
}

impl CountingKms {
    fn open(dir: &Path) -> Arc<Self> {
        Arc::new(Self {
            inner: LocalKms::open(&dir.join("kms")).unwrap(),
            generate: AtomicUsize::new(0),
            decrypt: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> KmsCalls {
        KmsCalls {
            generate_data_key: self.generate.load(Ordering::SeqCst) as u64,
            decrypt: self.decrypt.load(Ordering::SeqCst) as u64,
        }
    }
}

impl Kms for CountingKms {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }
    fn generate_data_key(&self, context: &EncryptionContext) -> Result<(DataKey, WrappedKey)> {
        self.generate.fetch_add(1, Ordering::SeqCst);
        self.inner.generate_data_key(context)
    }
    fn decrypt(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<DataKey> {
        self.decrypt.fetch_add(1, Ordering::SeqCst);
        self.inner.decrypt(wrapped, context)
    }
}

/// Tokenizes `n` new customers with a contact each, and resolves them all.
fn tokenize_and_resolve(vault: &Vault, n: usize) {
    for i in 0..n {
        let (token, _) = vault.tokenize(&CustomerKey::new(format!("C{i}"))).unwrap();
        vault
            .store_contact(&token, ContactKind::Email, &Pii::new(format!("c{i}@example.com")))
            .unwrap();
        vault.event_id("txn", format!("ref-{i}").as_bytes()).unwrap();
        assert_eq!(vault.resolve(&token).unwrap().unwrap().expose_secret(), format!("C{i}"));
    }
}

#[test]
fn with_default_bounds_records_cost_no_kms_call_after_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let kms = CountingKms::open(dir.path());
    let vault = Vault::open(&dir.path().join("vault"), kms.clone()).unwrap();
    tokenize_and_resolve(&vault, 2_000);
    // index key, event-id key, one vault key version: generated once each; the
    // reader of that version is the writer's key, so nothing is decrypted.
    let expected = KmsCalls {
        generate_data_key: 3,
        decrypt: 0,
    };
    assert_eq!(vault.kms_calls(), expected);
    assert_eq!(
        kms.calls(),
        expected,
        "the vault counts every call that reaches the kms"
    );
    drop(vault);

    // Another process: the stored keys are unwrapped once each, then cached; the
    // contacts it stores again are sealed under a vault key version of its own.
    let vault = Vault::open(&dir.path().join("vault"), kms.clone()).unwrap();
    tokenize_and_resolve(&vault, 2_000);
    assert_eq!(
        vault.kms_calls(),
        KmsCalls {
            generate_data_key: 1,
            decrypt: 3,
        },
        "index, event-id and vault key version 1 unwrapped once each; version 2 made"
    );
}

#[test]
fn the_use_bound_makes_keys_fetched_again_and_sealing_keys_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let kms = CountingKms::open(dir.path());
    let limits = CacheLimits {
        max_age: Duration::from_secs(3600),
        max_uses: 100,
    };
    let vault = Vault::open_with(&dir.path().join("vault"), kms.clone(), limits).unwrap();
    let n = 1_000;
    for i in 0..n {
        vault.tokenize(&CustomerKey::new(format!("C{i}"))).unwrap();
    }
    // Each new customer takes one index MAC and one seal: 1000 uses of each key,
    // 100 per unwrap. The index key is made once and unwrapped 9 more times; each
    // 100 seals take a new vault key version (a writer never decrypts vault keys).
    let calls = vault.kms_calls();
    assert_eq!(calls.generate_data_key, 1 + 10, "{calls:?}");
    assert_eq!(calls.decrypt, 9, "{calls:?}");
    assert_eq!(kms.calls(), calls);
    let status = vault.status().unwrap();
    assert_eq!(status.key_versions, (1..=10).collect::<Vec<_>>());
    assert!(status.sealed_by_version.values().all(|&n| n == 100), "{status:?}");
    assert_eq!(status.tokens, n as u64);
}

#[test]
fn the_age_bound_makes_keys_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let kms = CountingKms::open(dir.path());
    let limits = CacheLimits {
        max_age: Duration::from_millis(200),
        max_uses: u64::MAX,
    };
    let vault = Vault::open_with(&dir.path().join("vault"), kms.clone(), limits).unwrap();
    let (token, _) = vault.tokenize(&CustomerKey::new("C1")).unwrap();
    for _ in 0..100 {
        vault.tokenize(&CustomerKey::new("C1")).unwrap();
    }
    assert_eq!(vault.kms_calls().total(), 2, "index key and vault key, made once");
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..100 {
        vault.tokenize(&CustomerKey::new("C1")).unwrap();
    }
    assert_eq!(vault.kms_calls().decrypt, 1, "the index key was unwrapped again, once");
    assert_eq!(vault.resolve(&token).unwrap().unwrap().expose_secret(), "C1");
    assert_eq!(vault.kms_calls().decrypt, 2, "so was the vault key of version 1");
    assert_eq!(vault.cache_limits(), limits);
}

#[test]
fn a_vault_refuses_another_kms_provider() {
    #[derive(Debug)]
    struct Other(LocalKms);
    impl Kms for Other {
        fn provider(&self) -> &'static str {
            "other"
        }
        fn generate_data_key(&self, context: &EncryptionContext) -> Result<(DataKey, WrappedKey)> {
            self.0.generate_data_key(context)
        }
        fn decrypt(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<DataKey> {
            self.0.decrypt(wrapped, context)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let other = || Arc::new(Other(LocalKms::open(&dir.path().join("kms")).unwrap()));
    // An empty vault has no provider yet: any may open it.
    drop(Vault::open(&dir.path().join("vault"), other()).unwrap());
    open(dir.path()).tokenize(&CustomerKey::new("C1")).unwrap();
    assert_eq!(open(dir.path()).status().unwrap().provider.as_deref(), Some("local"));
    let err = Vault::open(&dir.path().join("vault"), other()).unwrap_err();
    assert!(matches!(err, Error::ProviderMismatch { .. }));
    assert_eq!(
        err.to_string(),
        "the vault's keys are wrapped by the `local` kms provider, not `other`"
    );
}

#[test]
fn a_vault_open_elsewhere_is_named_busy() {
    let dir = tempfile::tempdir().unwrap();
    let _held = open(dir.path());
    // sled locks the store with flock, which a second open conflicts with even in
    // the same process.
    let kms = LocalKms::open(&dir.path().join("kms")).unwrap();
    let err = Vault::open(&dir.path().join("vault"), Arc::new(kms)).unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert!(err.to_string().ends_with("is open in another process"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn tokenization_is_stable_and_injective(keys in proptest::collection::vec("[ -~]{0,24}", 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path());
        let mut seen: HashMap<String, Token> = HashMap::new();
        for k in &keys {
            let (token, _) = vault.tokenize(&CustomerKey::new(k.clone())).unwrap();
            if let Some(before) = seen.get(k) {
                prop_assert_eq!(before, &token);
            }
            seen.insert(k.clone(), token);
        }
        let distinct: HashSet<&Token> = seen.values().collect();
        prop_assert_eq!(distinct.len(), seen.len());
        for (k, token) in &seen {
            let back = vault.resolve(token).unwrap().unwrap();
            prop_assert_eq!(back.expose_secret(), k.as_str());
        }
        prop_assert_eq!(vault.tokens_issued(), seen.len());
    }
}
