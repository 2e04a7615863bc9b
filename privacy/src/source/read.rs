//! Reading source files into raw records: CSV with a header row, or JSON Lines. A
//! record that cannot be read whole is refused with its 1-based physical line.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::value::RawValue;
use zeroize::Zeroize;

use super::Refusal;
use super::spec::Format;
use crate::{Error, Result};

/// One record as read, before scrubbing: raw values by field name. Holds personal
/// data: prints only its file, line and field names, and wipes its values on drop.
pub struct RawRecord {
    file: Arc<str>,
    line: u64,
    /// The last physical line, when a quoted value spans lines.
    end_line: u64,
    fields: Vec<(Arc<str>, Option<String>)>,
}

impl RawRecord {
    /// A record of `file` at `line`. A `None` value is a JSON `null`.
    pub fn new(file: Arc<str>, line: u64, fields: Vec<(Arc<str>, Option<String>)>) -> Self {
        Self {
            file,
            line,
            end_line: line,
            fields,
        }
    }

    /// A record from one JSON object (a JSON Lines entry, or a record sent to the
    /// gateway's `Ingest` call). Fields are read raw, so a number keeps its literal
    /// text: through f64, 100000000000000000001 and 100000000000000000002 would be one
    /// customer.
    pub fn from_json(file: Arc<str>, line: u64, text: &[u8]) -> std::result::Result<Self, Refusal> {
        match serde_json::from_slice::<BTreeMap<String, &RawValue>>(text) {
            Ok(map) => {
                let fields = map
                    .into_iter()
                    .map(|(k, v)| Ok((Arc::from(k), json_text(v)?)))
                    .collect::<std::result::Result<_, Refusal>>()?;
                Ok(RawRecord::new(file, line, fields))
            }
            Err(e) if e.is_data() => Err(Refusal::new(None, "json line is not an object".to_owned())),
            Err(e) => Err(Refusal::new(None, format!("invalid json at column {}", e.column()))),
        }
    }

    /// The same record, spanning physical lines up to `end_line`.
    pub fn spanning(mut self, end_line: u64) -> Self {
        self.end_line = end_line.max(self.line);
        self
    }

    /// The last physical line of the record: a quoted value may span lines, and a
    /// stray quote can swallow the lines after it, which a refusal must say.
    pub fn end_line(&self) -> u64 {
        self.end_line
    }

    /// The file, relative to the sources directory.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The 1-based physical line the record starts on (a CSV header is line 1).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Field names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| &**n)
    }

    pub(crate) fn fields(&self) -> &[(Arc<str>, Option<String>)] {
        &self.fields
    }

    /// The first value of `name`; `None` when absent or null.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| &**n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

impl Drop for RawRecord {
    fn drop(&mut self) {
        for (_, value) in &mut self.fields {
            if let Some(v) = value {
                v.zeroize();
            }
        }
    }
}

impl fmt::Debug for RawRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRecord")
            .field("file", &self.file)
            .field("line", &self.line)
            .field("names", &self.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What reading yields: a record, or a line that is not one.
#[derive(Debug)]
pub enum Read {
    Record(RawRecord),
    Refused { line: u64, refusal: Refusal },
}

/// The records of one file, in order. An I/O failure ends the iteration with an error.
#[derive(Debug)]
pub struct Records {
    inner: Inner,
    path: PathBuf,
    file: Arc<str>,
    done: bool,
}

enum Inner {
    Csv {
        reader: csv::Reader<File>,
        header: Vec<Arc<str>>,
        buf: csv::ByteRecord,
        lines: LineCounter,
        /// A column the header names twice: which copy a rule means is unknowable,
        /// so every record of the file is refused.
        duplicate: Option<Arc<str>>,
    },
    Jsonl {
        reader: BufReader<File>,
        line: u64,
        buf: Vec<u8>,
    },
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inner::Csv { header, .. } => f.debug_struct("Csv").field("header", header).finish_non_exhaustive(),
            Inner::Jsonl { line, .. } => f.debug_struct("Jsonl").field("line", line).finish(),
        }
    }
}

/// Physical line numbers from byte offsets, counted over a second sequential reader of
/// the file. (The csv crate's own line count is off by one with CRLF line endings;
/// byte offsets are exact, and records may span lines inside quotes.)
struct LineCounter {
    reader: BufReader<File>,
    offset: u64,
    newlines: u64,
}

impl LineCounter {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            reader: BufReader::new(file),
            offset: 0,
            newlines: 0,
        })
    }

    /// The 1-based line of a record starting at `byte`; offsets must not go backwards.
    /// The byte itself is counted too: with CRLF endings csv reports a record's start
    /// at the `\n` left over from the previous line's `\r\n`, and a record never
    /// really starts with a newline.
    fn line_at(&mut self, byte: u64) -> u64 {
        let end = byte + 1;
        while self.offset < end {
            let Ok(chunk) = self.reader.fill_buf() else { break };
            if chunk.is_empty() {
                break;
            }
            let take = chunk.len().min((end - self.offset) as usize);
            self.newlines += chunk[..take].iter().filter(|&&b| b == b'\n').count() as u64;
            self.offset += take as u64;
            self.reader.consume(take);
        }
        self.newlines + 1
    }
}

