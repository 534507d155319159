//! A [`BudgetStore`] over a compare-and-swap key-value store: proxy-wasm shared data.
//!
//! Envoy runs one VM of a filter per worker thread; the only state they share is the
//! process-wide shared data (`proxy_get_shared_data` / `proxy_set_shared_data`), whose only
//! atomic operation is a write that succeeds when the value still carries the CAS stamp it
//! was read with. A charge is therefore a loop: read the counter and its stamp, write the
//! sum with that stamp, and on `CasMismatch` (another worker wrote in between) read again.
//! Every refused write means another worker's write landed, so the workers as a whole
//! always progress; one worker could still lose every race, so the loop is bounded
//! ([`CasBudgetStore::MAX_RETRIES`]): past it the charge fails (counted; the frontend fails
//! open) rather than spinning in a proxy.
//!
//! Counters are stored as decimal ASCII under `llm_usage.budget|<bucket>|<window>`; the
//! bucket carries the limit's name and a hash of the key value, never the value. A counter
//! whose text is not a number reads as a store error (fail open), not as 0.
//!
//! Shared data has no delete and no expiry: a window's key stays until the proxy restarts.
//! Keys are one per live key value and window; the frontend bounds them by the windows it
//! uses (a 60 s window over a day of one API key is 1,440 small entries).
//!
//! One race is left by the host's semantics: a write to a key that does not exist yet
//! succeeds whatever its stamp (proxy-wasm cpp-host `SharedData::set`), so when two workers
//! make a counter's very first charge at the same moment, both writes land and one charge
//! is lost: at most one per extra worker, per key and window, only at its first use.

use crate::budget::{BudgetStore, StoreError};

/// What a CAS write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasWrite {
    /// Written.
    Written,
    /// Refused: the value's stamp is no longer the one given.
    Mismatch,
}

/// A key-value store with compare-and-swap writes (proxy-wasm shared data, as the
/// filter's host calls expose it).
pub trait CasStore {
    /// The value of `key` and its stamp, `None` when the key was never written.
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` if the key's stamp is still `cas` (0: unconditionally).
    fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Result<CasWrite, StoreError>;
}

/// Budget counters in a [`CasStore`] (see the module docs).
#[derive(Debug, Clone)]
pub struct CasBudgetStore<S> {
    store: S,
}

impl<S> CasBudgetStore<S> {
    /// Most CAS retries of one charge before it gives up (and the frontend fails open).
    pub const MAX_RETRIES: u32 = 1024;

    /// Counters in `store`.
    pub fn new(store: S) -> CasBudgetStore<S> {
        CasBudgetStore { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The shared-data key of a bucket's counter in a window.
    pub fn key(bucket: &str, window: u64) -> String {
        format!("llm_usage.budget|{bucket}|{window}")
    }
}

impl<S: CasStore> CasBudgetStore<S> {
    fn read(&self, key: &[u8]) -> Result<(u64, u32), StoreError> {
        match self.store.get(key)? {
            None => Ok((0, 0)),
            Some((v, cas)) => {
                let used = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or_else(|| StoreError("a budget counter is not a number".into()))?;
                Ok((used, cas))
            }
        }
    }
}

impl<S: CasStore> BudgetStore for CasBudgetStore<S> {
    fn used(&self, bucket: &str, window: u64) -> Result<u64, StoreError> {
        self.read(Self::key(bucket, window).as_bytes())
            .map(|(u, _)| u)
    }

    fn charge(
        &self,
        bucket: &str,
        window: u64,
        amount: u64,
        _ttl_s: u64,
    ) -> Result<u64, StoreError> {
        let key = Self::key(bucket, window);
        for _ in 0..=Self::MAX_RETRIES {
            let (used, cas) = self.read(key.as_bytes())?;
            let next = used.saturating_add(amount);
            match self
                .store
                .set(key.as_bytes(), next.to_string().as_bytes(), cas)?
            {
                CasWrite::Written => return Ok(next),
                CasWrite::Mismatch => continue,
            }
        }
        Err(StoreError(format!(
            "budget counter still contended after {} retries",
            Self::MAX_RETRIES
        )))
    }
}
