//! The vault's key ring: data keys by purpose and version, stored wrapped in the
//! `keys` tree, unwrapped through the KMS and held in a bounded cache
//! ([`CacheLimits`]), with every KMS call counted.

mod cache;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::kms::{DataKey, EncryptionContext, Kms, WrappedKey, context};
use crate::{Error, Result};

pub use cache::CacheLimits;
pub(crate) use cache::Slot;

/// The entry naming the KMS provider that wrapped the keys.
const PROVIDER_ENTRY: &[u8] = b"provider";
/// How often (at most) idle keys past their bounds are dropped, in milliseconds.
const SWEEP_EVERY_MS: u64 = 1_000;

/// What a data key is for. Each purpose is wrapped under its own encryption context,
/// so KMS policy can grant Decrypt per purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Purpose {
    /// HMAC key of the customer-key index (the gateway's).
    Index,
    /// HMAC key of event ids (the gateway's).
    EventId,
    /// AES key of reverse and contact records (the de-tokenizer decrypts these).
    Vault,
}

impl Purpose {
    const ALL: [Purpose; 3] = [Purpose::Index, Purpose::EventId, Purpose::Vault];

    fn as_str(self) -> &'static str {
        match self {
            Purpose::Index => "index",
            Purpose::EventId => "event-id",
            Purpose::Vault => "vault",
        }
    }

    pub(crate) fn context(self, version: u32) -> EncryptionContext {
        let version = version.to_string();
        context([
            ("purpose", self.as_str()),
            ("version", &version),
            ("store", "persona-vault"),
        ])
    }

    fn prefix(self) -> String {
        format!("{}/", self.as_str())
    }

    fn entry(self, version: u32) -> Vec<u8> {
        format!("{}/{version:010}", self.as_str()).into_bytes()
    }

    /// The purpose and version an entry of the `keys` tree names.
    fn parse(entry: &[u8]) -> Option<(Purpose, u32)> {
        let text = std::str::from_utf8(entry).ok()?;
        let (name, version) = text.split_once('/')?;
        let purpose = Purpose::ALL.into_iter().find(|p| p.as_str() == name)?;
        Some((purpose, version.parse().ok()?))
    }
}

/// KMS calls made through one vault handle, by operation: what "0 KMS calls per
/// record" is measured with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KmsCalls {
    pub generate_data_key: u64,
    pub decrypt: u64,
}

impl KmsCalls {
    pub fn total(&self) -> u64 {
        self.generate_data_key + self.decrypt
    }
}

/// Keys held in memory. HMAC keys have one version forever (rotating them would
/// change every token look-up). The vault key gets a new version per process that
/// writes (and on rotation, and when the sealing key reaches its cache bounds), so a
/// writer never needs Decrypt on vault keys.
pub(crate) struct KeyRing {
    kms: Arc<dyn Kms>,
    tree: sled::Tree,
    limits: CacheLimits,
    index: Slot,
    event_id: Slot,
    writer: Slot,
    readers: RwLock<HashMap<u32, Arc<Slot>>>,
    /// Serializes the making of vault key versions (the next version is the newest + 1).
    versions: Mutex<()>,
    generated: AtomicU64,
    decrypted: AtomicU64,
    epoch: Instant,
    next_sweep_ms: AtomicU64,
}

impl KeyRing {
    /// The ring over `tree`. Fails when the tree's keys were wrapped by another KMS
    /// provider than `kms`.
    pub(crate) fn new(tree: sled::Tree, kms: Arc<dyn Kms>, limits: CacheLimits) -> Result<Self> {
        if let Some(stored) = tree.get(PROVIDER_ENTRY)?
            && stored != kms.provider().as_bytes()
        {
            return Err(Error::ProviderMismatch {
                stored: String::from_utf8_lossy(&stored).into_owned(),
                given: kms.provider().to_owned(),
            });
        }
        Ok(Self {
            kms,
            tree,
            limits,
            index: Slot::default(),
            event_id: Slot::default(),
            writer: Slot::default(),
            readers: RwLock::new(HashMap::new()),
            versions: Mutex::new(()),
            generated: AtomicU64::new(0),
            decrypted: AtomicU64::new(0),
            epoch: Instant::now(),
            next_sweep_ms: AtomicU64::new(SWEEP_EVERY_MS),
        })
    }

    pub(crate) fn kms(&self) -> &dyn Kms {
        self.kms.as_ref()
    }

