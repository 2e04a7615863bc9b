//! The snapshot codec: a feature state as compact, versioned bytes.
//!
//! Layout (version 3), all integers LEB128 varints unless said otherwise:
//! - the version byte, then the clock (0 for none, else zigzag microseconds + 1);
//! - the tile groups that hold tiles: their tile numbers once (count, the first
//!   zigzag, then differences), then the columns that hold anything: the fingerprint
//!   of the feature's definition (4 bytes), a head (how many leading tiles are
//!   outside the feature's window and left out, the accumulator kind, whether
//!   `distinct_days` are written relative to their tile, and whether the column
//!   repeats an earlier one), then either the index of the earlier column it repeats
//!   or one accumulator per tile it covers (`distinct_count` columns start with their
//!   dictionary of strings);
//! - the families that hold keys: fingerprint, length in bytes, then per key its name
//!   and its tiles with their accumulators.
//!
//! Accumulators carry no tag of their own: the column's kind says how to read them.
//! Amounts in whole cents are written as integers, instants relative to the clock and
//! in whole seconds when they are. Features over the same values with different
//! windows (spend over 7, 30 and 90 days) write their tiles once. A snapshot taken
//! before a FeatureSet changed still reads: an unchanged feature keeps its state (even
//! if it moved to another group), a new or edited one starts empty, a removed one is
//! dropped.

use std::collections::BTreeMap;

use chrono::DateTime;
use persona_event::{EventId, Value};

use crate::Error;
use crate::agg::{Acc, Agg, Num, Picked, Scalar, SmallSet};
use crate::set::{Feature, FeatureSet, Place};
use crate::state::{FeatureState, Series, Tiled};
use crate::window::Window;

const VERSION: u8 = 3;

/// A column's head: leading tiles left out, kind, relative days, repeat.
struct Head {
    skip: usize,
    kind: u64,
    relative_days: bool,
    repeats: bool,
}

impl Head {
    fn encode(&self) -> u64 {
        (self.skip as u64) << 5 | self.kind << 2 | u64::from(self.relative_days) << 1 | u64::from(self.repeats)
    }

    fn decode(x: u64) -> Head {
        Head {
            skip: (x >> 5) as usize,
            kind: (x >> 2) & 7,
            relative_days: (x >> 1) & 1 == 1,
            repeats: x & 1 == 1,
        }
    }
}

/// How the numbers of a sum, avg or min/max column are written when all of them
/// allow it: untagged, as non-negative whole cents or non-negative integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plain {
    Cents = 1,
    Ints = 2,
}

impl Plain {
    /// The number of an accumulator, if this form writes it exactly.
    fn number(self, acc: &Acc) -> Option<u64> {
        let n = match acc {
            Acc::Sum(n) => *n,
            Acc::Avg(sum, _) => Num::Float(*sum),
            Acc::Extreme(Scalar::Int(i)) => Num::Int(*i),
            Acc::Extreme(Scalar::Float(x)) => Num::Float(*x),
            _ => return None,
        };
        let n = match (self, n) {
            (Plain::Cents, Num::Float(x)) => cents(x)?,
            (Plain::Ints, Num::Int(i)) => i,
            _ => return None,
        };
        // Below the top so that `n + 1` fits.
        u64::try_from(n).ok().filter(|&n| n < u64::MAX)
    }
}

/// The accumulator kind of an aggregation, as written in a column head.
fn kind(agg: &Agg) -> u64 {
    match agg.empty() {
        Acc::Count(_) => 0,
        Acc::Sum(_) => 1,
        Acc::Avg(..) => 2,
        Acc::Extreme(_) => 3,
        Acc::Pick(_) => 4,
        Acc::Set(_) => 5,
        Acc::Ints(_) => 6,
        Acc::Decay { .. } => 7,
    }
}

/// Groups written together (see [`FeatureState::blocks`]).
struct Block<'s> {
    tiles: Vec<i64>,
    columns: Vec<Column<'s>>,
}

