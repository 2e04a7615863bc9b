//! Rewrap: every sealed record (reverse map, then contacts) re-encrypted under the
//! newest vault key version, so that older versions can be retired.
//!
//! Resumable after any crash, `kill -9` included: records go in batches, and each
//! batch is one sled transaction that also moves a cursor in the `meta` tree, then a
//! flush. A new run with the same target version starts after the cursor; a record
//! already sealed under the target (or newer) is skipped, so redoing part of a batch
//! is harmless.

use std::ops::{Bound, ControlFlow};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{CONTACT_AAD, Vault, reverse_aad, seal_with, sealed_version, unseal};
use crate::{Error, Result};

/// The `meta` entry holding the cursor of an unfinished rewrap.
const CURSOR: &[u8] = b"rewrap/cursor";

/// How a rewrap goes about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RewrapOptions {
    /// Records per committed (and flushed) batch: the most work a crash can undo.
    pub batch: usize,
}

impl Default for RewrapOptions {
    fn default() -> Self {
        Self { batch: 512 }
    }
}

/// Where a rewrap stands, after each committed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RewrapProgress {
    /// The key version records are moved to.
    pub target: u32,
    /// Records behind the cursor, earlier runs' included.
    pub done: u64,
    /// Records in the vault when this run started.
    pub total: u64,
    /// Records re-encrypted by this run so far.
    pub rewrapped: u64,
}

/// What a rewrap did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RewrapReport {
    /// The version every record is sealed under now; `None` when the vault has no
    /// vault key, hence no sealed record.
    pub target: Option<u32>,
    /// Records this run looked at.
    pub scanned: u64,
    /// Records this run re-encrypted.
    pub rewrapped: u64,
    /// Records an interrupted earlier run had done (skipped by the cursor).
    pub resumed_after: u64,
    /// False when the progress callback stopped the run before the end.
    pub complete: bool,
}

/// The two trees of sealed records, in the order a rewrap walks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Reverse = 0,
    Contacts = 1,
}

impl Stage {
    fn from_byte(b: u8) -> Option<Stage> {
        match b {
            0 => Some(Stage::Reverse),
            1 => Some(Stage::Contacts),
            _ => None,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Stage::Reverse => "reverse",
            Stage::Contacts => "contact",
        }
    }

    /// The associated data a record of this tree was sealed with, from its slot.
    fn aad(self, slot: &[u8]) -> Option<Vec<u8>> {
        match self {
            Stage::Reverse => <[u8; 16]>::try_from(slot).ok().map(|t| reverse_aad(&t)),
            Stage::Contacts => (slot.len() == 17).then(|| [CONTACT_AAD, slot].concat()),
        }
    }
}

/// How far a rewrap to `target` got: every record up to `after` in `stage` (and every
/// record of the stages before) is sealed under `target` or newer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cursor {
    target: u32,
    stage: Stage,
    after: Option<Vec<u8>>,
}

impl Cursor {
    fn start(target: u32) -> Self {
        Self {
            target,
            stage: Stage::Reverse,
            after: None,
        }
    }

    /// Target (4 bytes), stage (1), then the last slot done, if any.
    fn encode(&self) -> Vec<u8> {
        let mut out = self.target.to_be_bytes().to_vec();
        out.push(self.stage as u8);
        if let Some(after) = &self.after {
            out.extend_from_slice(after);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let target = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
        let stage = Stage::from_byte(*bytes.get(4)?)?;
        let after = bytes.get(5..).filter(|a| !a.is_empty()).map(<[u8]>::to_vec);
        Some(Self { target, stage, after })
    }
}

impl Vault {
    /// Re-encrypts every reverse and contact record under the newest vault key
    /// version (see the module docs for how it survives a crash). `on_batch` hears
    /// of each committed batch and may stop the run (`ControlFlow::Break`); a later
    /// call resumes. Nothing else should write to the vault meanwhile: a record
    /// changed under a rewrap keeps its new value and whatever version sealed it.
    pub fn rewrap(
        &self,
        options: &RewrapOptions,
        on_batch: &mut dyn FnMut(&RewrapProgress) -> ControlFlow<()>,
    ) -> Result<RewrapReport> {
        let Some(target) = self.keys.newest_vault_version()? else {
            return Ok(RewrapReport {
                target: None,
                scanned: 0,
                rewrapped: 0,
                resumed_after: 0,
                complete: true,
            });
        };
        let mut cursor = match self.load_cursor()? {
            Some(c) if c.target == target => c,
            Some(c) => {
                tracing::info!(
                    interrupted = c.target,
                    target,
                    "a newer key version exists than the interrupted rewrap's: starting over"
                );
                Cursor::start(target)
            }
            None => Cursor::start(target),
        };
        let total = (self.reverse.len() + self.contacts.len()) as u64;
        let resumed_after = self.records_behind(&cursor)?;
        let batch = options.batch.max(1);
        let mut progress = RewrapProgress {
            target,
            done: resumed_after,
            total,
            rewrapped: 0,
        };
        let mut scanned = 0;
        for stage in [Stage::Reverse, Stage::Contacts] {
            if (stage as u8) < (cursor.stage as u8) {
                continue;
            }
            if stage != cursor.stage {
                cursor.stage = stage;
                cursor.after = None;
            }
            let tree = self.stage_tree(stage);
            loop {
                let lower = match &cursor.after {
                    Some(after) => Bound::Excluded(after.clone()),
                    None => Bound::Unbounded,
                };
                let records = tree
                    .range::<Vec<u8>, _>((lower, Bound::Unbounded))
                    .take(batch)
                    .collect::<Result<Vec<_>, _>>()?;
                let Some((last, _)) = records.last() else {
                    break;
                };
                cursor.after = Some(last.to_vec());
                let changes = self.reseal(stage, target, &records)?;
                progress.rewrapped += self.commit(stage, &changes, &cursor)?;
                scanned += records.len() as u64;
                progress.done += records.len() as u64;
                if on_batch(&progress).is_break() {
                    return Ok(RewrapReport {
                        target: Some(target),
                        scanned,
                        rewrapped: progress.rewrapped,
                        resumed_after,
                        complete: false,
                    });
                }
            }
        }
        self.meta.remove(CURSOR)?;
        self.db.flush()?;
        tracing::info!(target, rewrapped = progress.rewrapped, "vault rewrapped");
        Ok(RewrapReport {
            target: Some(target),
            scanned,
            rewrapped: progress.rewrapped,
            resumed_after,
            complete: true,
        })
    }

