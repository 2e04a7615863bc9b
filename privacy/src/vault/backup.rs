//! Backup and restore of the vault: every tree of its store (wrapped keys included)
//! in one file that ends with a SHA-256 of all before it. Losing the vault orphans
//! every token, so a backup is checked whole before a restore writes anything, and a
//! restore is checked against the KMS (every key unwraps) before it replaces a vault.
//!
//! A backup holds wrapped keys and sealed records, no plaintext: it is no use without
//! the KMS. For the `local` provider that means its `master.key` file, which is
//! deliberately not in the backup (a file holding both would be the whole secret).
//!
//! Format 1: `PERSONA-VAULT-BACKUP\n`, the format as u32; then per tree `T`, the
//! name (u32 length + bytes), the entry count (u64) and the entries (u32 length + key,
//! u32 length + value); then `E` and the SHA-256. Integers are big-endian.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{CONTACTS_TREE, CacheLimits, ErasureJournal, INDEX_TREE, KEYS_TREE, REVERSE_TREE, Vault, open_db};
use crate::kms::Kms;
use crate::{Error, Result};

const MAGIC: &[u8] = b"PERSONA-VAULT-BACKUP\n";
const FORMAT: u32 = 1;
const TREE: u8 = b'T';
const END: u8 = b'E';
/// Trees holding the vault's data: any entry in one makes a vault non-empty.
const DATA_TREES: [&str; 4] = [KEYS_TREE, INDEX_TREE, REVERSE_TREE, CONTACTS_TREE];

/// What a backup or restore copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    pub trees: usize,
    pub entries: u64,
    pub tokens: u64,
    pub contacts: u64,
    pub bytes: u64,
    /// Keys unwrapped through the KMS to prove the restored vault opens (restore only).
    pub keys_verified: usize,
    /// Erasures of the journal the backup predates, applied to the restored vault
    /// before it took the old one's place (restore only).
    pub erasures_reapplied: u64,
}

impl Vault {
    /// Writes the whole store to a new file `to` (mode 0600; an existing file is
    /// refused). Consistent as long as nothing writes to this vault meanwhile, which
    /// `persona vault backup` guarantees by holding the store alone.
    pub fn backup(&self, to: &Path) -> Result<BackupReport> {
        write(&self.db, to)
    }
}

/// Writes every tree of `db` to a new file `to`, through a `.partial` file that is
/// renamed once complete and synced.
pub(super) fn write(db: &sled::Db, to: &Path) -> Result<BackupReport> {
    let partial = with_suffix(to, ".partial");
    if to.exists() {
        return Err(backup_error(to, "the file exists"));
    }
    let io = |source| Error::Io {
        path: partial.clone(),
        source,
    };
    let file = create_private(&partial).map_err(io)?;
    let mut out = HashingWriter::new(BufWriter::new(file));
    let mut report = BackupReport::default();
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&FORMAT.to_be_bytes()).map_err(io)?;
    let mut names = db.tree_names();
    names.sort();
    for name in names {
        let tree = db.open_tree(&name)?;
        out.write_all(&[TREE]).map_err(io)?;
        write_bytes(&mut out, &name).map_err(io)?;
        out.write_all(&(tree.len() as u64).to_be_bytes()).map_err(io)?;
        let mut written = 0u64;
        for entry in tree.iter() {
            let (k, v) = entry?;
            write_bytes(&mut out, &k).map_err(io)?;
            write_bytes(&mut out, &v).map_err(io)?;
            written += 1;
        }
        // `len` walks the tree too; a writer between the two would show here.
        if written != tree.len() as u64 {
            return Err(backup_error(to, "the vault changed during the backup"));
        }
        count(&mut report, &name, written);
    }
    out.write_all(&[END]).map_err(io)?;
    let (inner, digest, bytes) = out.finish();
    let mut inner = inner;
    inner.write_all(&digest).map_err(io)?;
    let file = inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    fs::rename(&partial, to).map_err(|source| Error::Io {
        path: to.to_owned(),
        source,
    })?;
    sync_parent(to);
    report.bytes = bytes + digest.len() as u64;
    Ok(report)
}

/// Restores the backup `from` as the vault in `dir`. The whole file is checked
/// first; the copy is built beside `dir`, opened with `kms` and every key in it
/// unwrapped, every erasure of `erasures` made true of it (a backup from before an
/// erasure must not bring the customer back), and only then put in place. A vault
/// with data in `dir` is replaced only when `force` is set.
pub fn restore(
    from: &Path,
    dir: &Path,
    kms: Arc<dyn Kms>,
    force: bool,
    erasures: &mut ErasureJournal,
) -> Result<BackupReport> {
    verify_file(from)?;
    if !force && has_data(dir)? {
        return Err(Error::NotEmpty { path: dir.to_owned() });
    }
    let staging = with_suffix(dir, ".restoring");
    remove_dir_if_exists(&staging)?;
    let built = build(from, &staging).and_then(|mut report| {
        let vault = Vault::open_with(&staging, kms, CacheLimits::default())?;
        report.keys_verified = vault.keys.verify_all()?;
        report.erasures_reapplied = vault.enforce(erasures)?;
        if report.erasures_reapplied > 0 {
            report.tokens = vault.reverse.len() as u64;
            report.contacts = vault.contacts.len() as u64;
        }
        vault.flush()?;
        Ok(report)
    });
    let report = match built {
        Ok(report) => report,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    // Two renames: the old vault steps aside, the new one takes its place; the old
    // one is removed only once the new one is there.
    let replaced = with_suffix(dir, ".replaced");
    remove_dir_if_exists(&replaced)?;
    let rename = |a: &Path, b: &Path| {
        fs::rename(a, b).map_err(|source| Error::Io {
            path: b.to_owned(),
            source,
        })
    };
    if dir.exists() {
        rename(dir, &replaced)?;
    }
    rename(&staging, dir)?;
    sync_parent(dir);
    remove_dir_if_exists(&replaced)?;
    Ok(report)
}

/// Reads the backup through and compares its checksum, writing nothing.
fn verify_file(from: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: from.to_owned(),
        source,
    };
    let len = fs::metadata(from).map_err(io)?.len();
    if len < (MAGIC.len() + 4 + 1 + 32) as u64 {
        return Err(backup_error(from, "not a persona vault backup"));
    }
    let mut file = BufReader::new(File::open(from).map_err(io)?);
    let mut hasher = Sha256::new();
    let mut left = len - 32;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buf[..n]).map_err(io)?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let mut stored = [0u8; 32];
    file.read_exact(&mut stored).map_err(io)?;
    if hasher.finalize().as_slice() != stored {
        return Err(backup_error(from, "damaged (checksum mismatch)"));
    }
    Ok(())
}

