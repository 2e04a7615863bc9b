//! The vault's key ring: data keys by purpose and version, stored wrapped in the
//! `keys` tree, unwrapped through the KMS at most once per process and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::kms::{DataKey, EncryptionContext, Kms, WrappedKey, context};
use crate::{Error, Result};

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
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Index => "index",
            Purpose::EventId => "event-id",
            Purpose::Vault => "vault",
        }
    }

    fn context(self, version: u32) -> EncryptionContext {
        let version = version.to_string();
        context([
            ("purpose", self.as_str()),
            ("version", &version),
            ("store", "persona-vault"),
        ])
    }

    fn entry(self, version: u32) -> Vec<u8> {
        format!("{}/{version:010}", self.as_str()).into_bytes()
    }
}

/// Keys held in memory. HMAC keys have one version forever (rotating them would
/// change every token look-up); the vault key gets a new version per process that
/// writes, so a writer never needs Decrypt on vault keys.
pub(crate) struct KeyRing {
    kms: Arc<dyn Kms>,
    tree: sled::Tree,
    db: sled::Db,
    index: OnceLock<DataKey>,
    event_id: OnceLock<DataKey>,
    writer: OnceLock<(u32, DataKey)>,
    readers: RwLock<HashMap<u32, Arc<DataKey>>>,
    init: Mutex<()>,
}

impl KeyRing {
    pub(crate) fn new(db: sled::Db, tree: sled::Tree, kms: Arc<dyn Kms>) -> Self {
        Self {
            kms,
            tree,
            db,
            index: OnceLock::new(),
            event_id: OnceLock::new(),
            writer: OnceLock::new(),
            readers: RwLock::new(HashMap::new()),
            init: Mutex::new(()),
        }
    }

    pub(crate) fn kms(&self) -> &dyn Kms {
        self.kms.as_ref()
    }

    pub(crate) fn index_key(&self) -> Result<&DataKey> {
        self.fixed(&self.index, Purpose::Index)
    }

    pub(crate) fn event_id_key(&self) -> Result<&DataKey> {
        self.fixed(&self.event_id, Purpose::EventId)
    }

    /// A single-version key: unwrapped if stored, else made and stored.
    fn fixed<'a>(&'a self, cell: &'a OnceLock<DataKey>, purpose: Purpose) -> Result<&'a DataKey> {
        if let Some(key) = cell.get() {
            return Ok(key);
        }
        let _guard = self.init.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = cell.get() {
            return Ok(key);
        }
        let ctx = purpose.context(1);
        let entry = purpose.entry(1);
        let key = match self.tree.get(&entry)? {
            Some(wrapped) => self.kms.decrypt(&WrappedKey::from_bytes(wrapped.to_vec()), &ctx)?,
            None => {
                let (key, wrapped) = self.kms.generate_data_key(&ctx)?;
                self.tree.insert(entry, wrapped.as_bytes())?;
                self.tree.flush()?;
                key
            }
        };
        Ok(cell.get_or_init(|| key))
    }

    /// The vault key this process seals with, and its version: made on first use.
    pub(crate) fn writer(&self) -> Result<(u32, &DataKey)> {
        if let Some((version, key)) = self.writer.get() {
            return Ok((*version, key));
        }
        let _guard = self.init.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((version, key)) = self.writer.get() {
            return Ok((*version, key));
        }
        let version = u32::try_from(self.db.generate_id()? + 1).map_err(|_| Error::Kms {
            message: "vault key versions exhausted".to_owned(),
        })?;
        let (key, wrapped) = self.kms.generate_data_key(&Purpose::Vault.context(version))?;
        self.tree.insert(Purpose::Vault.entry(version), wrapped.as_bytes())?;
        self.tree.flush()?;
        let (version, key) = self.writer.get_or_init(|| (version, key));
        Ok((*version, key))
    }

    /// The vault key of `version`, for opening a sealed record.
    pub(crate) fn reader(&self, version: u32) -> Result<Arc<DataKey>> {
        if let Some((v, key)) = self.writer.get()
            && *v == version
        {
            return Ok(Arc::new(key.clone()));
        }
        if let Some(key) = self.readers.read().unwrap_or_else(|e| e.into_inner()).get(&version) {
            return Ok(key.clone());
        }
        let wrapped = self
            .tree
            .get(Purpose::Vault.entry(version))?
            .ok_or_else(|| Error::MissingKey {
                purpose: "vault".to_owned(),
                version,
            })?;
        let key = Arc::new(self.kms.decrypt(
            &WrappedKey::from_bytes(wrapped.to_vec()),
            &Purpose::Vault.context(version),
        )?);
        self.readers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version, key.clone());
        Ok(key)
    }
}