/// One feature's accumulators over the tiles of its block.
struct Column<'s> {
    feature: &'s Feature,
    /// Leading tiles of the block outside the feature's window.
    skip: usize,
    /// Per tile of the block, the index of the accumulator in `accs`, if the
    /// feature's group has that tile.
    cells: Vec<Option<usize>>,
    accs: &'s [Acc],
    empty: Acc,
}

impl Column<'_> {
    fn get(&self, row: usize) -> &Acc {
        self.cells[row].map_or(&self.empty, |i| &self.accs[i])
    }
}

/// Whether a feature's `distinct_days` are its day tiles (then written relative to them).
fn relative_days(f: &Feature) -> bool {
    matches!((f.agg, f.window), (Agg::DistinctDays, Window::Days(_)))
}

impl FeatureState {
    /// Encodes the state; tiles outside their windows were already pruned on apply.
    pub fn encode(&self, set: &FeatureSet) -> Vec<u8> {
        let clock = self.clock.map_or(0, |c| c.timestamp_micros());
        let mut w = Writer::new(vec![VERSION], clock);
        w.var(self.clock.map_or(0, |c| zigzag(c.timestamp_micros()) + 1));
        let mut blocks = self.blocks(set);
        blocks.sort_by_key(|b| b.tiles.first().copied());
        w.var(blocks.len() as u64);
        for block in blocks {
            let rows = block.tiles.len();
            w.tiles(&block.tiles);
            w.var(block.columns.len() as u64);
            for (n, col) in block.columns.iter().enumerate() {
                let (f, skip) = (col.feature, col.skip);
                let rows_of = |other: &Column, same: &dyn Fn(&Acc, &Acc) -> bool| {
                    other.skip <= skip && (skip..rows).all(|r| same(other.get(r), col.get(r)))
                };
                // An earlier column with the same accumulators over this one's rows;
                // for an average, else an earlier sum and count of the same events.
                let earlier = &block.columns[..n];
                let repeated = earlier
                    .iter()
                    .position(|other| rows_of(other, &|a, b| a == b))
                    .map(|k| vec![k])
                    .or_else(|| {
                        let Acc::Avg(..) = f.agg.empty() else { return None };
                        let sum = earlier.iter().position(|other| {
                            rows_of(other, &|a, b| match (a, b) {
                                (Acc::Sum(Num::Float(x)), Acc::Avg(y, _)) => x.to_bits() == y.to_bits(),
                                (Acc::Sum(Num::Int(0)), Acc::Avg(_, 0)) => true,
                                _ => false,
                            })
                        })?;
                        let count = earlier.iter().position(|other| {
                            rows_of(
                                other,
                                &|a, b| matches!((a, b), (Acc::Count(x), Acc::Avg(_, y)) if x == y),
                            )
                        })?;
                        Some(vec![sum, count])
                    });
                w.out.extend_from_slice(&f.fingerprint.to_le_bytes());
                let head = Head {
                    skip,
                    kind: kind(&f.agg),
                    relative_days: relative_days(f),
                    repeats: repeated.is_some(),
                };
                w.var(head.encode());
                match repeated {
                    Some(ks) => ks.into_iter().for_each(|k| w.var(k as u64)),
                    None => w.column(&head, &block.tiles[skip..], (skip..rows).map(|r| col.get(r))),
                }
            }
        }
        // Per family, the keys with tiles inside the window, and those tiles.
        let families: Vec<_> = set
            .features
            .iter()
            .filter_map(|f| {
                let Place::Family(k) = f.place else { return None };
                let end = self.clock.map(|c| f.window.tile(c, set.tz));
                let keys: Vec<_> = self
                    .families
                    .get(k)?
                    .iter()
                    .filter_map(|(key, series)| {
                        let from = match (end, f.window.tiles()) {
                            (Some(end), Some(n)) => series.0.partition_point(|(t, _)| *t <= end - n),
                            _ => 0,
                        };
                        let live = &series.0[from..];
                        (!live.is_empty()).then_some((key, live))
                    })
                    .collect();
                (!keys.is_empty()).then_some((f, keys))
            })
            .collect();
        w.var(families.len() as u64);
        for (f, keys) in families {
            let mut section = Writer::new(Vec::new(), clock);
            section.var(keys.len() as u64);
            for (key, live) in keys {
                section.bytes(key.as_bytes());
                let tiles: Vec<i64> = live.iter().map(|(t, _)| *t).collect();
                section.tiles(&tiles);
                for (tile, acc) in live {
                    section.acc(acc, if relative_days(f) { *tile } else { 0 });
                }
            }
            w.out.extend_from_slice(&f.fingerprint.to_le_bytes());
            w.bytes(&section.out);
        }
        w.out
    }

