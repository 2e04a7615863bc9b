//! The snapshot codec: a feature state as compact, versioned bytes. Cells are stored
//! under the fingerprint of their feature's definition, so a snapshot taken before a
//! FeatureSet changed still reads: an unchanged feature keeps its state, a new or
//! edited one starts empty, a removed one is dropped.

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::agg::Acc;
use crate::set::FeatureSet;
use crate::state::{Cell, FeatureState, Series};

/// 2: tile numbers as deltas, whole-cent decimals as integers, event ids as bytes.
const VERSION: u8 = 2;

#[derive(Serialize, Deserialize)]
struct SnapshotV1 {
    /// Microseconds since the epoch.
    clock: Option<i64>,
    cells: Vec<(u32, Cell)>,
}

impl FeatureState {
    /// Encodes the state; tiles outside their windows were already pruned on apply.
    pub fn encode(&self, set: &FeatureSet) -> Vec<u8> {
        let cells = set
            .features
            .iter()
            .zip(&self.cells)
            .filter_map(|(f, c)| c.as_ref().map(|c| (f.fingerprint, c.clone())))
            .collect();
        let snap = SnapshotV1 {
            clock: self.clock.map(|c| c.timestamp_micros()),
            cells,
        };
        let mut out = vec![VERSION];
        out.extend(postcard::to_stdvec(&snap).expect("feature state serializes"));
        out
    }

    /// Reads a snapshot back against the current FeatureSet.
    pub fn decode(bytes: &[u8], set: &FeatureSet) -> Result<FeatureState, Error> {
        let (&version, body) = bytes
            .split_first()
            .ok_or_else(|| Error::Snapshot("empty snapshot".into()))?;
        if version != VERSION {
            return Err(Error::Snapshot(format!("unknown snapshot version {version}")));
        }
        let snap: SnapshotV1 = postcard::from_bytes(body).map_err(|e| Error::Snapshot(e.to_string()))?;
        let mut cells = vec![None; set.features.len()];
        for (fingerprint, cell) in snap.cells {
            if let Some(i) = set.features.iter().position(|f| f.fingerprint == fingerprint) {
                cells[i] = Some(cell);
            }
        }
        Ok(FeatureState {
            clock: snap.clock.and_then(DateTime::from_timestamp_micros),
            cells,
        })
    }
}

/// A series on the wire: tile numbers as differences from the previous tile.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct SeriesWire(Vec<(i64, Acc)>);

impl From<Series> for SeriesWire {
    fn from(series: Series) -> Self {
        let mut previous = 0;
        SeriesWire(
            series
                .0
                .into_iter()
                .map(|(tile, acc)| {
                    let delta = tile - previous;
                    previous = tile;
                    (delta, acc)
                })
                .collect(),
        )
    }
}

impl From<SeriesWire> for Series {
    fn from(wire: SeriesWire) -> Self {
        let mut tile = 0;
        Series(
            wire.0
                .into_iter()
                .map(|(delta, acc)| {
                    tile += delta;
                    (tile, acc)
                })
                .collect(),
        )
    }
}

/// An `f64` on the wire: whole cents as an integer when that reads back bit for bit
/// (amounts usually are), the raw bits otherwise.
pub(crate) mod compact_f64 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    enum Wire {
        Cents(i64),
        Raw(f64),
    }

    pub(crate) fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        let cents = (x * 100.0).round();
        let exact = cents.abs() < 9.0e15 && ((cents as i64) as f64 / 100.0).to_bits() == x.to_bits();
        if exact {
            Wire::Cents(cents as i64)
        } else {
            Wire::Raw(*x)
        }
        .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(match Wire::deserialize(d)? {
            Wire::Cents(c) => c as f64 / 100.0,
            Wire::Raw(x) => x,
        })
    }
}

/// An event id on the wire as its 16 bytes.
pub(crate) mod event_id_bytes {
    use persona_event::EventId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(id: &EventId, s: S) -> Result<S::Ok, S::Error> {
        id.to_bytes().serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EventId, D::Error> {
        <[u8; 16]>::deserialize(d).map(EventId::from_bytes)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct F(#[serde(with = "super::compact_f64")] f64);

    proptest! {
        #[test]
        fn decimals_read_back_bit_for_bit(x in any::<f64>(), cents in -1_000_000_000i64..1_000_000_000) {
            for v in [x, cents as f64 / 100.0, -0.0, f64::MAX, f64::MIN_POSITIVE] {
                let bytes = postcard::to_stdvec(&F(v)).unwrap();
                let back: F = postcard::from_bytes(&bytes).unwrap();
                prop_assert_eq!(back.0.to_bits(), v.to_bits());
            }
        }
    }
}