    pub(crate) fn limits(&self) -> CacheLimits {
        self.limits
    }

    pub(crate) fn kms_calls(&self) -> KmsCalls {
        KmsCalls {
            generate_data_key: self.generated.load(Ordering::Relaxed),
            decrypt: self.decrypted.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn index_key(&self) -> Result<Arc<DataKey>> {
        self.fixed(&self.index, Purpose::Index)
    }

    pub(crate) fn event_id_key(&self) -> Result<Arc<DataKey>> {
        self.fixed(&self.event_id, Purpose::EventId)
    }

    /// The vault key this process seals with, and its version: made on first use and
    /// again whenever the current one reaches its bounds.
    pub(crate) fn writer(&self) -> Result<(u32, Arc<DataKey>)> {
        let now = self.tick();
        self.writer.get(&self.limits, now, || self.new_vault_version(now))
    }

    /// The vault key of `version`, for opening a sealed record (or sealing one under a
    /// version this process did not make, as rewrap does).
    pub(crate) fn reader(&self, version: u32) -> Result<Arc<DataKey>> {
        let now = self.tick();
        let (_, key) = self.reader_slot(version).get(&self.limits, now, || {
            let wrapped = self.wrapped_vault_key(version)?;
            let key = self.decrypt(wrapped.as_bytes(), &Purpose::Vault.context(version))?;
            Ok((version, Arc::new(key)))
        })?;
        Ok(key)
    }

    /// The stored, wrapped vault key of `version` (for handing out with sealed
    /// records; nothing is unwrapped).
    pub(crate) fn wrapped_vault_key(&self, version: u32) -> Result<WrappedKey> {
        let wrapped = self
            .tree
            .get(Purpose::Vault.entry(version))?
            .ok_or_else(|| Error::MissingKey {
                purpose: Purpose::Vault.as_str().to_owned(),
                version,
            })?;
        Ok(WrappedKey::from_bytes(wrapped.to_vec()))
    }

    /// Makes a new vault key version, which this process seals with from now on.
    pub(crate) fn rotate(&self) -> Result<u32> {
        let now = self.tick();
        let (version, key) = self.new_vault_version(now)?;
        self.writer.put(now, version, key);
        Ok(version)
    }

    /// The newest vault key version, if any was made.
    pub(crate) fn newest_vault_version(&self) -> Result<Option<u32>> {
        match self.tree.scan_prefix(Purpose::Vault.prefix()).keys().next_back() {
            Some(entry) => Ok(Some(parse_vault_entry(&entry?)?)),
            None => Ok(None),
        }
    }

    /// Unwraps every stored key once, bypassing the cache: proof that this KMS can
    /// open the vault (after a restore, say). Returns how many keys it unwrapped.
    pub(crate) fn verify_all(&self) -> Result<usize> {
        let mut verified = 0;
        for entry in self.tree.iter() {
            let (name, wrapped) = entry?;
            if name.as_ref() == PROVIDER_ENTRY {
                continue;
            }
            let (purpose, version) = Purpose::parse(&name).ok_or(Error::Corrupt { what: "keys" })?;
            self.decrypt(&wrapped, &purpose.context(version))?;
            verified += 1;
        }
        Ok(verified)
    }

    /// A single-version key: unwrapped if stored, else made and stored.
    fn fixed(&self, slot: &Slot, purpose: Purpose) -> Result<Arc<DataKey>> {
        let now = self.tick();
        let (_, key) = slot.get(&self.limits, now, || {
            let ctx = purpose.context(1);
            let entry = purpose.entry(1);
            if let Some(wrapped) = self.tree.get(&entry)? {
                return Ok((1, Arc::new(self.decrypt(&wrapped, &ctx)?)));
            }
            let (key, wrapped) = self.generate(&ctx)?;
            self.store_new(&entry, &wrapped)?;
            Ok((1, Arc::new(key)))
        })?;
        Ok(key)
    }

    /// Makes and stores the next vault key version; its key is also cached for
    /// reading, so records this process seals open without a Decrypt.
    fn new_vault_version(&self, now: Instant) -> Result<(u32, Arc<DataKey>)> {
        let _guard = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let version = match self.newest_vault_version()? {
            None => 1,
            Some(v) => v.checked_add(1).ok_or(Error::Kms {
                message: "vault key versions exhausted".to_owned(),
            })?,
        };
        let (key, wrapped) = self.generate(&Purpose::Vault.context(version))?;
        self.store_new(&Purpose::Vault.entry(version), &wrapped)?;
        let key = Arc::new(key);
        self.reader_slot(version).put(now, version, key.clone());
        Ok((version, key))
    }

    /// Stores a newly made wrapped key, durably, never over an existing one (that
    /// would orphan every record sealed under it), and records the provider.
    fn store_new(&self, entry: &[u8], wrapped: &WrappedKey) -> Result<()> {
        let provider = self.kms.provider().as_bytes();
        // The first key of a vault names its provider; later ones find it there.
        let _ = self
            .tree
            .compare_and_swap(PROVIDER_ENTRY, None as Option<&[u8]>, Some(provider))?;
        self.tree
            .compare_and_swap(entry, None as Option<&[u8]>, Some(wrapped.as_bytes()))?
            .map_err(|_| Error::Corrupt { what: "keys" })?;
        self.tree.flush()?;
        Ok(())
    }

    fn reader_slot(&self, version: u32) -> Arc<Slot> {
        if let Some(slot) = self.readers.read().unwrap_or_else(|e| e.into_inner()).get(&version) {
            return slot.clone();
        }
        self.readers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(version)
            .or_default()
            .clone()
    }

    fn generate(&self, ctx: &EncryptionContext) -> Result<(DataKey, WrappedKey)> {
        self.generated.fetch_add(1, Ordering::Relaxed);
        self.kms.generate_data_key(ctx)
    }

    fn decrypt(&self, wrapped: &[u8], ctx: &EncryptionContext) -> Result<DataKey> {
        self.decrypted.fetch_add(1, Ordering::Relaxed);
        self.kms.decrypt(&WrappedKey::from_bytes(wrapped.to_vec()), ctx)
    }

    /// The time, and about once a second a sweep of keys past their bounds, so an
    /// idle key leaves memory soon after `max_age` even when nothing asks for it.
    fn tick(&self) -> Instant {
        let now = Instant::now();
        let ms = u64::try_from(now.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        let due = self.next_sweep_ms.load(Ordering::Relaxed);
        if ms >= due
            && self
                .next_sweep_ms
                .compare_exchange(
                    due,
                    ms.saturating_add(SWEEP_EVERY_MS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.index.sweep(&self.limits, now);
            self.event_id.sweep(&self.limits, now);
            self.writer.sweep(&self.limits, now);
            self.readers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, slot| slot.sweep(&self.limits, now));
        }
        now
    }
}

/// The provider recorded with the keys of `tree` (`None` before the first key).
pub(crate) fn stored_provider(tree: &sled::Tree) -> Result<Option<String>> {
    Ok(tree
        .get(PROVIDER_ENTRY)?
        .map(|p| String::from_utf8_lossy(&p).into_owned()))
}

/// Every vault key version stored in `tree`, oldest first.
pub(crate) fn vault_versions(tree: &sled::Tree) -> Result<Vec<u32>> {
    let mut versions = Vec::new();
    for entry in tree.scan_prefix(Purpose::Vault.prefix()).keys() {
        versions.push(parse_vault_entry(&entry?)?);
    }
    Ok(versions)
}

fn parse_vault_entry(entry: &[u8]) -> Result<u32> {
    match Purpose::parse(entry) {
        Some((Purpose::Vault, version)) => Ok(version),
        _ => Err(Error::Corrupt { what: "keys" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_back_to_purpose_and_version() {
        for purpose in Purpose::ALL {
            for version in [1, 42, u32::MAX] {
                assert_eq!(Purpose::parse(&purpose.entry(version)), Some((purpose, version)));
            }
        }
        assert_eq!(Purpose::parse(PROVIDER_ENTRY), None);
        assert_eq!(Purpose::parse(b"other/1"), None);
    }

    #[test]
    fn entries_sort_by_version() {
        // The newest version is the last entry under the prefix.
        assert!(Purpose::Vault.entry(9) < Purpose::Vault.entry(10));
        assert!(Purpose::Vault.entry(10) < Purpose::Vault.entry(u32::MAX));
    }

    #[test]
    fn contexts_differ_by_purpose_and_version() {
        assert_ne!(Purpose::Vault.context(1), Purpose::Vault.context(2));
        assert_ne!(Purpose::Vault.context(1), Purpose::Index.context(1));
        assert_eq!(Purpose::EventId.context(1)["purpose"], "event-id");
    }
}
