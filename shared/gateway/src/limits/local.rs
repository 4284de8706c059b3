//! The in-process state of one limit: each key's TAT in a bounded table.
//!
//! Keys are kept as 64-bit keyed hashes (SipHash with a per-process random key), not as strings:
//! nothing is allocated per key, an entry is 16 bytes, and a client cannot choose two keys that
//! collide. The table is sharded so concurrent decisions rarely wait on each other.
//!
//! **Bounded.** A shard that is full first drops the keys whose TAT has passed (fully rested,
//! the same as never seen: nothing is lost); if every key is still active, it drops the quarter
//! nearest to rested, so a flood of distinct addresses or principals costs at most `max_keys`
//! entries per limit, and the keys it pushes out are the ones with the least left to enforce.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Shards per table: a power of two.
const SHARDS: usize = 16;

/// A hasher for keys that are already hashes.
#[derive(Default)]
pub struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called; fold anything else in rather than lose it.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

pub type Shard = HashMap<u64, u64, BuildHasherDefault<PreHashed>>;

/// One limit's keys and their TATs (nanoseconds on the limiter's clock).
pub struct Table {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

/// A key of a [`Table`], hashed once.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    hash: u64,
    shard: usize,
}

impl Slot {
    /// The key as its shard's map holds it.
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

impl Table {
    /// A table of at most `max_keys` keys (rounded up to a multiple of its shard count).
    pub fn new(max_keys: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    pub fn slot<K: std::hash::Hash + ?Sized>(&self, key: &K) -> Slot {
        let hash = self.hasher.hash_one(key);
        // The high bits pick the shard; the map uses all of them.
        Slot { hash, shard: (hash >> 60) as usize % SHARDS }
    }

    pub fn lock(&self, slot: Slot) -> MutexGuard<'_, Shard> {
        self.shards[slot.shard].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }

    /// The most keys this table holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Sets `slot`'s TAT in its locked `shard`, making room first when the shard is full.
    pub fn store(&self, shard: &mut Shard, slot: Slot, tat: u64, now: u64) {
        if shard.len() >= self.per_shard && !shard.contains_key(&slot.hash) {
            shard.retain(|_, kept| *kept > now);
            if shard.len() >= self.per_shard {
                let mut tats: Vec<u64> = shard.values().copied().collect();
                let quarter = tats.len() / 4;
                let (_, threshold, _) = tats.select_nth_unstable(quarter);
                let threshold = *threshold;
                shard.retain(|_, kept| *kept > threshold);
            }
        }
        shard.insert(slot.hash, tat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_distinct_keys_never_holds_more_than_the_bound() {
        let table = Table::new(1_000);
        let far_future = u64::MAX / 2;
        for i in 0..100_000u32 {
            let slot = table.slot(&format!("198.51.100.{i}"));
            let mut shard = table.lock(slot);
            // Every key still active: the worst case, where nothing rested can be dropped.
            table.store(&mut shard, slot, far_future + u64::from(i), 0);
        }
        assert!(table.len() <= table.capacity(), "{} keys held", table.len());
        assert!(table.len() >= table.capacity() / 2, "eviction keeps most of the table");
    }

    #[test]
    fn rested_keys_go_first_and_active_ones_stay() {
        let table = Table::new(SHARDS * 4);
        let active = table.slot("active");
        table.store(&mut table.lock(active), active, 1_000, 0);
        // Fill the active key's shard (four keys) with keys rested by `now = 500`.
        let mut rested = 0;
        for i in 0.. {
            let slot = table.slot(&format!("rested-{i}"));
            if slot.shard == active.shard {
                table.store(&mut table.lock(slot), slot, 100, 0);
                rested += 1;
                if rested == 3 {
                    break;
                }
            }
        }
        let newcomer = (0..).map(|i| table.slot(&format!("new-{i}"))).find(|s| s.shard == active.shard).unwrap();
        table.store(&mut table.lock(newcomer), newcomer, 900, 500);
        let shard = table.lock(active);
        assert_eq!(shard.get(&active.hash), Some(&1_000), "the active key kept its state");
        assert_eq!(shard.len(), 2, "the rested keys were dropped");
    }
}
