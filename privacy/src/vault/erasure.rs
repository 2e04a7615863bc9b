//! The right to erasure in the vault: [`Vault::forget`] destroys a customer's reverse
//! record and vaulted contacts and leaves a tombstone in her index slot, so her token
//! no longer resolves and her customer key is never tokenized again; the erasure is
//! journaled first ([`ErasureJournal`]) for the cloud zone and for restores.
//!
//! A tombstone is the index value `0xff` + her former token (17 bytes, where a live
//! entry is the 16 bytes of a token). It keeps only what refusing her needs: the
//! keyed hash of her key that the slot already was, and the token the cloud knew.

mod journal;

use chrono::{SubsecRound, Utc};
use persona_event::{ContactKind, Token};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{Vault, contact_slot, token_bytes, token_from_slice};
use crate::pii::CustomerKey;
use crate::{Error, Result};

pub use journal::{Erasure, ErasureJournal};

const TOMBSTONE: u8 = 0xff;
const KINDS: [ContactKind; 5] = ContactKind::ALL;

/// What an index slot holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IndexEntry {
    Live(Token),
    Forgotten(Token),
}

/// Reads an index value.
pub(super) fn index_entry(value: &[u8]) -> Result<IndexEntry> {
    match value {
        [TOMBSTONE, token @ ..] if token.len() == 16 => Ok(IndexEntry::Forgotten(token_from_slice(token)?)),
        token => Ok(IndexEntry::Live(token_from_slice(token)?)),
    }
}

fn tombstone(token: &[u8; 16]) -> [u8; 17] {
    let mut value = [TOMBSTONE; 17];
    value[1..].copy_from_slice(token);
    value
}

/// The outcome of [`Vault::forget`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forgotten {
    /// Forgotten now; the token that stood for her.
    Erased(Token),
    /// Forgotten before; the token that stood for her.
    Already(Token),
    /// The vault never gave this customer key a token: nothing was done (and her
    /// records will be tokenized if they come).
    Unknown,
}

impl Vault {
    /// Forgets the customer behind `key` (the right to erasure): the erasure goes to
    /// `journal` first (synced), then one transaction replaces her index entry by a
    /// tombstone and deletes her reverse record and every vaulted contact; then the
    /// store is flushed. From then on her token resolves to nothing, and
    /// [`tokenize`](Vault::tokenize) of her key fails with [`Error::Forgotten`].
    ///
    /// Wants the vault to itself: a record of hers tokenized concurrently could store
    /// a contact after the erasure (the next [`enforce`](Vault::enforce) deletes it).
    pub fn forget(&self, key: &CustomerKey, journal: &mut ErasureJournal) -> Result<Forgotten> {
        let slot = self.index_slot(key)?;
        let Some(found) = self.index.get(slot)? else {
            return Ok(Forgotten::Unknown);
        };
        let token = match index_entry(&found)? {
            IndexEntry::Forgotten(token) => return Ok(Forgotten::Already(token)),
            IndexEntry::Live(token) => token,
        };
        let at = Utc::now().trunc_subsecs(0);
        journal.append(Erasure {
            token: token.clone(),
            at,
            slot,
        })?;
        self.erase(&slot, &token)?;
        self.flush()?;
        tracing::info!(token = %token, "customer forgotten in the vault");
        Ok(Forgotten::Erased(token))
    }

    /// Makes every erasure of `journal` true of this vault again, and returns how many
    /// needed it: after a crash between journal and vault, or in a vault restored from
    /// (or copied back from) a time before them. A slot that holds another live token
    /// (her key tokenized again meanwhile) is forgotten too, and journaled, so the
    /// cloud forgets that token as well. Costs a few reads per erasure when all hold.
    pub fn enforce(&self, journal: &mut ErasureJournal) -> Result<u64> {
        let mut redone = 0;
        for erasure in journal.entries().to_vec() {
            let current = self.index.get(erasure.slot)?.map(|v| index_entry(&v)).transpose()?;
            if matches!(current, Some(IndexEntry::Forgotten(_))) && !self.holds_records_of(&erasure.token)? {
                continue;
            }
            if let Some(IndexEntry::Live(other)) = current
                && other != erasure.token
            {
                // Journaled first, like any erasure; the tombstone below names the
                // journal's first token.
                journal.append(Erasure {
                    token: other.clone(),
                    at: Utc::now().trunc_subsecs(0),
                    slot: erasure.slot,
                })?;
                self.erase(&erasure.slot, &other)?;
            }
            self.erase(&erasure.slot, &erasure.token)?;
            redone += 1;
        }
        if redone > 0 {
            self.flush()?;
            tracing::warn!(
                erasures = redone,
                "erasures missing from the vault were applied again (a vault restored or copied from before them?)"
            );
        }
        Ok(redone)
    }

    /// Whether a reverse record or any contact of `token` is stored.
    fn holds_records_of(&self, token: &Token) -> Result<bool> {
        let bytes = token_bytes(token)?;
        Ok(self.reverse.contains_key(bytes)? || self.contacts.scan_prefix(bytes).next().is_some())
    }

    /// One transaction: the tombstone in `slot`, the reverse record and every contact
    /// of `token` deleted.
    fn erase(&self, slot: &[u8; 32], token: &Token) -> Result<()> {
        let bytes = token_bytes(token)?;
        let stone = tombstone(&bytes);
        self.forget_known(slot);
        let erased = (&self.index, &self.reverse, &self.contacts)
            .transaction(|(index, reverse, contacts)| {
                index.insert(&slot[..], &stone[..])?;
                reverse.remove(&bytes[..])?;
                for kind in KINDS {
                    contacts.remove(&contact_slot(&bytes, kind)[..])?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(source) => Error::Store { source },
                TransactionError::Abort(()) => Error::Corrupt { what: "erasure" },
            });
        // Again after: a look-up racing the erasure may have put it back.
        self.forget_known(slot);
        erased
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_values_tell_live_tokens_from_tombstones() {
        let token = Token::from_bytes([7; 16]);
        assert_eq!(index_entry(&[7; 16]).unwrap(), IndexEntry::Live(token.clone()));
        assert_eq!(index_entry(&tombstone(&[7; 16])).unwrap(), IndexEntry::Forgotten(token));
        // A token whose first byte is 0xff is still a live 16-byte entry.
        assert!(matches!(index_entry(&[0xff; 16]).unwrap(), IndexEntry::Live(_)));
        assert!(index_entry(&[1; 17]).is_err());
        assert!(index_entry(&[1; 3]).is_err());
    }
}
