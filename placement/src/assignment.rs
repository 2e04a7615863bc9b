//! The assignment table (which shard owns each partition, under which epoch; DESIGN.md
//! §4) and the planner that changes it with the fewest partition moves when the number
//! of shards changes. Pure: the operator publishes the table, shards read it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who owns each partition. A shard processes a partition only under the epoch that
/// gives it to that shard; every change of the table raises the epoch by one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Assignment {
    /// Raised by one on every change of `shards` or `owners`; starts at 1.
    pub epoch: u64,
    /// Number of shards (ordinals `0..shards`). A shard may own no partition when
    /// there are more shards than partitions.
    pub shards: u32,
    /// `owners[p]` is the shard that owns partition `p`; one entry per partition.
    pub owners: Vec<u32>,
}

/// One partition changing owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub partition: u32,
    /// The previous owner; `None` when the partition had none (a first plan).
    pub from: Option<u32>,
    pub to: u32,
}

/// A new table and the moves that lead to it from the previous one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub assignment: Assignment,
    /// In partition order. Empty when nothing changed hands.
    pub moves: Vec<Move>,
}

/// Why a table cannot be planned or is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("the partition count must be positive")]
    NoPartitions,
    #[error("the shard count must be positive")]
    NoShards,
    #[error("the partition count is fixed at creation: the table has {table}, asked for {asked}")]
    PartitionCountChanged { table: u32, asked: u32 },
    #[error("partition {partition} is owned by shard {owner}, but there are only {shards} shards")]
    OwnerOutOfRange { partition: u32, owner: u32, shards: u32 },
    #[error("more than {max} partitions", max = u32::MAX)]
    TooManyPartitions,
}

impl Assignment {
    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        // Checked by `validate` and by construction in `plan`.
        u32::try_from(self.owners.len()).unwrap_or(u32::MAX)
    }

    /// The shard that owns `partition`.
    pub fn owner(&self, partition: u32) -> Option<u32> {
        self.owners.get(partition as usize).copied()
    }

    /// The partitions `shard` owns, ascending.
    pub fn partitions_of(&self, shard: u32) -> Vec<u32> {
        (0u32..)
            .zip(&self.owners)
            .filter(|(_, owner)| **owner == shard)
            .map(|(p, _)| p)
            .collect()
    }

    /// How many partitions each shard `0..shards` owns.
    pub fn counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.shards as usize];
        for &owner in &self.owners {
            if let Some(c) = counts.get_mut(owner as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// Whether `shard` owns any partition under this table.
    pub fn owns_any(&self, shard: u32) -> bool {
        self.owners.contains(&shard)
    }

    /// The highest shard ordinal that owns a partition, plus one: the number of shard
    /// pods that must keep running for every partition to have its owner.
    pub fn shards_in_use(&self) -> u32 {
        self.owners.iter().max().map_or(0, |m| m + 1)
    }

    /// Checks a table read from elsewhere (a ConfigMap, a status): at least one
    /// partition and one shard, every owner a valid ordinal.
    pub fn validate(&self) -> Result<(), AssignmentError> {
        if self.owners.is_empty() {
            return Err(AssignmentError::NoPartitions);
        }
        if u32::try_from(self.owners.len()).is_err() {
            return Err(AssignmentError::TooManyPartitions);
        }
        if self.shards == 0 {
            return Err(AssignmentError::NoShards);
        }
        for (partition, &owner) in (0u32..).zip(&self.owners) {
            if owner >= self.shards {
                return Err(AssignmentError::OwnerOutOfRange {
                    partition,
                    owner,
                    shards: self.shards,
                });
            }
        }
        Ok(())
    }
}

/// Assigns `partitions` partitions to `shards` shards, balanced within one (every shard
/// owns ⌊P/S⌋ or ⌈P/S⌉), moving as few partitions as possible away from their owner
/// in `previous`.
///
/// The fewest moves: a shard `i` that owned `c_i` partitions and is given a quota
/// `t_i` can keep at most `min(c_i, t_i)` of them, so the plan keeps the most when the
/// `P mod S` larger quotas go to the shards that owned the most; that is what it does
/// (ties to the lower ordinal). Partitions of removed shards and the surplus of
/// shards over quota (their highest-numbered partitions) go, in partition order, to
/// the shards under quota in ordinal order. With no previous table the result is
/// contiguous blocks. The epoch rises by one when the table changes and stays put when
/// it does not, so planning twice is harmless.
pub fn plan(previous: Option<&Assignment>, partitions: u32, shards: u32) -> Result<Plan, AssignmentError> {
    if partitions == 0 {
        return Err(AssignmentError::NoPartitions);
    }
    if shards == 0 {
        return Err(AssignmentError::NoShards);
    }
    if let Some(prev) = previous {
        prev.validate()?;
        if prev.partitions() != partitions {
            return Err(AssignmentError::PartitionCountChanged {
                table: prev.partitions(),
                asked: partitions,
            });
        }
    }

    let s = shards as usize;
    // The previous owner of each partition, if it is still a shard.
    let mut owners: Vec<Option<u32>> = match previous {
        Some(prev) => prev.owners.iter().map(|&o| (o < shards).then_some(o)).collect(),
        None => vec![None; partitions as usize],
    };
    let mut held: Vec<Vec<u32>> = vec![Vec::new(); s];
    for (p, owner) in (0u32..).zip(&owners) {
        if let Some(o) = owner {
            held[*o as usize].push(p);
        }
    }

    let floor = partitions / shards;
    let extra = (partitions % shards) as usize;
    let mut by_holding: Vec<usize> = (0..s).collect();
    by_holding.sort_by_key(|&i| (std::cmp::Reverse(held[i].len()), i));
    let mut quota = vec![floor; s];
    for &i in by_holding.iter().take(extra) {
        quota[i] += 1;
    }

    // Release the surplus of shards over quota: their highest partitions.
    for (i, list) in held.iter_mut().enumerate() {
        while list.len() > quota[i] as usize {
            if let Some(p) = list.pop() {
                owners[p as usize] = None;
            }
        }
    }
    // Hand the free partitions, in order, to the shards under quota, in order.
    let mut free = (0u32..).zip(&owners).filter(|(_, o)| o.is_none()).map(|(p, _)| p);
    for (i, list) in held.iter_mut().enumerate() {
        while list.len() < quota[i] as usize {
            let Some(p) = free.next() else { break };
            list.push(p);
        }
    }
    let mut result = vec![0u32; partitions as usize];
    for (i, list) in (0u32..).zip(&held) {
        for &p in list {
            result[p as usize] = i;
        }
    }

    let moves: Vec<Move> = (0u32..)
        .zip(&result)
        .filter_map(|(p, &to)| {
            let from = previous.map(|prev| prev.owners[p as usize]);
            (from != Some(to)).then_some(Move { partition: p, from, to })
        })
        .collect();
    let epoch = match previous {
        None => 1,
        Some(prev) if prev.shards == shards && moves.is_empty() => prev.epoch,
        Some(prev) => prev.epoch + 1,
    };
    Ok(Plan {
        assignment: Assignment {
            epoch,
            shards,
            owners: result,
        },
        moves,
    })
}

/// Partition numbers as compact ranges: `0-63,128,130-131`.
#[derive(Clone, Copy, Debug)]
pub struct Ranges<'a>(pub &'a [u32]);

impl fmt::Display for Ranges<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted = self.0.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut first = true;
        let mut i = 0;
        while i < sorted.len() {
            let start = sorted[i];
            let mut end = start;
            while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
                i += 1;
                end = sorted[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
