//! The snapshot codec: a feature state as compact, versioned bytes. Cells are stored
//! under the fingerprint of their feature's definition, so a snapshot taken before a
//! FeatureSet changed still reads: an unchanged feature keeps its state, a new or
//! edited one starts empty, a removed one is dropped.

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::set::FeatureSet;
use crate::state::{Cell, FeatureState};

const VERSION: u8 = 1;

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
