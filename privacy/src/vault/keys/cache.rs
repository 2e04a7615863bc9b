//! The bounded cache of plaintext data keys. A key unwrapped once serves many
//! records (tokenizing costs no KMS call), but only within bounds: at most
//! `max_uses` uses and `max_age` in memory. Past either, it is dropped (and zeroized)
//! and the next use fetches it from the KMS again. The age bound makes a revoked KMS
//! grant or a disabled key take effect within `max_age`; the use bound caps how many
//! records one key seals, as AES-GCM with random nonces asks (at most 2^32).
//!
//! Pure logic: the caller passes the clock, so the bounds are tested without waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, TryLockError};
use std::time::{Duration, Instant};

use crate::Result;
use crate::kms::DataKey;

/// How long, and for how many uses, a plaintext data key stays cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Longest time a key stays in memory after it was unwrapped or made.
    pub max_age: Duration,
    /// Most uses (one MAC or one record sealed or opened) of a key before it is
    /// fetched again; a sealing key is replaced by a new version instead.
    pub max_uses: u64,
}

impl CacheLimits {
    /// 15 minutes: a revoked grant bites within a quarter of an hour, at the cost of
    /// about four Decrypt calls an hour per key in use.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(15 * 60);
    /// 2^32: the most messages one AES-GCM key may seal with random nonces.
    pub const DEFAULT_MAX_USES: u64 = 1 << 32;
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_age: Self::DEFAULT_MAX_AGE,
            max_uses: Self::DEFAULT_MAX_USES,
        }
    }
}

/// One cached key (with its version) or none. Every record tokenized or opened goes
/// through here, from many threads at once: a use takes only the read lock and an
/// atomic count; the write lock is for (re)loading.
#[derive(Default)]
pub(crate) struct Slot {
    entry: RwLock<Option<Entry>>,
}

struct Entry {
    version: u32,
    key: Arc<DataKey>,
    born: Instant,
    /// Uses granted and refused: a use is granted while the count before it is
    /// below `max_uses`, so exactly `max_uses` are.
    uses: AtomicU64,
}

impl Entry {
    fn new(version: u32, key: Arc<DataKey>, born: Instant, uses: u64) -> Self {
        Self {
            version,
            key,
            born,
            uses: AtomicU64::new(uses),
        }
    }

    fn young(&self, limits: &CacheLimits, now: Instant) -> bool {
        now.saturating_duration_since(self.born) < limits.max_age
    }

    /// Counts a use and hands out the key, when within both bounds.
    fn take(&self, limits: &CacheLimits, now: Instant) -> Option<(u32, Arc<DataKey>)> {
        let granted = self.young(limits, now) && self.uses.fetch_add(1, Ordering::Relaxed) < limits.max_uses;
        granted.then(|| (self.version, self.key.clone()))
    }

    fn spent(&self, limits: &CacheLimits, now: Instant) -> bool {
        !self.young(limits, now) || self.uses.load(Ordering::Relaxed) >= limits.max_uses
    }
}

impl Slot {
    /// The cached key and its version when it is within bounds at `now`, counting
    /// this use; else the one `load` makes, which replaces it. `load` runs under the
    /// write lock, so callers that find the slot spent at once make one KMS call
    /// between them.
    pub(crate) fn get(
        &self,
        limits: &CacheLimits,
        now: Instant,
        load: impl FnOnce() -> Result<(u32, Arc<DataKey>)>,
    ) -> Result<(u32, Arc<DataKey>)> {
        if let Some(hit) = self.read().as_ref().and_then(|e| e.take(limits, now)) {
            return Ok(hit);
        }
        let mut entry = self.entry.write().unwrap_or_else(|e| e.into_inner());
        // Another caller may have loaded a fresh key while this one waited.
        if let Some(hit) = entry.as_ref().and_then(|e| e.take(limits, now)) {
            return Ok(hit);
        }
        // Drop the spent key before asking for the next: a failed load leaves none.
        *entry = None;
        let (version, key) = load()?;
        *entry = Some(Entry::new(version, key.clone(), now, 1));
        Ok((version, key))
    }

    /// Puts a key just made (by this process) in the slot, unused.
    pub(crate) fn put(&self, now: Instant, version: u32, key: Arc<DataKey>) {
        *self.entry.write().unwrap_or_else(|e| e.into_inner()) = Some(Entry::new(version, key, now, 0));
    }

