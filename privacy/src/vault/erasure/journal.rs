//! The erasure journal, `DATA/trusted/erasures/`: every forgotten customer, written
//! ahead of her erasure in the vault, and how many of those erasures the cloud zone
//! has applied.
//!
//! It lives beside the vault, not in it, so that a vault restored from a backup made
//! before an erasure gets it back ([`Vault::enforce`](crate::Vault::enforce)), and it
//! is the trusted zone's outbox of `forget` events for the cloud.
//!
//! `journal.jsonl`: one line per erasure, `{"at", "token", "index"}`: when, the
//! token that stood for her, and her index slot (the HMAC of her customer key under
//! the index key, hex): a keyed hash, not her key. Lines are appended and synced one
//! by one; a last line torn by a crash (it has no newline) belongs to an erasure that
//! never reached the vault, and is cut off before the next append.
//!
//! `cloud.cursor`: how many journal entries, from the first, the cloud zone has
//! applied; replaced atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use data_encoding::HEXLOWER;
use persona_event::Token;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const JOURNAL: &str = "journal.jsonl";
const CURSOR: &str = "cloud.cursor";

/// One forgotten customer: her former token and index slot, and when.
#[derive(Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The token that stood for her: what the cloud zone knows her by.
    pub token: Token,
    /// When she was forgotten.
    pub at: DateTime<Utc>,
    /// HMAC-SHA256(index key, customer key): her slot in the vault's index.
    pub(crate) slot: [u8; 32],
}

impl std::fmt::Debug for Erasure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The slot is a keyed hash of her key: not printed, like the key itself.
        f.debug_struct("Erasure")
            .field("token", &self.token)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// A journal line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(with = "persona_event::time::rfc3339")]
    at: DateTime<Utc>,
    token: Token,
    index: String,
}

/// The erasure journal of one data directory (see the module docs).
#[derive(Debug)]
pub struct ErasureJournal {
    dir: PathBuf,
    entries: Vec<Erasure>,
    /// Bytes of `journal.jsonl` holding whole lines; a torn tail lies past them.
    whole: u64,
    /// Entries the cloud zone has applied, from the first.
    delivered: usize,
}

impl ErasureJournal {
    /// Reads the journal in `dir`; a missing one is empty (nothing is created until
    /// the first erasure). Fails on a line that is not a whole erasure, other than a
    /// torn last one.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(JOURNAL);
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let (entries, whole) = parse(&text).map_err(|reason| Error::Journal {
            path: path.clone(),
            reason,
        })?;
        if whole < text.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                "the erasure journal ends in a torn line (a forget interrupted before it took effect): ignored"
            );
        }
        let delivered = read_cursor(&dir.join(CURSOR))?;
        if delivered > entries.len() {
            return Err(Error::Journal {
                path: dir.join(CURSOR),
                reason: format!(
                    "says the cloud applied {delivered} erasures, but the journal holds {}",
                    entries.len()
                ),
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
            entries,
            whole,
            delivered,
        })
    }

    /// Every erasure, oldest first.
    pub fn entries(&self) -> &[Erasure] {
        &self.entries
    }

    /// The erasures the cloud zone has not applied yet, oldest first.
    pub fn undelivered(&self) -> &[Erasure] {
        &self.entries[self.delivered..]
    }

    /// Records, durably, that the cloud zone has applied the first `count` erasures
    /// (its state for them is deleted and checkpointed). Never moves backwards.
    pub fn mark_delivered(&mut self, count: usize) -> Result<()> {
        let count = count.min(self.entries.len());
        if count <= self.delivered {
            return Ok(());
        }
        let path = self.dir.join(CURSOR);
        let partial = self.dir.join(format!("{CURSOR}.partial"));
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::create(&partial).map_err(io)?;
        file.write_all(format!("{count}\n").as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&partial, &path).map_err(io)?;
        sync_dir(&self.dir);
        self.delivered = count;
        Ok(())
    }

    /// Appends an erasure and syncs it, before the vault changes: a crash after this
    /// leaves an erasure the next [`Vault::enforce`](crate::Vault::enforce) completes.
    pub(crate) fn append(&mut self, erasure: Erasure) -> Result<()> {
        let path = self.dir.join(JOURNAL);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut file = open_private(&path).map_err(io)?;
        if file.metadata().map_err(io)?.len() > self.whole {
            file.set_len(self.whole).map_err(io)?;
        }
        let line = Line {
            at: erasure.at,
            token: erasure.token.clone(),
            index: HEXLOWER.encode(&erasure.slot),
        };
        let mut text = serde_json::to_string(&line).expect("an erasure line serializes");
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.whole += text.len() as u64;
        self.entries.push(erasure);
        Ok(())
    }
}

/// The whole lines of a journal and the bytes they take; a last line without its
/// newline is torn and left out. The error names the line, not its content.
fn parse(text: &[u8]) -> Result<(Vec<Erasure>, u64), String> {
    let mut entries = Vec::new();
    let mut whole = 0usize;
    for (i, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        let Some(body) = line.strip_suffix(b"\n") else {
            break;
        };
        whole += line.len();
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}", i + 1);
        let line: Line = serde_json::from_slice(body).map_err(|_| bad("not an erasure record"))?;
        let slot = HEXLOWER
            .decode(line.index.as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| bad("`index` is not 64 lowercase hex digits"))?;
        entries.push(Erasure {
            token: line.token,
            at: line.at,
            slot,
        });
    }
    Ok((entries, whole as u64))
}

fn read_cursor(path: &Path) -> Result<usize> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|_| Error::Journal {
            path: path.to_owned(),
            reason: "the cursor is not a count".to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Makes a rename durable. Best effort: not every platform can open a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(token: u8, slot: u8) -> String {
        format!(
            "{{\"at\":\"2026-05-01T10:00:00Z\",\"token\":\"{}\",\"index\":\"{}\"}}\n",
            Token::from_bytes([token; 16]),
            HEXLOWER.encode(&[slot; 32])
        )
    }

    #[test]
    fn whole_lines_parse_and_a_torn_tail_is_left_out() {
        let text = line(1, 2) + "\n" + &line(3, 4);
        let (entries, whole) = parse(text.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(whole as usize, text.len());
        assert_eq!(entries[1].token, Token::from_bytes([3; 16]));
        assert_eq!(entries[1].slot, [4; 32]);

        let torn = text.clone() + &line(5, 6)[..40];
        let (entries, whole) = parse(torn.as_bytes()).unwrap();
        assert_eq!((entries.len(), whole as usize), (2, text.len()));
        // Complete but for its newline: still torn (the write did not finish).
        let unfinished = text.clone() + line(5, 6).trim_end();
        assert_eq!(parse(unfinished.as_bytes()).unwrap().0.len(), 2);
    }

    #[test]
    fn a_broken_line_is_named_by_number_without_its_content() {
        let text = line(1, 2) + "{\"at\":\"secret-value\"}\n";
        let err = parse(text.as_bytes()).unwrap_err();
        assert_eq!(err, "line 2: not an erasure record");
        let short = line(1, 2).replace(&HEXLOWER.encode(&[2; 32]), "abcd");
        assert_eq!(
            parse(short.as_bytes()).unwrap_err(),
            "line 1: `index` is not 64 lowercase hex digits"
        );
    }

    #[test]
    fn debug_leaves_the_slot_out() {
        let (entries, _) = parse(line(1, 0xab).as_bytes()).unwrap();
        let shown = format!("{:?}", entries[0]);
        assert!(shown.contains("tk_"), "{shown}");
        assert!(!shown.contains("abab") && !shown.contains("171"), "{shown}");
    }
}
