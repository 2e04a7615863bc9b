//! The vault (sled, trusted zone only): customer key -> random token, token -> sealed
//! customer key, and sealed contact data per token and kind.
//!
//! Trees: `keys` (wrapped data keys by purpose and version), `index`
//! (HMAC-SHA256(index key, customer key) -> token), `reverse` (token -> AES-256-GCM of
//! the customer key, associated data binding the token), `contacts` ((token, kind) ->
//! AES-256-GCM of the value, associated data binding token and kind). Every sealed
//! record starts with the version of the key that sealed it and a random 96-bit nonce.

mod keys;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use persona_event::{ContactKind, EventId, Token};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::kms::{DataKey, Kms};
use crate::pii::{CustomerKey, Pii};
use crate::{Error, Result};

use keys::KeyRing;

const NONCE_LEN: usize = 12;
const REVERSE_AAD: &[u8] = b"persona/reverse/v1";
const CONTACT_AAD: &[u8] = b"persona/contact/v1";

/// The trusted zone's token vault over a sled store.
pub struct Vault {
    path: PathBuf,
    db: sled::Db,
    index: sled::Tree,
    reverse: sled::Tree,
    contacts: sled::Tree,
    keys: KeyRing,
    issued: AtomicUsize,
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
    /// Opens (or creates) the vault in `dir`. Data keys come from `kms` on first use.
    pub fn open(dir: &Path, kms: Arc<dyn Kms>) -> Result<Self> {
        let db = sled::Config::new().path(dir).flush_every_ms(Some(1_000)).open()?;
        let keys = KeyRing::new(db.clone(), db.open_tree("keys")?, kms);
        Ok(Self {
            path: dir.to_owned(),
            index: db.open_tree("index")?,
            reverse: db.open_tree("reverse")?,
            contacts: db.open_tree("contacts")?,
            db,
            keys,
            issued: AtomicUsize::new(0),
        })
    }

    /// The customer's token: the one she already has, or a new random one. Returns
    /// whether the token was issued by this call. Race-free: concurrent callers with
    /// the same key get the same token. A known key costs one HMAC and one read.
    pub fn tokenize(&self, key: &CustomerKey) -> Result<(Token, bool)> {
        let slot = self.index_slot(key)?;
        if let Some(found) = self.index.get(slot)? {
            return Ok((token_from_slice(&found)?, false));
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
                Ok((token, true))
            }
            Err(lost) => {
                self.reverse.remove(bytes)?;
                let current = lost.current.ok_or(Error::Corrupt { what: "index" })?;
                Ok((token_from_slice(&current)?, false))
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
        let mut mac = hmac(self.keys.event_id_key()?);
        mac.update(&(source.len() as u64).to_be_bytes());
        mac.update(source.as_bytes());
        mac.update(material);
        Ok(EventId::from_bytes(first_128(&mac.finalize().into_bytes())))
    }

    /// Tokens issued through this handle since it was opened.
    pub fn tokens_issued(&self) -> usize {
        self.issued.load(Ordering::Relaxed)
    }

    /// Tokens in the store (walks the index: for reports, not hot paths).
    pub fn token_count(&self) -> usize {
        self.index.len()
    }

    /// Writes everything to disk. Writes are otherwise flushed about once a second.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn index_slot(&self, key: &CustomerKey) -> Result<[u8; 32]> {
        let mut mac = hmac(self.keys.index_key()?);
        mac.update(key.expose_secret().as_bytes());
        Ok(mac.finalize().into_bytes().into())
    }

    fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let (version, key) = self.keys.writer()?;
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

    fn open_sealed(&self, sealed: &[u8], aad: &[u8], what: &'static str) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < 4 + NONCE_LEN {
            return Err(Error::Corrupt { what });
        }
        let (version, rest) = sealed.split_at(4);
        let version = u32::from_be_bytes(version.try_into().map_err(|_| Error::Corrupt { what })?);
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let key = self.keys.reader(version)?;
        cipher(&key)
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .map(Zeroizing::new)
            .map_err(|_| Error::Corrupt { what })
    }
}

fn hmac(key: &DataKey) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret()).expect("hmac takes any key length")
}

fn cipher(key: &DataKey) -> Aes256Gcm {
    Aes256Gcm::new(key.expose_secret().into())
}

fn first_128(digest: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
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
    }
}

fn kind_from_byte(b: u8) -> Option<ContactKind> {
    Some(match b {
        1 => ContactKind::Email,
        2 => ContactKind::Phone,
        3 => ContactKind::Device,
        4 => ContactKind::Other,
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
        for kind in [
            ContactKind::Email,
            ContactKind::Phone,
            ContactKind::Device,
            ContactKind::Other,
        ] {
            assert_eq!(kind_from_byte(kind_byte(kind)), Some(kind));
        }
    }
}