    /// The tile groups as written: groups that read the same events through the same
    /// filter on the same unit of tiles are written as one block, whatever their
    /// windows, so that features over the same values with different windows can
    /// share their accumulators. A block holds the columns with anything inside their
    /// feature's window as of the clock, from the first tile any of them needs.
    fn blocks<'s>(&'s self, set: &'s FeatureSet) -> Vec<Block<'s>> {
        let mut blocks = Vec::new();
        let mut done = vec![false; set.groups.len()];
        for g in 0..set.groups.len() {
            if done[g] {
                continue;
            }
            let class: Vec<usize> = (g..set.groups.len())
                .filter(|&h| set.groups[h].class == set.groups[g].class)
                .collect();
            class.iter().for_each(|&h| done[h] = true);
            let tiled = |h: usize| self.groups.get(h).filter(|t| !t.tiles.is_empty());
            let mut tiles: Vec<i64> = class
                .iter()
                .filter_map(|&h| tiled(h))
                .flat_map(|t| t.tiles.iter().copied())
                .collect();
            tiles.sort_unstable();
            tiles.dedup();
            let mut columns = Vec::new();
            for &h in &class {
                let Some(t) = tiled(h) else { continue };
                let group = &set.groups[h];
                let width = group.members.len();
                let rows: Vec<Option<usize>> = tiles.iter().map(|tile| t.tiles.binary_search(tile).ok()).collect();
                for (c, &i) in group.members.iter().enumerate() {
                    let f = &set.features[i];
                    let skip = match (self.clock, f.window.tiles()) {
                        (Some(clock), Some(n)) => {
                            let end = f.window.tile(clock, set.tz);
                            tiles.partition_point(|t| *t <= end - n)
                        }
                        _ => 0,
                    };
                    let column = Column {
                        feature: f,
                        skip,
                        cells: rows.iter().map(|r| r.map(|r| r * width + c)).collect(),
                        accs: &t.accs,
                        empty: f.agg.empty(),
                    };
                    if (skip..tiles.len()).any(|r| !column.get(r).is_empty()) {
                        columns.push(column);
                    }
                }
            }
            let Some(first) = columns.iter().map(|c| c.skip).min() else {
                continue;
            };
            // Longest windows first: a shorter window can then repeat a longer one.
            columns.sort_by_key(|c| c.skip);
            columns.iter_mut().for_each(|c| {
                c.skip -= first;
                c.cells.drain(..first);
            });
            tiles.drain(..first);
            blocks.push(Block { tiles, columns });
        }
        blocks
    }

