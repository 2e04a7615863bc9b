//! The vault (sled, trusted zone only): customer key -> random token, token -> sealed
//! customer key, and sealed contact data per token and kind.
//!
//! Trees: `keys` (wrapped data keys by purpose and version), `index`
//! (HMAC-SHA256(index key, customer key) -> token), `reverse` (token -> AES-256-GCM of
//! the customer key, associated data binding the token), `contacts` ((token, kind) ->
//! AES-256-GCM of the value, associated data binding token and kind). Every sealed
//! record starts with the version of the key that sealed it and a random 96-bit nonce.
//! `meta` holds the vault's own bookkeeping (the rewrap cursor). An index entry of a
//! forgotten customer is a tombstone (see [`Vault::forget`]).
//!
//! Administration lives beside: [`rewrap`](Vault::rewrap) after a
//! [`rotate`](Vault::rotate), [`backup`](Vault::backup) / [`restore`], and the right to
//! erasure, [`forget`](Vault::forget) with its [`ErasureJournal`].

mod backup;
mod erasure;
mod keys;
mod rewrap;
mod sealed;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use data_encoding::BASE32_NOPAD;
use persona_event::{ContactKind, EventId, Token};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::kms::{DataKey, Kms};
use crate::pii::{CustomerKey, Pii};
use crate::{Error, Result};

pub use backup::{BackupReport, restore};
pub use erasure::{Erasure, ErasureJournal, Forgotten};
pub use keys::{CacheLimits, KmsCalls};
pub use rewrap::{RewrapOptions, RewrapProgress, RewrapReport};
pub use sealed::{Opened, Opener, SealedRecord};

use erasure::{IndexEntry, index_entry};
use keys::KeyRing;

const NONCE_LEN: usize = 12;
const KEYS_TREE: &str = "keys";
const INDEX_TREE: &str = "index";
const REVERSE_TREE: &str = "reverse";
const CONTACTS_TREE: &str = "contacts";
const META_TREE: &str = "meta";
const REVERSE_AAD: &[u8] = b"persona/reverse/v1";
const CONTACT_AAD: &[u8] = b"persona/contact/v1";

/// The trusted zone's token vault over a sled store.
pub struct Vault {
    path: PathBuf,
    db: sled::Db,
    index: sled::Tree,
    reverse: sled::Tree,
    contacts: sled::Tree,
    meta: sled::Tree,
    keys: KeyRing,
    issued: AtomicUsize,
    /// Tokens of customers met through this handle, by index slot: a known customer
    /// costs one HMAC and a hash look-up instead of a sled read. Bounded (emptied when
    /// full); an erasure removes its entry.
    known: std::sync::Mutex<std::collections::HashMap<[u8; 32], [u8; 16]>>,
}

/// The most slots [`Vault`] remembers before it starts over (~80 MB).
const KNOWN_MAX: usize = 1 << 20;