/// Writes the backup's trees into a new store at `dir`.
fn build(from: &Path, dir: &Path) -> Result<BackupReport> {
    let bad = |reason| backup_error(from, reason);
    let mut file = BufReader::new(File::open(from).map_err(|source| Error::Io {
        path: from.to_owned(),
        source,
    })?);
    let mut magic = vec![0u8; MAGIC.len()];
    file.read_exact(&mut magic)
        .map_err(|_| bad("not a persona vault backup"))?;
    if magic != MAGIC {
        return Err(bad("not a persona vault backup"));
    }
    let format = u32::from_be_bytes(read_array(&mut file).map_err(|_| bad("truncated"))?);
    if format != FORMAT {
        return Err(bad("made by another persona version (unknown format)"));
    }
    let db = open_db(dir)?;
    let mut report = BackupReport::default();
    loop {
        let [tag] = read_array(&mut file).map_err(|_| bad("truncated"))?;
        match tag {
            END => break,
            TREE => {}
            _ => return Err(bad("unexpected record")),
        }
        let name = read_bytes(&mut file).map_err(|_| bad("truncated"))?;
        let entries = u64::from_be_bytes(read_array(&mut file).map_err(|_| bad("truncated"))?);
        let tree = db.open_tree(&name)?;
        let mut batch = sled::Batch::default();
        for _ in 0..entries {
            let k = read_bytes(&mut file).map_err(|_| bad("truncated"))?;
            let v = read_bytes(&mut file).map_err(|_| bad("truncated"))?;
            batch.insert(k, v);
        }
        tree.apply_batch(batch)?;
        count(&mut report, &name, entries);
    }
    db.flush()?;
    report.bytes = fs::metadata(from).map(|m| m.len()).unwrap_or(0);
    Ok(report)
}

/// Whether `dir` holds a vault with any key, token or contact. A directory that is
/// not a vault store at all counts as data: it is not ours to replace.
fn has_data(dir: &Path) -> Result<bool> {
    let empty_dir = match fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    if empty_dir {
        return Ok(false);
    }
    let db = match open_db(dir) {
        Ok(db) => db,
        Err(e @ Error::Busy { .. }) => return Err(e),
        Err(_) => return Ok(true),
    };
    for name in DATA_TREES {
        if !db.open_tree(name)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn count(report: &mut BackupReport, tree: &[u8], entries: u64) {
    report.trees += 1;
    report.entries += entries;
    if tree == REVERSE_TREE.as_bytes() {
        report.tokens = entries;
    } else if tree == CONTACTS_TREE.as_bytes() {
        report.contacts = entries;
    }
}

fn backup_error(path: &Path, reason: &'static str) -> Error {
    Error::Backup {
        path: path.to_owned(),
        reason,
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
            path: dir.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Makes a rename durable. Best effort: not every platform can open a directory.
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("entry larger than 4 GiB"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

fn read_array<const N: usize>(input: &mut impl Read) -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    input.read_exact(&mut buf)?;
    Ok(buf)
}

fn read_bytes(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let len = u32::from_be_bytes(read_array(input)?) as usize;
    let mut buf = Vec::new();
    input.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// A writer that hashes what passes through it and counts the bytes.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_the_encoding() {
        let mut buf = Vec::new();
        write_bytes(&mut buf, b"key").unwrap();
        write_bytes(&mut buf, b"").unwrap();
        let mut input = buf.as_slice();
        assert_eq!(read_bytes(&mut input).unwrap(), b"key");
        assert_eq!(read_bytes(&mut input).unwrap(), b"");
        assert!(read_bytes(&mut input).is_err());
    }

    #[test]
    fn a_truncated_entry_is_an_error() {
        let mut buf = Vec::new();
        write_bytes(&mut buf, b"0123456789").unwrap();
        buf.truncate(8);
        assert_eq!(
            read_bytes(&mut buf.as_slice()).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn hashing_writer_hashes_what_it_writes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"persona").unwrap();
        let (inner, digest, bytes) = w.finish();
        assert_eq!(inner, b"persona");
        assert_eq!(bytes, 7);
        assert_eq!(digest.as_slice(), Sha256::digest(b"persona").as_slice());
    }

    #[test]
    fn suffixes_go_on_the_last_component() {
        assert_eq!(
            with_suffix(Path::new("/d/trusted/vault"), ".restoring"),
            Path::new("/d/trusted/vault.restoring")
        );
    }
}