    /// Reads a snapshot back against the current FeatureSet.
    pub fn decode(bytes: &[u8], set: &FeatureSet) -> Result<FeatureState, Error> {
        let (&version, body) = bytes
            .split_first()
            .ok_or_else(|| Error::Snapshot("empty snapshot".into()))?;
        if version != VERSION {
            return Err(Error::Snapshot(format!(
                "snapshot version {version}, this build reads version {VERSION}"
            )));
        }
        let mut r = Reader::new(body, 0);
        let clock = match r.var()? {
            0 => None,
            z => Some(DateTime::from_timestamp_micros(unzigzag(z - 1)).ok_or_else(|| r.bad("clock out of range"))?),
        };
        r.clock = clock.map_or(0, |c| c.timestamp_micros());
        let mut state = FeatureState {
            clock,
            groups: vec![Tiled::default(); set.groups.len()],
            families: vec![BTreeMap::new(); set.families],
        };
        for _ in 0..r.len()? {
            let tiles = r.tiles()?;
            let mut columns: Vec<(usize, Vec<Acc>)> = Vec::new();
            for _ in 0..r.len()? {
                let fingerprint = r.u32()?;
                let head = Head::decode(r.var()?);
                if head.skip > tiles.len() {
                    return Err(r.bad("column longer than its tiles"));
                }
                let accs = if head.repeats {
                    let earlier = |r: &mut Reader| {
                        let (skip, accs) = columns
                            .get(r.var()? as usize)
                            .ok_or_else(|| r.bad("bad column reference"))?;
                        let from = head
                            .skip
                            .checked_sub(*skip)
                            .ok_or_else(|| r.bad("bad column reference"))?;
                        Ok::<_, Error>(&accs[from..])
                    };
                    let first = earlier(&mut r)?;
                    match first.first() {
                        // An average from an earlier sum and count.
                        Some(Acc::Sum(_)) if head.kind == 2 => {
                            let counts = earlier(&mut r)?;
                            first
                                .iter()
                                .zip(counts)
                                .map(|(sum, count)| match (sum, count) {
                                    (Acc::Sum(Num::Float(x)), Acc::Count(n)) => Ok(Acc::Avg(*x, *n)),
                                    (Acc::Sum(Num::Int(0)), Acc::Count(0)) => Ok(Acc::Avg(0.0, 0)),
                                    _ => Err(r.bad("bad average reference")),
                                })
                                .collect::<Result<Vec<_>, _>>()?
                        }
                        _ => first.to_vec(),
                    }
                } else {
                    r.column(&head, &tiles[head.skip..])?
                };
                if let Some(f) = set.feature_by_fingerprint(fingerprint)
                    && let Place::Column { group, column } = f.place
                    && kind(&f.agg) == head.kind
                {
                    state.groups[group].put_column(set, group, column, &tiles[head.skip..], &accs);
                }
                columns.push((head.skip, accs));
            }
        }
        for _ in 0..r.len()? {
            let fingerprint = r.u32()?;
            let mut section = Reader::new(r.bytes()?, r.clock);
            let Some(f) = set.feature_by_fingerprint(fingerprint) else {
                continue;
            };
            let Place::Family(k) = f.place else { continue };
            for _ in 0..section.len()? {
                let key = String::from_utf8(section.bytes()?.to_vec()).map_err(|_| section.bad("key is not UTF-8"))?;
                let tiles = section.tiles()?;
                let series = tiles
                    .iter()
                    .map(|&tile| {
                        Ok((
                            tile,
                            section.acc(kind(&f.agg), if relative_days(f) { tile } else { 0 })?,
                        ))
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                state.families[k].insert(key, Series(series));
            }
        }
        if !r.bytes.is_empty() {
            return Err(r.bad("trailing bytes"));
        }
        Ok(state)
    }
}

impl Tiled {
    /// Places a decoded column into this group, adding the rows it needs.
    fn put_column(&mut self, set: &FeatureSet, group: usize, column: usize, tiles: &[i64], accs: &[Acc]) {
        let g = &set.groups[group];
        let width = g.members.len();
        for (&tile, acc) in tiles.iter().zip(accs) {
            if acc.is_empty() {
                continue;
            }
            let row = self.row(tile, g, set);
            self.accs[row * width + column] = acc.clone();
        }
    }
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// Below this, a zigzag integer can carry two tag bits in the same varint.
const TAGGABLE: u64 = 1 << 61;

/// Whole cents that read back bit for bit as the same `f64`.
fn cents(x: f64) -> Option<i64> {
    let c = (x * 100.0).round();
    (c.abs() < 9.0e15 && ((c as i64) as f64 / 100.0).to_bits() == x.to_bits()).then_some(c as i64)
}

struct Writer {
    out: Vec<u8>,
    clock: i64,
    /// The first tile of the previous tile list: tile lists are written from it.
    anchor: i64,
    /// Event ids written so far: first and last of several features often pick the
    /// same event, whose id is then written once.
    ids: Vec<EventId>,
}

impl Writer {
    fn new(out: Vec<u8>, clock: i64) -> Self {
        Writer {
            out,
            clock,
            anchor: 0,
            ids: Vec::new(),
        }
    }

    fn var(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.out.push((x as u8) | 0x80);
            x >>= 7;
        }
        self.out.push(x as u8);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.var(b.len() as u64);
        self.out.extend_from_slice(b);
    }

    /// A column's accumulators, one per tile; strings of `distinct_count` through a
    /// dictionary written first.
    fn column<'a>(&mut self, head: &Head, tiles: &[i64], accs: impl Iterator<Item = &'a Acc>) {
        let base = |tile: i64| if head.relative_days { tile } else { 0 };
        let accs: Vec<&Acc> = accs.collect();
        if matches!(head.kind, 1..=3) {
            let plain = [Plain::Cents, Plain::Ints]
                .into_iter()
                .find(|p| accs.iter().all(|a| a.is_empty() || p.number(a).is_some()));
            self.var(plain.map_or(0, |p| p as u64));
            if let Some(plain) = plain {
                for acc in accs {
                    self.plain(plain, acc);
                }
                return;
            }
        }
        let sets: Vec<&SmallSet<Box<str>>> = accs
            .iter()
            .filter_map(|a| match a {
                Acc::Set(s) => Some(s),
                _ => None,
            })
            .collect();
        if sets.is_empty() {
            for (acc, &tile) in accs.into_iter().zip(tiles) {
                self.acc(acc, base(tile));
            }
            return;
        }
        let mut words: Vec<&str> = sets.iter().flat_map(|s| s.as_slice().iter().map(|k| &**k)).collect();
        words.sort_unstable();
        words.dedup();
        self.var(words.len() as u64);
        for word in &words {
            self.bytes(word.as_bytes());
        }
        for set in sets {
            self.var(set.len() as u64);
            let mut previous = 0;
            for k in set.as_slice() {
                let i = words.binary_search(&&**k).expect("every word is in the dictionary");
                self.var((i - previous) as u64);
                previous = i;
            }
        }
    }

    /// An accumulator of a plain column: 0 when empty, else its number + 1 (and the
    /// count of an average).
    fn plain(&mut self, plain: Plain, acc: &Acc) {
        match plain.number(acc) {
            Some(n) if !acc.is_empty() => self.var(n + 1),
            _ => {
                self.var(0);
                return;
            }
        }
        if let Acc::Avg(_, n) = acc {
            self.var(*n);
        }
    }

    /// Sorted tile numbers: count, the first relative to the previous list's first
    /// (zigzag), then differences.
    fn tiles(&mut self, tiles: &[i64]) {
        self.var(tiles.len() as u64);
        if let Some(&first) = tiles.first() {
            self.var(zigzag(first - self.anchor));
            self.anchor = first;
        }
        for pair in tiles.windows(2) {
            self.var((pair[1] - pair[0]) as u64);
        }
    }

    /// A number with a 2-bit tag: 0 integer, 1 whole cents, 2 raw `f64`, 3 raw `i64`.
    fn num(&mut self, n: Num) {
        self.tagged(n, 2);
    }

    /// A number whose tag takes `bits` low bits of the varint (tags 0 to 3 as in
    /// [`Writer::num`]; wider tags leave room for other kinds of values).
    fn tagged(&mut self, n: Num, bits: u32) {
        match n {
            Num::Int(i) if zigzag(i) < TAGGABLE => self.var(zigzag(i) << bits),
            Num::Int(i) => {
                self.var(3);
                self.out.extend_from_slice(&i.to_le_bytes());
            }
            Num::Float(x) => match cents(x) {
                Some(c) => self.var(zigzag(c) << bits | 1),
                None => {
                    self.var(2);
                    self.out.extend_from_slice(&x.to_le_bytes());
                }
            },
        }
    }

    /// An instant (microseconds) relative to the clock, in whole seconds when it is:
    /// tag 0 seconds, 1 microseconds, 2 raw.
    fn instant(&mut self, at: i64) {
        let d = self.clock.checked_sub(at).map(|d| (d, zigzag(d)));
        match d {
            Some((d, _)) if d % 1_000_000 == 0 && zigzag(d / 1_000_000) < TAGGABLE => {
                self.var(zigzag(d / 1_000_000) << 2)
            }
            Some((_, z)) if z < TAGGABLE => self.var(z << 2 | 1),
            _ => {
                self.var(2);
                self.out.extend_from_slice(&at.to_le_bytes());
            }
        }
    }

    /// Any value, with a 3-bit tag: numbers as [`Writer::num`], then 4 null,
    /// 5 string, 6 time, 7 other (postcard).
    fn value(&mut self, v: &Value) {
        match v {
            Value::Int(i) => self.tagged(Num::Int(*i), 3),
            Value::Float(x) => self.tagged(Num::Float(*x), 3),
            Value::Null => self.var(4),
            Value::Str(s) => {
                self.var(5);
                self.bytes(s.as_bytes());
            }
            Value::Time(t) => {
                self.var(6);
                self.instant(t.timestamp_micros());
            }
            other => {
                self.var(7);
                self.bytes(&postcard::to_stdvec(other).expect("values serialize"));
            }
        }
    }

    fn acc(&mut self, acc: &Acc, base: i64) {
        match acc {
            Acc::Count(n) => self.var(*n),
            Acc::Sum(n) => self.num(*n),
            Acc::Avg(sum, n) => {
                self.num(Num::Float(*sum));
                self.var(*n);
            }
            Acc::Extreme(s) => match s {
                Scalar::Null => self.var(4),
                Scalar::Int(i) => self.tagged(Num::Int(*i), 3),
                Scalar::Float(x) => self.tagged(Num::Float(*x), 3),
                Scalar::Other(v) => self.value(v),
            },
            Acc::Pick(None) => self.var(0),
            // 0 nothing, 1 a new event id follows, 2 + i the i-th id written before.
            Acc::Pick(Some(p)) => {
                match self.ids.iter().position(|id| *id == p.id) {
                    Some(i) => {
                        self.var(i as u64 + 2);
                        self.instant(p.at);
                    }
                    None => {
                        self.var(1);
                        self.instant(p.at);
                        self.out.extend_from_slice(&p.id.to_bytes());
                        self.ids.push(p.id.clone());
                    }
                }
                self.value(&p.value);
            }
            Acc::Set(s) => {
                self.var(s.len() as u64);
                for k in s.as_slice() {
                    self.bytes(k.as_bytes());
                }
            }
            Acc::Ints(s) => {
                self.var(s.len() as u64);
                let mut previous = base;
                for (i, &x) in s.as_slice().iter().enumerate() {
                    if i == 0 {
                        self.var(zigzag(x - base));
                    } else {
                        self.var((x - previous) as u64);
                    }
                    previous = x;
                }
            }
            Acc::Decay { at, sum } => {
                self.instant(*at);
                self.num(Num::Float(*sum));
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    clock: i64,
    anchor: i64,
    ids: Vec<EventId>,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], clock: i64) -> Self {
        Reader {
            bytes,
            clock,
            anchor: 0,
            ids: Vec::new(),
        }
    }

    fn bad(&self, what: &str) -> Error {
        Error::Snapshot(format!("{what} ({} bytes left)", self.bytes.len()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.bytes.len() < n {
            return Err(self.bad("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn var(&mut self) -> Result<u64, Error> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(x);
            }
        }
        Err(self.bad("varint too long"))
    }

    fn len(&mut self) -> Result<usize, Error> {
        let n = self.var()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| self.bad("length beyond the end"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.len()?;
        self.take(n)
    }

    fn eight(&mut self) -> Result<[u8; 8], Error> {
        Ok(self.take(8)?.try_into().expect("8 bytes"))
    }

    /// An accumulator of a plain column of `kind` (sum, avg or min/max).
    fn plain(&mut self, plain: Plain, kind: u64) -> Result<Acc, Error> {
        let x = self.var()?;
        let number = x.checked_sub(1).map(|n| match plain {
            Plain::Cents => Num::Float(n as f64 / 100.0),
            Plain::Ints => Num::Int(n as i64),
        });
        Ok(match (kind, number) {
            (1, None) => Acc::Sum(Num::Int(0)),
            (1, Some(n)) => Acc::Sum(n),
            (2, None) => Acc::Avg(0.0, 0),
            (2, Some(Num::Float(sum))) => Acc::Avg(sum, self.var()?),
            (3, None) => Acc::Extreme(Scalar::Null),
            (3, Some(Num::Float(x))) => Acc::Extreme(Scalar::Float(x)),
            (3, Some(Num::Int(i))) => Acc::Extreme(Scalar::Int(i)),
            _ => return Err(self.bad("bad plain column")),
        })
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn column(&mut self, head: &Head, tiles: &[i64]) -> Result<Vec<Acc>, Error> {
        if matches!(head.kind, 1..=3) {
            let plain = match self.var()? {
                0 => None,
                1 => Some(Plain::Cents),
                2 => Some(Plain::Ints),
                _ => return Err(self.bad("bad number mode")),
            };
            if let Some(plain) = plain {
                return tiles.iter().map(|_| self.plain(plain, head.kind)).collect();
            }
        }
        if head.kind != 5 {
            return tiles
                .iter()
                .map(|&tile| self.acc(head.kind, if head.relative_days { tile } else { 0 }))
                .collect();
        }
        let mut words = Vec::new();
        for _ in 0..self.len()? {
            words.push(self.string()?);
        }
        let mut accs = Vec::with_capacity(tiles.len());
        for _ in tiles {
            let mut set = SmallSet::Empty;
            let mut i = 0;
            for _ in 0..self.len()? {
                i += self.var()? as usize;
                set.insert(
                    words
                        .get(i)
                        .ok_or_else(|| self.bad("word out of the dictionary"))?
                        .clone(),
                );
            }
            accs.push(Acc::Set(set));
        }
        Ok(accs)
    }

    fn string(&mut self) -> Result<Box<str>, Error> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(Into::into)
            .map_err(|_| self.bad("not UTF-8"))
    }

    fn tiles(&mut self) -> Result<Vec<i64>, Error> {
        let n = self.len()?;
        let mut tiles = Vec::with_capacity(n);
        for i in 0..n {
            let t = if i == 0 {
                self.anchor += unzigzag(self.var()?);
                self.anchor
            } else {
                tiles[i - 1] + self.var()? as i64
            };
            tiles.push(t);
        }
        Ok(tiles)
    }

    /// A number tagged in `bits` low bits; any other tag is returned as `Err`.
    fn tagged(&mut self, bits: u32) -> Result<Result<Num, u64>, Error> {
        let x = self.var()?;
        let mask = (1 << bits) - 1;
        Ok(match (x & mask, x >> bits) {
            (0, z) => Ok(Num::Int(unzigzag(z))),
            (1, z) => Ok(Num::Float(unzigzag(z) as f64 / 100.0)),
            (2, 0) => Ok(Num::Float(f64::from_le_bytes(self.eight()?))),
            (3, 0) => Ok(Num::Int(i64::from_le_bytes(self.eight()?))),
            (tag, 0) => Err(tag),
            _ => Err(u64::MAX),
        })
    }

    fn num(&mut self) -> Result<Num, Error> {
        self.tagged(2)?.map_err(|_| self.bad("expected a number"))
    }

    fn float(&mut self) -> Result<f64, Error> {
        Ok(match self.num()? {
            Num::Float(x) => x,
            Num::Int(i) => i as f64,
        })
    }

    fn instant(&mut self) -> Result<i64, Error> {
        let x = self.var()?;
        match (x & 3, x >> 2) {
            (0, z) => Ok(self.clock - unzigzag(z) * 1_000_000),
            (1, z) => Ok(self.clock - unzigzag(z)),
            (2, 0) => Ok(i64::from_le_bytes(self.eight()?)),
            _ => Err(self.bad("bad instant")),
        }
    }

    fn value(&mut self) -> Result<Value, Error> {
        match self.tagged(3)? {
            Ok(Num::Int(i)) => Ok(Value::Int(i)),
            Ok(Num::Float(x)) => Ok(Value::Float(x)),
            Err(4) => Ok(Value::Null),
            Err(5) => {
                let b = self.bytes()?;
                String::from_utf8(b.to_vec())
                    .map(Value::Str)
                    .map_err(|_| self.bad("string is not UTF-8"))
            }
            Err(6) => {
                let at = self.instant()?;
                DateTime::from_timestamp_micros(at)
                    .map(Value::Time)
                    .ok_or_else(|| self.bad("time out of range"))
            }
            Err(7) => {
                let b = self.bytes()?;
                postcard::from_bytes(b).map_err(|e| Error::Snapshot(e.to_string()))
            }
            Err(_) => Err(self.bad("bad value tag")),
        }
    }

    /// One accumulator of a kind (see [`kind`]).
    fn acc(&mut self, kind: u64, base: i64) -> Result<Acc, Error> {
        Ok(match kind {
            0 => Acc::Count(self.var()?),
            1 => Acc::Sum(self.num()?),
            2 => Acc::Avg(self.float()?, self.var()?),
            3 => Acc::Extreme(Scalar::of(&self.value()?)),
            4 => match self.var()? {
                0 => Acc::Pick(None),
                which => {
                    let at = self.instant()?;
                    let id = if which == 1 {
                        let id = EventId::from_bytes(self.take(16)?.try_into().expect("16 bytes"));
                        self.ids.push(id.clone());
                        id
                    } else {
                        let i = usize::try_from(which - 2).unwrap_or(usize::MAX);
                        self.ids
                            .get(i)
                            .cloned()
                            .ok_or_else(|| self.bad("bad event id reference"))?
                    };
                    let value = self.value()?;
                    Acc::Pick(Some(Box::new(Picked { at, id, value })))
                }
            },
            5 => {
                let mut set = SmallSet::Empty;
                for _ in 0..self.len()? {
                    set.insert(self.string()?);
                }
                Acc::Set(set)
            }
            6 => {
                let mut set = SmallSet::Empty;
                let mut previous = base;
                for i in 0..self.len()? {
                    let x = if i == 0 {
                        base + unzigzag(self.var()?)
                    } else {
                        previous + self.var()? as i64
                    };
                    set.insert(x);
                    previous = x;
                }
                Acc::Ints(set)
            }
            _ => Acc::Decay {
                at: self.instant()?,
                sum: self.float()?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip_num(n: Num) -> Num {
        let mut w = Writer::new(Vec::new(), 0);
        w.num(n);
        let mut r = Reader::new(&w.out, 0);
        let back = r.num().unwrap();
        assert!(r.bytes.is_empty());
        back
    }

    proptest! {
        #[test]
        fn numbers_read_back_bit_for_bit(x in any::<f64>(), i in any::<i64>(), cents in -1_000_000_000i64..1_000_000_000) {
            for v in [x, cents as f64 / 100.0, -0.0, f64::MAX, f64::MIN_POSITIVE, f64::NAN] {
                let Num::Float(back) = round_trip_num(Num::Float(v)) else { panic!("a float reads back a float") };
                prop_assert_eq!(back.to_bits(), v.to_bits());
            }
            for v in [i, 0, i64::MIN, i64::MAX, cents] {
                prop_assert_eq!(round_trip_num(Num::Int(v)), Num::Int(v));
            }
        }

        #[test]
        fn instants_read_back(clock in any::<i64>(), at in any::<i64>()) {
            let mut w = Writer::new(Vec::new(), clock);
            let day_before = clock.wrapping_sub(86_400_000_000);
            w.instant(at);
            w.instant(day_before);
            let mut r = Reader::new(&w.out, clock);
            prop_assert_eq!(r.instant().unwrap(), at);
            prop_assert_eq!(r.instant().unwrap(), day_before);
        }
    }

    #[test]
    fn whole_cents_take_few_bytes() {
        let mut w = Writer::new(Vec::new(), 0);
        w.num(Num::Float(1234.56));
        assert_eq!(w.out.len(), 3);
    }
}
