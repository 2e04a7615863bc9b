//! The way back across processes. sled lets one process open a store, and the
//! gateway (which tokenizes) owns it; the de-tokenizer is another process. The owner
//! hands out a token's records still sealed, with the wrapped vault keys that sealed
//! them ([`Vault::sealed`]); the de-tokenizer opens them with its own KMS Decrypt
//! right ([`Opener`]). The owner never needs Decrypt on vault keys (it seals with keys
//! it made), and what crosses the link is ciphertext either way.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use persona_event::{ContactKind, Token};

use super::keys::{CacheLimits, Purpose, Slot};
use super::{Vault, contact_aad, contact_slot, reverse_aad, sealed_version, token_bytes, unseal};
use crate::kms::{Kms, WrappedKey};
use crate::pii::{CustomerKey, Pii};
use crate::{Error, Result};

/// A token's records as the vault holds them: the sealed customer key, the sealed
/// contacts asked for (those held), and the wrapped vault keys of their versions.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SealedRecord {
    pub reverse: Vec<u8>,
    pub contacts: Vec<(ContactKind, Vec<u8>)>,
    pub keys: Vec<(u32, WrappedKey)>,
}

impl fmt::Debug for SealedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRecord")
            .field("contacts", &self.contacts.iter().map(|(k, _)| *k).collect::<Vec<_>>())
            .field("key_versions", &self.keys.iter().map(|(v, _)| *v).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A record opened: the customer key and the contacts asked for that are held.
#[derive(Debug)]
pub struct Opened {
    pub customer_key: CustomerKey,
    pub contacts: Vec<(ContactKind, Pii<String>)>,
}

impl Opened {
    pub fn contact(&self, kind: ContactKind) -> Option<&Pii<String>> {
        self.contacts.iter().find(|(k, _)| *k == kind).map(|(_, v)| v)
    }
}

impl Vault {
    /// The records of `token`, sealed, with the contacts of `kinds` that are held;
    /// `None` for an unknown or forgotten token. Decrypts nothing.
    pub fn sealed(&self, token: &Token, kinds: &[ContactKind]) -> Result<Option<SealedRecord>> {
        let bytes = token_bytes(token)?;
        let Some(reverse) = self.reverse.get(bytes)? else {
            return Ok(None);
        };
        let mut record = SealedRecord {
            reverse: reverse.to_vec(),
            ..SealedRecord::default()
        };
        let mut versions = vec![sealed_version(&reverse, "reverse")?];
        for &kind in kinds {
            if let Some(sealed) = self.contacts.get(contact_slot(&bytes, kind))? {
                versions.push(sealed_version(&sealed, "contact")?);
                record.contacts.push((kind, sealed.to_vec()));
            }
        }
        versions.sort_unstable();
        versions.dedup();
        for version in versions {
            record.keys.push((version, self.keys.wrapped_vault_key(version)?));
        }
        Ok(Some(record))
    }
}

/// Opens sealed records with vault keys unwrapped through its own KMS, cached within
/// [`CacheLimits`] (a key unwrapped once opens many records: ~0 KMS calls each).
pub struct Opener {
    kms: Arc<dyn Kms>,
    limits: CacheLimits,
    /// By the wrapped key's bytes: two vaults may both have a version 3.
    slots: RwLock<HashMap<Vec<u8>, Arc<Slot>>>,
    decrypted: AtomicU64,
    swept: RwLock<Instant>,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("kms", &self.kms)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Opener {
    pub fn new(kms: Arc<dyn Kms>, limits: CacheLimits) -> Self {
        Self {
            kms,
            limits,
            slots: RwLock::new(HashMap::new()),
            decrypted: AtomicU64::new(0),
            swept: RwLock::new(Instant::now()),
        }
    }

    /// KMS Decrypt calls made so far.
    pub fn kms_decrypts(&self) -> u64 {
        self.decrypted.load(Ordering::Relaxed)
    }

    /// Opens `record`, which the vault handed out for `token`. The associated data
    /// binds every sealed value to the token (and contact kind): a record of another
    /// token, or a swapped contact, does not open.
    pub fn open(&self, token: &Token, record: &SealedRecord) -> Result<Opened> {
        let bytes = token_bytes(token)?;
        let plain = self.open_one(record, &record.reverse, &reverse_aad(&bytes), "reverse")?;
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Corrupt { what: "reverse" })?;
        let customer_key = CustomerKey::new(text);
        let mut contacts = Vec::with_capacity(record.contacts.len());
        for (kind, sealed) in &record.contacts {
            let plain = self.open_one(record, sealed, &contact_aad(&bytes, *kind), "contact")?;
            let text = std::str::from_utf8(&plain).map_err(|_| Error::Corrupt { what: "contact" })?;
            contacts.push((*kind, Pii::new(text.to_owned())));
        }
        Ok(Opened { customer_key, contacts })
    }

    fn open_one(
        &self,
        record: &SealedRecord,
        sealed: &[u8],
        aad: &[u8],
        what: &'static str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let version = sealed_version(sealed, what)?;
        let wrapped = record
            .keys
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, w)| w)
            .ok_or_else(|| Error::MissingKey {
                purpose: "vault".to_owned(),
                version,
            })?;
        let now = self.sweep();
        let slot = self.slot(wrapped);
        let (_, key) = slot.get(&self.limits, now, || {
            self.decrypted.fetch_add(1, Ordering::Relaxed);
            Ok((
                version,
                Arc::new(self.kms.decrypt(wrapped, &Purpose::Vault.context(version))?),
            ))
        })?;
        unseal(&key, sealed, aad, what)
    }

    fn slot(&self, wrapped: &WrappedKey) -> Arc<Slot> {
        if let Some(slot) = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(wrapped.as_bytes())
        {
            return slot.clone();
        }
        self.slots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(wrapped.as_bytes().to_vec())
            .or_default()
            .clone()
    }

    /// Drops keys past their bounds, about once a second.
    fn sweep(&self) -> Instant {
        let now = Instant::now();
        let due = now.saturating_duration_since(*self.swept.read().unwrap_or_else(|e| e.into_inner()))
            >= std::time::Duration::from_secs(1);
        if due {
            *self.swept.write().unwrap_or_else(|e| e.into_inner()) = now;
            self.slots
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, slot| slot.sweep(&self.limits, now));
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::LocalKms;

    fn vault(dir: &std::path::Path) -> (Vault, Arc<dyn Kms>) {
        let kms: Arc<dyn Kms> = Arc::new(LocalKms::open(&dir.join("kms")).unwrap());
        (Vault::open(&dir.join("vault"), kms.clone()).unwrap(), kms)
    }

    #[test]
    fn a_sealed_record_opens_elsewhere_with_the_same_kms() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, kms) = vault(dir.path());
        let (token, _) = vault.tokenize(&CustomerKey::new("C-1001")).unwrap();
        vault
            .store_contact(&token, ContactKind::Email, &Pii::new("saanvi@example.in".to_owned()))
            .unwrap();
        let record = vault
            .sealed(&token, &[ContactKind::Email, ContactKind::Phone])
            .unwrap()
            .unwrap();
        assert_eq!(record.contacts.len(), 1, "only the contacts held");
        let shown = format!("{record:?}");
        assert!(!shown.contains("saanvi") && !shown.contains("C-1001"), "{shown}");

        let opener = Opener::new(kms, CacheLimits::default());
        let opened = opener.open(&token, &record).unwrap();
        assert_eq!(opened.customer_key.expose_secret(), "C-1001");
        assert_eq!(
            opened.contact(ContactKind::Email).unwrap().expose(),
            "saanvi@example.in"
        );
        // The key is cached: a second record costs no KMS call.
        opener.open(&token, &record).unwrap();
        assert_eq!(opener.kms_decrypts(), 1);
    }

    #[test]
    fn a_record_does_not_open_for_another_token() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, kms) = vault(dir.path());
        let (a, _) = vault.tokenize(&CustomerKey::new("C-1")).unwrap();
        let (b, _) = vault.tokenize(&CustomerKey::new("C-2")).unwrap();
        let record = vault.sealed(&a, &[]).unwrap().unwrap();
        let opener = Opener::new(kms, CacheLimits::default());
        assert!(matches!(opener.open(&b, &record), Err(Error::Corrupt { .. })));
        assert!(vault.sealed(&Token::from_bytes([9; 16]), &[]).unwrap().is_none());
    }

    #[test]
    fn another_master_key_cannot_open() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, _) = vault(dir.path());
        let (token, _) = vault.tokenize(&CustomerKey::new("C-1")).unwrap();
        let record = vault.sealed(&token, &[]).unwrap().unwrap();
        let other: Arc<dyn Kms> = Arc::new(LocalKms::open(&dir.path().join("other-kms")).unwrap());
        assert!(
            Opener::new(other, CacheLimits::default())
                .open(&token, &record)
                .is_err()
        );
    }
}