    fn load_cursor(&self) -> Result<Option<Cursor>> {
        load_cursor(&self.meta)
    }

    fn stage_tree(&self, stage: Stage) -> &sled::Tree {
        match stage {
            Stage::Reverse => &self.reverse,
            Stage::Contacts => &self.contacts,
        }
    }

    /// Records an earlier run finished, by the cursor: for progress only.
    fn records_behind(&self, cursor: &Cursor) -> Result<u64> {
        let Some(after) = &cursor.after else {
            return Ok(match cursor.stage {
                Stage::Reverse => 0,
                Stage::Contacts => self.reverse.len() as u64,
            });
        };
        let before = match cursor.stage {
            Stage::Reverse => 0,
            Stage::Contacts => self.reverse.len() as u64,
        };
        let tree = self.stage_tree(cursor.stage);
        Ok(before + tree.range(..=after.as_slice()).count() as u64)
    }

    /// The records of a batch not yet under `target`, opened and sealed again:
    /// (slot, value as read, value sealed under `target`).
    fn reseal(
        &self,
        stage: Stage,
        target: u32,
        records: &[(sled::IVec, sled::IVec)],
    ) -> Result<Vec<(sled::IVec, sled::IVec, Vec<u8>)>> {
        let what = stage.what();
        let mut changes = Vec::new();
        for (slot, sealed) in records {
            let version = sealed_version(sealed, what)?;
            if version >= target {
                continue;
            }
            let aad = stage.aad(slot).ok_or(Error::Corrupt { what })?;
            let plain = unseal(&*self.keys.reader(version)?, sealed, &aad, what)?;
            let resealed = seal_with(target, &*self.keys.reader(target)?, &plain, &aad)?;
            changes.push((slot.clone(), sealed.clone(), resealed));
        }
        Ok(changes)
    }

    /// Writes a batch and the cursor in one transaction, then flushes: after this,
    /// no crash can lose the batch. A record that changed since it was read is left
    /// as it is. Returns how many records were replaced.
    fn commit(&self, stage: Stage, changes: &[(sled::IVec, sled::IVec, Vec<u8>)], cursor: &Cursor) -> Result<u64> {
        let cursor = cursor.encode();
        let applied = (self.stage_tree(stage), &self.meta)
            .transaction(|(tree, meta)| {
                let mut applied = 0u64;
                for (slot, read, resealed) in changes {
                    if tree.get(slot)?.as_ref() == Some(read) {
                        tree.insert(slot, resealed.as_slice())?;
                        applied += 1;
                    }
                }
                meta.insert(CURSOR, cursor.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(applied)
            })
            .map_err(|e| match e {
                TransactionError::Storage(source) => Error::Store { source },
                TransactionError::Abort(()) => Error::Corrupt { what: "rewrap batch" },
            })?;
        self.db.flush()?;
        Ok(applied)
    }
}

/// The target version of an interrupted rewrap, if there is one.
pub(crate) fn pending(meta: &sled::Tree) -> Result<Option<u32>> {
    Ok(load_cursor(meta)?.map(|c| c.target))
}

fn load_cursor(meta: &sled::Tree) -> Result<Option<Cursor>> {
    match meta.get(CURSOR)? {
        None => Ok(None),
        Some(bytes) => Cursor::decode(&bytes)
            .map(Some)
            .ok_or(Error::Corrupt { what: "rewrap cursor" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for cursor in [
            Cursor::start(7),
            Cursor {
                target: 3,
                stage: Stage::Contacts,
                after: Some(vec![1; 17]),
            },
            Cursor {
                target: u32::MAX,
                stage: Stage::Reverse,
                after: Some(vec![0xff; 16]),
            },
        ] {
            assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
        assert_eq!(Cursor::decode(&[0, 0, 0, 1, 9]), None, "unknown stage");
        assert_eq!(Cursor::decode(&[0, 0]), None, "short");
    }

    #[test]
    fn associated_data_is_rebuilt_from_the_slot() {
        let token = [5u8; 16];
        assert_eq!(Stage::Reverse.aad(&token), Some(reverse_aad(&token)));
        let mut slot = token.to_vec();
        slot.push(2);
        assert_eq!(
            Stage::Contacts.aad(&slot),
            Some(super::super::contact_aad(&token, persona_event::ContactKind::Phone))
        );
        assert_eq!(Stage::Reverse.aad(&slot), None);
        assert_eq!(Stage::Contacts.aad(&token), None);
    }
}