    /// Drops the key when it is past its bounds, so an idle key does not outstay
    /// `max_age` in memory. Returns whether a key is still held. A slot busy
    /// (loading, say) is left alone this time.
    pub(crate) fn sweep(&self, limits: &CacheLimits, now: Instant) -> bool {
        let mut entry = match self.entry.try_write() {
            Ok(entry) => entry,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return true,
        };
        if entry.as_ref().is_some_and(|e| e.spent(limits, now)) {
            *entry = None;
        }
        entry.is_some()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<Entry>> {
        self.entry.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::Error;

    fn limits(max_age_secs: u64, max_uses: u64) -> CacheLimits {
        CacheLimits {
            max_age: Duration::from_secs(max_age_secs),
            max_uses,
        }
    }

    /// A loader that counts its calls and hands out version = call number.
    fn loader(calls: &Cell<u32>) -> impl FnOnce() -> Result<(u32, Arc<DataKey>)> + '_ {
        move || {
            calls.set(calls.get() + 1);
            Ok((calls.get(), Arc::new(DataKey::from_bytes([calls.get() as u8; 32]))))
        }
    }

    #[test]
    fn a_key_serves_max_uses_then_is_fetched_again() {
        let slot = Slot::default();
        let calls = Cell::new(0);
        let t0 = Instant::now();
        let l = limits(3600, 3);
        let versions: Vec<u32> = (0..10).map(|_| slot.get(&l, t0, loader(&calls)).unwrap().0).collect();
        assert_eq!(versions, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]);
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn a_key_expires_at_max_age() {
        let slot = Slot::default();
        let calls = Cell::new(0);
        let t0 = Instant::now();
        let l = limits(60, u64::MAX);
        assert_eq!(slot.get(&l, t0, loader(&calls)).unwrap().0, 1);
        let just_before = t0 + Duration::from_secs(59);
        assert_eq!(slot.get(&l, just_before, loader(&calls)).unwrap().0, 1);
        assert_eq!(slot.get(&l, t0 + Duration::from_secs(60), loader(&calls)).unwrap().0, 2);
        assert_eq!(calls.get(), 2);
        // The age counts from the reload, not from the first load.
        assert_eq!(
            slot.get(&l, t0 + Duration::from_secs(119), loader(&calls)).unwrap().0,
            2
        );
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn the_same_arc_is_shared_until_the_bound() {
        let slot = Slot::default();
        let calls = Cell::new(0);
        let t0 = Instant::now();
        let (_, a) = slot.get(&limits(60, 10), t0, loader(&calls)).unwrap();
        let (_, b) = slot.get(&limits(60, 10), t0, loader(&calls)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn a_failed_load_leaves_no_key_and_is_retried() {
        let slot = Slot::default();
        let t0 = Instant::now();
        let l = limits(60, 1);
        let calls = Cell::new(0);
        slot.get(&l, t0, loader(&calls)).unwrap();
        let err = slot.get(&l, t0, || Err(Error::Unwrap)).unwrap_err();
        assert!(matches!(err, Error::Unwrap));
        assert!(!slot.sweep(&l, t0), "the spent key was dropped before the failed load");
        assert_eq!(slot.get(&l, t0, loader(&calls)).unwrap().0, 2);
    }

    #[test]
    fn put_keys_start_unused_and_sweep_drops_idle_expired_keys() {
        let slot = Slot::default();
        let t0 = Instant::now();
        let l = limits(60, 2);
        slot.put(t0, 7, Arc::new(DataKey::from_bytes([7; 32])));
        let calls = Cell::new(0);
        for _ in 0..2 {
            assert_eq!(slot.get(&l, t0, loader(&calls)).unwrap().0, 7);
        }
        assert_eq!(calls.get(), 0);

        slot.put(t0, 8, Arc::new(DataKey::from_bytes([8; 32])));
        assert!(slot.sweep(&l, t0 + Duration::from_secs(59)));
        assert!(!slot.sweep(&l, t0 + Duration::from_secs(60)));
        assert_eq!(
            slot.get(&l, t0, loader(&calls)).unwrap().0,
            1,
            "a swept key is fetched again"
        );
    }

    #[test]
    fn defaults_are_the_documented_bounds() {
        let d = CacheLimits::default();
        assert_eq!(d.max_age, Duration::from_secs(900));
        assert_eq!(d.max_uses, 4_294_967_296);
    }
}
