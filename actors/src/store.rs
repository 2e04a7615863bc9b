//! The shard's durable state in sled: one tree per partition holding each customer's
//! snapshot under her token, and the partition's last applied stream position (with
//! the id of the stream instance it is a position in) under a key no token can take. A checkpoint writes both in one atomic batch.

use std::path::Path;

use persona_bus::Position;
use persona_event::Token;

use crate::Error;

/// Key of the last applied position; tokens start with `tk_`, so it cannot collide.
const POSITION_KEY: &[u8] = b"\0position";
/// Prefix of the reminder index: `\0due/` + token -> when her earliest deferred match
/// is due (microseconds, big-endian), so due reminders are found without reading
/// every customer.
const DUE_PREFIX: &[u8] = b"\0due/";
/// Key of the instant scheduled sweeps ran up to, in the `meta` tree.
const SWEPT_KEY: &[u8] = b"swept_until";
/// Key of persisted offer budget use, in the `meta` tree.
const BUDGET_KEY: &[u8] = b"budget_used";
/// Prefix of the partitions being acquired from another shard, in the `meta` tree.
const ACQUIRING_PREFIX: &[u8] = b"acquiring/";

#[derive(Clone, Debug)]
pub(crate) struct Store {
    db: sled::Db,
}

impl Store {
    pub(crate) fn open(dir: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
        Ok(Store { db: open_db(dir)? })
    }

    pub(crate) fn partition(&self, p: u32) -> Result<PartitionStore, Error> {
        Ok(PartitionStore {
            tree: self.db.open_tree(format!("p{p:05}")).map_err(Error::Store)?,
        })
    }

    /// The partitions this store has trees for.
    pub(crate) fn partitions(&self) -> Result<Vec<u32>, Error> {
        Ok(self
            .db
            .tree_names()
            .iter()
            .filter_map(|n| std::str::from_utf8(n).ok()?.strip_prefix('p')?.parse().ok())
            .collect())
    }

    /// The instant scheduled sweeps were run up to, if any run did.
    pub(crate) fn swept_until(&self) -> Result<Option<i64>, Error> {
        let meta = self.db.open_tree("meta").map_err(Error::Store)?;
        Ok(meta
            .get(SWEPT_KEY)
            .map_err(Error::Store)?
            .and_then(|b| Some(i64::from_be_bytes(b.as_ref().try_into().ok()?))))
    }

    pub(crate) fn save_swept_until(&self, until: i64) -> Result<(), Error> {
        let meta = self.db.open_tree("meta").map_err(Error::Store)?;
        meta.insert(SWEPT_KEY, &until.to_be_bytes()).map_err(Error::Store)?;
        meta.flush().map_err(Error::Store)?;
        Ok(())
    }

    /// Partitions whose handoff to this shard started and did not finish, with the
    /// shard they come from (empty: none): their state here is incomplete, so they are
    /// not fed until a move completes.
    pub(crate) fn acquiring(&self) -> Result<Vec<(u32, String)>, Error> {
        let meta = self.db.open_tree("meta").map_err(Error::Store)?;
        meta.scan_prefix(ACQUIRING_PREFIX)
            .map(|kv| {
                let (k, v) = kv.map_err(Error::Store)?;
                let corrupt = || Error::Corrupt("acquiring".into());
                let p = k[ACQUIRING_PREFIX.len()..].try_into().map_err(|_| corrupt())?;
                let from = String::from_utf8(v.to_vec()).map_err(|_| corrupt())?;
                Ok((u32::from_be_bytes(p), from))
            })
            .collect()
    }

    /// Marks `partition` as being acquired from shard `from` (`Some`), or done (`None`).
    pub(crate) fn set_acquiring(&self, partition: u32, from: Option<&str>) -> Result<(), Error> {
        let meta = self.db.open_tree("meta").map_err(Error::Store)?;
        let key = [ACQUIRING_PREFIX, &partition.to_be_bytes()[..]].concat();
        match from {
            Some(from) => meta.insert(key, from.as_bytes()).map(drop),
            None => meta.remove(key).map(drop),
        }
        .map_err(Error::Store)?;
        meta.flush().map_err(Error::Store)?;
        Ok(())
    }

    pub(crate) fn budget_used(&self) -> Result<Vec<(String, u64)>, Error> {
        let meta = self.db.open_tree("meta").map_err(Error::Store)?;
        match meta.get(BUDGET_KEY).map_err(Error::Store)? {
            None => Ok(Vec::new()),
            Some(bytes) => postcard::from_bytes(&bytes).map_err(|e| Error::Corrupt(e.to_string())),
        }
    }

    pub(crate) fn save_budget_used(&self, used: &[(String, u64)]) -> Result<(), Error> {
        let meta = self.db.open_tree("meta").map_err(Error::Store)?;
        let bytes = postcard::to_stdvec(used).expect("budget serializes");
        meta.insert(BUDGET_KEY, bytes).map_err(Error::Store)?;
        meta.flush().map_err(Error::Store)?;
        Ok(())
    }
}

/// sled's page cache: counted in a shard's memory beside its hot customers (whose
/// snapshots it mostly caches again), so it is kept small; the OS caches the files too.
const CACHE_BYTES: u64 = 64 << 20;