/// What a vault holds, without decrypting anything: for `persona vault status` and
/// for checking a rewrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultStatus {
    /// The KMS provider that wrapped the keys (`None` before the first key).
    pub provider: Option<String>,
    pub tokens: u64,
    pub contacts: u64,
    /// Customers forgotten (tombstones in the index).
    pub forgotten: u64,
    /// Vault key versions stored, oldest first.
    pub key_versions: Vec<u32>,
    /// Sealed records (reverse and contact) by the key version that sealed them.
    pub sealed_by_version: std::collections::BTreeMap<u32, u64>,
    /// The target version of a rewrap that was interrupted, if one was.
    pub rewrap_pending: Option<u32>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("kms", &self.keys.kms())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens (or creates) the vault in `dir` with the default key cache bounds. Data
    /// keys come from `kms` on first use.
    pub fn open(dir: &Path, kms: Arc<dyn Kms>) -> Result<Self> {
        Self::open_with(dir, kms, CacheLimits::default())
    }

    /// Opens (or creates) the vault in `dir`; plaintext data keys are cached within
    /// `limits`. Fails when another process has the vault open, or when its keys were
    /// wrapped by another KMS provider than `kms`.
    pub fn open_with(dir: &Path, kms: Arc<dyn Kms>, limits: CacheLimits) -> Result<Self> {
        let db = open_db(dir)?;
        let keys = KeyRing::new(db.open_tree(KEYS_TREE)?, kms, limits)?;
        Ok(Self {
            path: dir.to_owned(),
            index: db.open_tree(INDEX_TREE)?,
            reverse: db.open_tree(REVERSE_TREE)?,
            contacts: db.open_tree(CONTACTS_TREE)?,
            meta: db.open_tree(META_TREE)?,
            db,
            keys,
            issued: AtomicUsize::new(0),
            known: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// KMS calls made through this handle since it was opened.
    pub fn kms_calls(&self) -> KmsCalls {
        self.keys.kms_calls()
    }

    /// The bounds of the plaintext key cache.
    pub fn cache_limits(&self) -> CacheLimits {
        self.keys.limits()
    }

    /// Makes a new vault key version and returns it. This handle seals with it from
    /// now on; records sealed under older versions still open, and
    /// [`rewrap`](Vault::rewrap) moves them to the newest version.
    pub fn rotate(&self) -> Result<u32> {
        let version = self.keys.rotate()?;
        tracing::info!(version, "vault key rotated");
        Ok(version)
    }

    /// Counts by key version and the vault's bookkeeping; decrypts nothing.
    pub fn status(&self) -> Result<VaultStatus> {
        status_of(&self.db)
    }

    /// The customer's token: the one she already has, or a new random one. Returns
    /// whether the token was issued by this call. Race-free: concurrent callers with
    /// the same key get the same token. A known key costs one HMAC and one read. A
    /// forgotten customer gets [`Error::Forgotten`], never a token again.
    pub fn tokenize(&self, key: &CustomerKey) -> Result<(Token, bool)> {
        let slot = self.index_slot(key)?;
        if let Some(token) = self.known_token(&slot) {
            return Ok((Token::from_bytes(token), false));
        }
        if let Some(found) = self.index.get(slot)? {
            let token = live(&found)?;
            self.remember(slot, &token);
            return Ok((token, false));
        }
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        let token = Token::from_bytes(bytes);
        // The reverse record goes first, so an index entry always has its way back.
        let sealed = self.seal(key.expose_secret().as_bytes(), &reverse_aad(&bytes))?;
        self.reverse.insert(bytes, sealed)?;
        match self
            .index
            .compare_and_swap(slot, None as Option<&[u8]>, Some(&bytes[..]))?
        {
            Ok(()) => {
                self.issued.fetch_add(1, Ordering::Relaxed);
                self.remember(slot, &token);
                Ok((token, true))
            }
            Err(lost) => {
                self.reverse.remove(bytes)?;
                let current = lost.current.ok_or(Error::Corrupt { what: "index" })?;
                live(&current).map(|t| (t, false))
            }
        }
    }

    /// Stores (or replaces) the contact of `kind` for `token`, sealed.
    pub fn store_contact(&self, token: &Token, kind: ContactKind, value: &Pii<String>) -> Result<()> {
        let bytes = token_bytes(token)?;
        let sealed = self.seal(value.expose().as_bytes(), &contact_aad(&bytes, kind))?;
        self.contacts.insert(contact_slot(&bytes, kind), sealed)?;
        Ok(())
    }

    /// The kinds of contact held for `token`, without decrypting anything.
    pub fn contact_kinds(&self, token: &Token) -> Result<Vec<ContactKind>> {
        let bytes = token_bytes(token)?;
        let mut kinds = Vec::new();
        for entry in self.contacts.scan_prefix(bytes) {
            let (slot, _) = entry?;
            if let Some(kind) = slot.get(16).and_then(|b| kind_from_byte(*b)) {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    }

    /// The customer key behind `token`, or `None` for an unknown token.
    pub fn resolve(&self, token: &Token) -> Result<Option<CustomerKey>> {
        let bytes = token_bytes(token)?;
        let Some(sealed) = self.reverse.get(bytes)? else {
            return Ok(None);
        };
        let plain = self.open_sealed(&sealed, &reverse_aad(&bytes), "reverse")?;
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Corrupt { what: "reverse" })?;
        Ok(Some(CustomerKey::new(text)))
    }

    /// The contact of `kind` for `token`, or `None` when none is held.
    pub fn contact(&self, token: &Token, kind: ContactKind) -> Result<Option<Pii<String>>> {
        let bytes = token_bytes(token)?;
        let Some(sealed) = self.contacts.get(contact_slot(&bytes, kind))? else {
            return Ok(None);
        };
        let plain = self.open_sealed(&sealed, &contact_aad(&bytes, kind), "contact")?;
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Corrupt { what: "contact" })?;
        Ok(Some(Pii::new(text.to_owned())))
    }

    /// The stable id of a source record: `ev_` + the first 128 bits of
    /// HMAC-SHA256(event-id key, source name, id material).
    pub fn event_id(&self, source: &str, material: &[u8]) -> Result<EventId> {
        let key = self.keys.event_id_key()?;
        let digest = key.mac(&[&(source.len() as u64).to_be_bytes(), source.as_bytes(), material]);
        Ok(EventId::from_bytes(first_128(&digest)))
    }

    /// Tokens issued through this handle since it was opened.
    pub fn tokens_issued(&self) -> usize {
        self.issued.load(Ordering::Relaxed)
    }

    /// Live tokens in the store, forgotten ones left out (walks the reverse map: for
    /// reports, not hot paths).
    pub fn token_count(&self) -> usize {
        self.reverse.len()
    }

    /// Writes everything to disk. Writes are otherwise flushed about once a second.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn known_token(&self, slot: &[u8; 32]) -> Option<[u8; 16]> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).get(slot).copied()
    }

    fn remember(&self, slot: [u8; 32], token: &Token) {
        let Ok(bytes) = token_bytes(token) else { return };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= KNOWN_MAX {
            known.clear();
        }
        known.insert(slot, bytes);
    }

    pub(crate) fn forget_known(&self, slot: &[u8; 32]) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).remove(slot);
    }

    fn index_slot(&self, key: &CustomerKey) -> Result<[u8; 32]> {
        Ok(self.keys.index_key()?.mac(&[key.expose_secret().as_bytes()]))
    }

    fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let (version, key) = self.keys.writer()?;
        seal_with(version, &key, plain, aad)
    }

    fn open_sealed(&self, sealed: &[u8], aad: &[u8], what: &'static str) -> Result<Zeroizing<Vec<u8>>> {
        let version = sealed_version(sealed, what)?;
        let key = self.keys.reader(version)?;
        unseal(&key, sealed, aad, what)
    }
}