impl Records {
    pub(crate) fn open(path: &Path, rel: &str, format: Format) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let inner = match format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(file);
                let header = reader
                    .byte_headers()
                    .map_err(|source| Error::Csv {
                        path: path.to_owned(),
                        source,
                    })?
                    .iter()
                    .map(|h| Arc::from(String::from_utf8_lossy(h).trim()))
                    .collect::<Vec<Arc<str>>>();
                let duplicate = header
                    .iter()
                    .enumerate()
                    .find(|(i, h)| header[..*i].contains(h))
                    .map(|(_, h)| h.clone());
                let lines = LineCounter::open(path)?;
                Inner::Csv {
                    reader,
                    header,
                    buf: csv::ByteRecord::new(),
                    lines,
                    duplicate,
                }
            }
            Format::Jsonl => Inner::Jsonl {
                reader: BufReader::new(file),
                line: 0,
                buf: Vec::new(),
            },
        };
        Ok(Self {
            inner,
            path: path.to_owned(),
            file: Arc::from(rel),
            done: false,
        })
    }

    /// Column names of a CSV file's header (empty for JSON Lines).
    pub fn header(&self) -> &[Arc<str>] {
        match &self.inner {
            Inner::Csv { header, .. } => header,
            Inner::Jsonl { .. } => &[],
        }
    }

    fn next_csv(&mut self) -> Option<Result<Read>> {
        let Inner::Csv {
            reader,
            header,
            buf,
            lines,
            duplicate,
        } = &mut self.inner
        else {
            return None;
        };
        match reader.read_byte_record(buf) {
            Ok(false) => None,
            Ok(true) => {
                let line = buf.position().map_or(0, |p| lines.line_at(p.byte()));
                let spanned = buf
                    .iter()
                    .map(|f| f.iter().filter(|&&b| b == b'\n').count() as u64)
                    .sum::<u64>();
                let end_line = line + spanned;
                let span = if spanned > 0 {
                    format!(" (the record spans lines {line}-{end_line})")
                } else {
                    String::new()
                };
                if let Some(name) = duplicate {
                    let reason = format!("the header names column `{name}` twice");
                    return Some(Ok(Read::Refused {
                        line,
                        refusal: Refusal::new(None, reason),
                    }));
                }
                if buf.len() != header.len() {
                    let reason = format!("record has {} fields, the header has {}{span}", buf.len(), header.len());
                    return Some(Ok(Read::Refused {
                        line,
                        refusal: Refusal::new(None, reason),
                    }));
                }
                let mut fields = Vec::with_capacity(header.len());
                for (name, raw) in header.iter().zip(buf.iter()) {
                    match std::str::from_utf8(raw) {
                        Ok(v) => fields.push((name.clone(), Some(v.to_owned()))),
                        Err(_) => {
                            let refusal = Refusal::new(Some(name), "value is not valid utf-8".to_owned());
                            return Some(Ok(Read::Refused { line, refusal }));
                        }
                    }
                }
                Some(Ok(Read::Record(
                    RawRecord::new(self.file.clone(), line, fields).spanning(end_line),
                )))
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.line_at(p.byte()));
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    self.done = true;
                    return Some(Err(Error::Csv {
                        path: self.path.clone(),
                        source: e,
                    }));
                }
                Some(Ok(Read::Refused {
                    line,
                    refusal: Refusal::new(None, "malformed csv record".to_owned()),
                }))
            }
        }
    }

    fn next_jsonl(&mut self) -> Option<Result<Read>> {
        let Inner::Jsonl { reader, line, buf } = &mut self.inner else {
            return None;
        };
        loop {
            buf.zeroize();
            buf.clear();
            match reader.read_until(b'\n', buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    self.done = true;
                    return Some(Err(Error::Io {
                        path: self.path.clone(),
                        source,
                    }));
                }
            }
            *line += 1;
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // A byte order mark may open the first line of a file.
            let text = if *line == 1 {
                buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(buf)
            } else {
                buf
            };
            let read = match RawRecord::from_json(self.file.clone(), *line, text) {
                Ok(rec) => Read::Record(rec),
                Err(refusal) => Read::Refused { line: *line, refusal },
            };
            return Some(Ok(read));
        }
    }
}

/// A JSON value as field text: strings unescaped, numbers and booleans exactly as
/// written, `null` as missing, and arrays or objects as their compact JSON text.
fn json_text(v: &RawValue) -> Result<Option<String>, Refusal> {
    let raw = v.get().trim();
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw)
            .map(Some)
            .map_err(|_| Refusal::new(None, "invalid json string".to_owned())),
        _ if raw == "null" => Ok(None),
        Some(b'[' | b'{') => serde_json::from_str::<serde_json::Value>(raw)
            .map(|v| Some(v.to_string()))
            .map_err(|_| Refusal::new(None, "invalid json value".to_owned())),
        _ => Ok(Some(raw.to_owned())),
    }
}

impl Iterator for Records {
    type Item = Result<Read>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = match self.inner {
            Inner::Csv { .. } => self.next_csv(),
            Inner::Jsonl { .. } => self.next_jsonl(),
        };
        if next.is_none() {
            self.done = true;
        }
        next
    }
}
