//! Where a token lives: the partition of a token is a stable hash of the token modulo
//! the partition count (DESIGN.md §4). Stable means stable across processes, builds and
//! versions: FNV-1a from `persona_event::hash`. Which shard owns a partition is the
//! [`Assignment`] table, changed by [`plan`] with the fewest moves.

mod assignment;

pub use assignment::{Assignment, AssignmentError, Move, Plan, Ranges, plan};
use persona_event::Token;
use persona_event::hash::fnv1a64;

/// The partition that owns `token` among `partitions` (must be > 0).
pub fn partition_of(token: &Token, partitions: u32) -> u32 {
    assert!(partitions > 0, "partition count must be positive");
    (fnv1a64(token.as_str().as_bytes()) % u64::from(partitions)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_pinned() {
        // Changing these values moves every customer to another partition: a data
        // migration, not a refactor.
        let t = Token::parse("tk_aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        assert_eq!(partition_of(&t, 256), (fnv1a64(t.as_str().as_bytes()) % 256) as u32);
    }

    #[test]
    fn tokens_spread_over_partitions() {
        let mut counts = [0u32; 16];
        for i in 0u32..16_000 {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_le_bytes());
            counts[partition_of(&Token::from_bytes(b), 16) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }
}
