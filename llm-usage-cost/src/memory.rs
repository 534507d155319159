//! An in-process [`BudgetStore`]: sharded, each shard a small mutex-guarded map.
//!
//! For one process (a tower service, a single proxy): 16 shards, picked by a hash of the
//! bucket name, so concurrent requests for different keys rarely share a lock, and every
//! lock is held for one map operation. A bucket keeps only its current window: a charge or
//! read of a newer window replaces the old counter (old windows are never read again), so
//! memory is one entry per live key. Hostile traffic inventing keys cannot grow it without
//! bound: past [`MemoryStore::MAX_PER_SHARD`] buckets, a shard drops those of the oldest
//! window first.

use crate::budget::{BudgetStore, StoreError};
use std::collections::BTreeMap;
use std::sync::Mutex;

const SHARDS: usize = 16;

/// A sharded in-memory budget store (see the module docs).
#[derive(Debug, Default)]
pub struct MemoryStore {
    shards: [Mutex<BTreeMap<String, (u64, u64)>>; SHARDS],
}

impl MemoryStore {
    /// The most buckets one shard keeps.
    pub const MAX_PER_SHARD: usize = 4096;

    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn shard(&self, bucket: &str) -> &Mutex<BTreeMap<String, (u64, u64)>> {
        let h = bucket.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// How many buckets the store holds.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    /// Whether the store holds no bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError("memory store lock poisoned".into())
}

impl BudgetStore for MemoryStore {
    fn used(&self, bucket: &str, window: u64) -> Result<u64, StoreError> {
        let map = self.shard(bucket).lock().map_err(poisoned)?;
        Ok(match map.get(bucket) {
            Some(&(w, v)) if w == window => v,
            _ => 0,
        })
    }

    fn charge(
        &self,
        bucket: &str,
        window: u64,
        amount: u64,
        _ttl_s: u64,
    ) -> Result<u64, StoreError> {
        let mut map = self.shard(bucket).lock().map_err(poisoned)?;
        if let Some(e) = map.get_mut(bucket) {
            if e.0 > window {
                // A charge for a window already over: it no longer counts anywhere.
                return Ok(0);
            }
            if e.0 < window {
                *e = (window, 0);
            }
            e.1 = e.1.saturating_add(amount);
            return Ok(e.1);
        }
        if map.len() >= Self::MAX_PER_SHARD {
            let oldest = map.values().map(|e| e.0).min().unwrap_or(window);
            map.retain(|_, e| e.0 != oldest);
            if map.len() >= Self::MAX_PER_SHARD {
                // All in one window: drop the first half by name (bounded, if unfair).
                let drop: Vec<String> = map.keys().take(Self::MAX_PER_SHARD / 2).cloned().collect();
                for k in drop {
                    map.remove(&k);
                }
            }
        }
        map.insert(bucket.to_owned(), (window, amount));
        Ok(amount)
    }
}