/// Opens the sled store. sled frees a closed store's lock lazily (its last references
/// go with epoch-based reclamation), so a store a shard of this process closed a
/// moment ago can look held: the lock is tried for up to a second.
pub(crate) fn open_db(dir: &Path) -> Result<sled::Db, Error> {
    const ATTEMPTS: u32 = 40;
    let mut attempt = 1;
    loop {
        match sled::Config::new().path(dir).cache_capacity(CACHE_BYTES).open() {
            // sled reports a held lock only in its message.
            Err(sled::Error::Io(io)) if attempt < ATTEMPTS && io.to_string().starts_with("could not acquire lock") => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other.map_err(Error::Store),
        }
    }
}

/// One key and value of a partition's tree, as a handoff moves it.
pub type StoreEntry = (Vec<u8>, Vec<u8>);

/// One partition's tree.
#[derive(Clone, Debug)]
pub(crate) struct PartitionStore {
    tree: sled::Tree,
}

impl PartitionStore {
    /// The last applied position in stream `stream`; 0 when the checkpoint is of
    /// another stream instance or there is none.
    pub(crate) fn position(&self, stream: u64) -> Result<Position, Error> {
        let Some(b) = self.tree.get(POSITION_KEY).map_err(Error::Store)? else {
            return Ok(0);
        };
        // The stream's id, then the position: 64 bits in stores written before
        // positions were widened for Redis entry ids, 128 since.
        let corrupt = || Error::Corrupt("position".into());
        let (id, pos) = b.as_ref().split_at_checked(8).ok_or_else(corrupt)?;
        let same = u64::from_be_bytes(id.try_into().map_err(|_| corrupt())?) == stream;
        let pos = match pos.len() {
            8 => u128::from(u64::from_be_bytes(pos.try_into().map_err(|_| corrupt())?)),
            16 => u128::from_be_bytes(pos.try_into().map_err(|_| corrupt())?),
            _ => return Err(corrupt()),
        };
        Ok(if same { pos } else { 0 })
    }

    pub(crate) fn load(&self, token: &Token) -> Result<Option<sled::IVec>, Error> {
        self.tree.get(token.as_str()).map_err(Error::Store)
    }

    /// Writes the snapshots (with each customer's reminder entry) and the position
    /// atomically, then makes them durable.
    pub(crate) fn checkpoint<'a>(
        &self,
        snapshots: impl Iterator<Item = (&'a Token, Vec<u8>, Option<i64>)>,
        stream: u64,
        position: Position,
    ) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        for (token, bytes, due) in snapshots {
            batch.insert(token.as_str(), bytes);
            let key = [DUE_PREFIX, token.as_str().as_bytes()].concat();
            match due {
                Some(due) => batch.insert(key, &due.to_be_bytes()),
                None => batch.remove(key),
            }
        }
        batch.insert(
            POSITION_KEY,
            [&stream.to_be_bytes()[..], &position.to_be_bytes()[..]].concat(),
        );
        self.tree.apply_batch(batch).map_err(Error::Store)?;
        self.tree.flush().map_err(Error::Store)?;
        Ok(())
    }

    /// Every entry of the partition (customers, reminders, the position), for a
    /// handoff to another shard.
    pub(crate) fn entries(&self) -> Result<Vec<StoreEntry>, Error> {
        self.tree
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Error::Store))
            .collect()
    }

    /// Replaces the partition's whole content with `entries` (a handoff from another
    /// shard), durably.
    pub(crate) fn replace(&self, entries: impl IntoIterator<Item = StoreEntry>) -> Result<u64, Error> {
        self.tree.clear().map_err(Error::Store)?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for (k, v) in entries {
            batch.insert(k, v);
            n += 1;
        }
        self.tree.apply_batch(batch).map_err(Error::Store)?;
        self.tree.flush().map_err(Error::Store)?;
        Ok(n)
    }

    /// The customers with a deferred match due by `until` (microseconds).
    pub(crate) fn due(&self, until: i64) -> Result<Vec<Token>, Error> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(DUE_PREFIX) {
            let (k, v) = kv.map_err(Error::Store)?;
            let due = i64::from_be_bytes(v.as_ref().try_into().map_err(|_| Error::Corrupt("reminder".into()))?);
            if due <= until {
                let token = std::str::from_utf8(&k[DUE_PREFIX.len()..])
                    .ok()
                    .and_then(|s| Token::parse(s).ok())
                    .ok_or_else(|| Error::Corrupt("reminder key".into()))?;
                out.push(token);
            }
        }
        Ok(out)
    }

    /// Deletes a forgotten customer's snapshot and reminder entry (one batch; made
    /// durable by the next checkpoint's flush).
    pub(crate) fn erase(&self, token: &Token) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        batch.remove(token.as_str());
        batch.remove([DUE_PREFIX, token.as_str().as_bytes()].concat());
        self.tree.apply_batch(batch).map_err(Error::Store)
    }

    /// Every stored customer: (token, snapshot).
    pub(crate) fn customers(&self) -> impl Iterator<Item = Result<(Token, sled::IVec), Error>> + '_ {
        self.tree.iter().filter_map(|kv| match kv {
            Err(e) => Some(Err(Error::Store(e))),
            // Position and reminder entries start with a byte no token has.
            Ok((k, _)) if k.first() == Some(&0) => None,
            Ok((k, v)) => Some(
                std::str::from_utf8(&k)
                    .ok()
                    .and_then(|s| Token::parse(s).ok())
                    .map(|t| (t, v))
                    .ok_or_else(|| Error::Corrupt("customer key".into())),
            ),
        })
    }
}