/// The status of the vault in `dir`, read without a KMS (nothing is decrypted).
pub fn inspect(dir: &Path) -> Result<VaultStatus> {
    status_of(&open_existing(dir)?)
}

/// Backs up the vault in `dir` to `to` (see [`Vault::backup`]) without a KMS: the
/// backup copies wrapped keys, it unwraps none.
pub fn backup(dir: &Path, to: &Path) -> Result<BackupReport> {
    backup::write(&open_existing(dir)?, to)
}

/// The KMS provider that wrapped the keys of the vault in `dir`; `None` when there
/// is no vault there or it has no key yet. Lets a caller pick (or refuse) a provider
/// before opening one, which for the local provider makes a master key.
pub fn stored_provider(dir: &Path) -> Result<Option<String>> {
    match open_existing(dir) {
        Ok(db) => keys::stored_provider(&db.open_tree(KEYS_TREE)?),
        Err(Error::NoVault { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn status_of(db: &sled::Db) -> Result<VaultStatus> {
    let mut sealed_by_version = std::collections::BTreeMap::new();
    let mut count = |tree: &sled::Tree, what: &'static str| -> Result<u64> {
        let mut n = 0;
        for entry in tree.iter().values() {
            *sealed_by_version.entry(sealed_version(&entry?, what)?).or_insert(0) += 1;
            n += 1;
        }
        Ok(n)
    };
    let tokens = count(&db.open_tree(REVERSE_TREE)?, "reverse")?;
    let contacts = count(&db.open_tree(CONTACTS_TREE)?, "contact")?;
    let mut forgotten = 0;
    for value in db.open_tree(INDEX_TREE)?.iter().values() {
        if let IndexEntry::Forgotten(_) = index_entry(&value?)? {
            forgotten += 1;
        }
    }
    let keys = db.open_tree(KEYS_TREE)?;
    Ok(VaultStatus {
        provider: keys::stored_provider(&keys)?,
        tokens,
        contacts,
        forgotten,
        key_versions: keys::vault_versions(&keys)?,
        sealed_by_version,
        rewrap_pending: rewrap::pending(&db.open_tree(META_TREE)?)?,
    })
}

/// Opens the store of a vault that must exist already (sled would make a new one).
fn open_existing(dir: &Path) -> Result<sled::Db> {
    if !dir.join("db").is_file() {
        return Err(Error::NoVault { path: dir.to_owned() });
    }
    open_db(dir)
}

/// Opens the sled store, telling a vault held by another process from other errors.
///
/// sled frees a closed store's lock lazily (its last references are dropped by
/// epoch-based reclamation), so a store closed a moment ago, in this process or by one
/// that is exiting, can look held: the lock is tried for up to a second.
fn open_db(dir: &Path) -> Result<sled::Db> {
    const ATTEMPTS: u32 = 40;
    let mut attempt = 1;
    loop {
        match sled::Config::new().path(dir).flush_every_ms(Some(1_000)).open() {
            Ok(db) => return Ok(db),
            // sled reports a held lock only in its message.
            Err(sled::Error::Io(io)) if io.to_string().starts_with("could not acquire lock") => {
                if attempt == ATTEMPTS {
                    return Err(Error::Busy { path: dir.to_owned() });
                }
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// `plain` sealed under the key of `version`: version, nonce, ciphertext and tag.
fn seal_with(version: u32, key: &DataKey, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let sealed = cipher(key)
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .map_err(|_| Error::Seal)?;
    let mut out = Vec::with_capacity(4 + NONCE_LEN + sealed.len());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The version of the key that sealed a record.
fn sealed_version(sealed: &[u8], what: &'static str) -> Result<u32> {
    if sealed.len() < 4 + NONCE_LEN {
        return Err(Error::Corrupt { what });
    }
    let (version, _) = sealed.split_at(4);
    Ok(u32::from_be_bytes(
        version.try_into().map_err(|_| Error::Corrupt { what })?,
    ))
}

/// A sealed record opened with `key` (which must be its version's).
fn unseal(key: &DataKey, sealed: &[u8], aad: &[u8], what: &'static str) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < 4 + NONCE_LEN {
        return Err(Error::Corrupt { what });
    }
    let (_, rest) = sealed.split_at(4);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    cipher(key)
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
        .map(Zeroizing::new)
        .map_err(|_| Error::Corrupt { what })
}

fn cipher(key: &DataKey) -> Aes256Gcm {
    Aes256Gcm::new(key.expose_secret().into())
}

fn first_128(digest: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The token of an index entry; [`Error::Forgotten`] for a tombstone.
fn live(entry: &[u8]) -> Result<Token> {
    match index_entry(entry)? {
        IndexEntry::Live(token) => Ok(token),
        IndexEntry::Forgotten(_) => Err(Error::Forgotten),
    }
}

fn token_from_slice(bytes: &[u8]) -> Result<Token> {
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| Error::Corrupt { what: "index" })?;
    Ok(Token::from_bytes(bytes))
}

/// The 128 bits behind a token's text.
fn token_bytes(token: &Token) -> Result<[u8; 16]> {
    let body = &token.as_str()[Token::PREFIX.len()..];
    BASE32_NOPAD
        .decode(body.to_ascii_uppercase().as_bytes())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or(Error::Corrupt { what: "token" })
}

fn reverse_aad(token: &[u8; 16]) -> Vec<u8> {
    [REVERSE_AAD, token].concat()
}

fn contact_aad(token: &[u8; 16], kind: ContactKind) -> Vec<u8> {
    [CONTACT_AAD, token, &[kind_byte(kind)]].concat()
}

fn contact_slot(token: &[u8; 16], kind: ContactKind) -> [u8; 17] {
    let mut slot = [0u8; 17];
    slot[..16].copy_from_slice(token);
    slot[16] = kind_byte(kind);
    slot
}

fn kind_byte(kind: ContactKind) -> u8 {
    match kind {
        ContactKind::Email => 1,
        ContactKind::Phone => 2,
        ContactKind::Device => 3,
        ContactKind::Other => 4,
        ContactKind::Name => 5,
    }
}

fn kind_from_byte(b: u8) -> Option<ContactKind> {
    Some(match b {
        1 => ContactKind::Email,
        2 => ContactKind::Phone,
        3 => ContactKind::Device,
        4 => ContactKind::Other,
        5 => ContactKind::Name,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bytes_round_trip() {
        let bytes = [7u8; 16];
        assert_eq!(token_bytes(&Token::from_bytes(bytes)).unwrap(), bytes);
    }

    #[test]
    fn kind_bytes_round_trip() {
        for kind in ContactKind::ALL {
            assert_eq!(kind_from_byte(kind_byte(kind)), Some(kind));
        }
    }
}
