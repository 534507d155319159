//! The CAS budget store (the filter's, over proxy-wasm shared data) against a store with
//! proxy-wasm cpp-host's `SharedData` semantics, under contention.

use llm_usage_core::UsageRecord;
use llm_usage_cost::{
    BudgetStore, Budgets, CasBudgetStore, CasStore, CasWrite, Decision, KeyFacts, StoreError,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Key → (value, stamp), and the last stamp handed out.
type Entries = (BTreeMap<Vec<u8>, (Vec<u8>, u32)>, u32);

/// cpp-host `SharedData`: one lock, one process-wide stamp (never 0); a write to an
/// existing key with a non-zero stale stamp is refused.
#[derive(Default)]
struct SharedData {
    inner: Mutex<Entries>,
    gets: AtomicU32,
    mismatches: AtomicU32,
}

impl CasStore for &SharedData {
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let v = self.inner.lock().unwrap().0.get(key).cloned();
        // Now and then, let another thread in between this read and the caller's write.
        if self.gets.fetch_add(1, Ordering::Relaxed) % 4 == 0 {
            std::thread::yield_now();
        }
        Ok(v)
    }
    fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Result<CasWrite, StoreError> {
        let mut g = self.inner.lock().unwrap();
        let (map, next) = &mut *g;
        if let Some((_, stamp)) = map.get(key) {
            if cas != 0 && cas != *stamp {
                self.mismatches.fetch_add(1, Ordering::Relaxed);
                return Ok(CasWrite::Mismatch);
            }
        }
        *next = next.wrapping_add(1).max(1);
        map.insert(key.to_vec(), (value.to_vec(), *next));
        Ok(CasWrite::Written)
    }
}

#[test]
fn four_threads_charging_one_counter_lose_nothing() {
    let shared = SharedData::default();
    let store = CasBudgetStore::new(&shared);
    store.charge("b|00", 7, 1, 60).unwrap(); // created before the race
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let store = CasBudgetStore::new(&shared);
            s.spawn(move || {
                for i in 0..500u64 {
                    store.charge("b|00", 7, 1 + (i + t) % 3, 60).unwrap();
                }
            });
        }
    });
    let want: u64 = 1
        + (0..4u64)
            .map(|t| (0..500u64).map(|i| 1 + (i + t) % 3).sum::<u64>())
            .sum::<u64>();
    assert_eq!(store.used("b|00", 7).unwrap(), want);
    assert_eq!(store.used("b|00", 8).unwrap(), 0, "another window");
    let raw = (&shared)
        .get(b"llm_usage.budget|b|00|7")
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(
        raw,
        want.to_string().into_bytes(),
        "decimal ASCII under the documented key"
    );
    eprintln!(
        "CAS mismatches retried: {}",
        shared.mismatches.load(Ordering::Relaxed)
    );
}

/// cpp-host semantics, plus (once armed) another worker that charges 100 between every
/// other read and the write that follows it: deterministic interleaving.
struct Interfering {
    shared: SharedData,
    armed: std::sync::atomic::AtomicBool,
    gets: AtomicU32,
}

impl CasStore for &Interfering {
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let v = (&self.shared).get(key)?;
        if self.armed.load(Ordering::Relaxed) && self.gets.fetch_add(1, Ordering::Relaxed) % 2 == 0
        {
            let used: u64 = v
                .as_ref()
                .map_or(0, |(t, _)| std::str::from_utf8(t).unwrap().parse().unwrap());
            let cas = v.as_ref().map_or(0, |(_, c)| *c);
            let w = (&self.shared).set(key, (used + 100).to_string().as_bytes(), cas)?;
            assert_eq!(w, CasWrite::Written);
        }
        Ok(v)
    }
    fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Result<CasWrite, StoreError> {
        (&self.shared).set(key, value, cas)
    }
}

#[test]
fn a_write_between_read_and_write_is_never_overwritten() {
    let s = Interfering {
        shared: SharedData::default(),
        armed: Default::default(),
        gets: AtomicU32::new(0),
    };
    let store = CasBudgetStore::new(&s);
    // The counter exists first (a key's very first write ignores the CAS: see cas.rs).
    store.charge("b", 1, 3, 60).unwrap();
    s.armed.store(true, Ordering::Relaxed);
    for _ in 0..10 {
        store.charge("b", 1, 3, 60).unwrap();
    }
    s.armed.store(false, Ordering::Relaxed);
    // Each charge: a read the other worker interrupts (+100, our stale write refused),
    // then a clean read and write (+3).
    assert_eq!(store.used("b", 1).unwrap(), 3 + 10 * 103);
    assert_eq!(s.shared.mismatches.load(Ordering::Relaxed), 10);
}

/// A store whose every write is refused (another worker always wins).
struct AlwaysContended(AtomicU32);

impl CasStore for &AlwaysContended {
    fn get(&self, _: &[u8]) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(Some((b"5".to_vec(), 9)))
    }
    fn set(&self, _: &[u8], _: &[u8], _: u32) -> Result<CasWrite, StoreError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(CasWrite::Mismatch)
    }
}

#[test]
fn endless_contention_gives_up_after_a_bounded_number_of_tries() {
    let s = AlwaysContended(AtomicU32::new(0));
    let store = CasBudgetStore::new(&s);
    assert!(store.charge("b", 1, 1, 60).is_err());
    assert_eq!(
        s.0.load(Ordering::Relaxed),
        CasBudgetStore::<&AlwaysContended>::MAX_RETRIES + 1
    );
}

struct Garbage;

impl CasStore for Garbage {
    fn get(&self, _: &[u8]) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(Some((b"12abc".to_vec(), 1)))
    }
    fn set(&self, _: &[u8], _: &[u8], _: u32) -> Result<CasWrite, StoreError> {
        Ok(CasWrite::Written)
    }
}

#[test]
fn a_counter_that_is_not_a_number_fails_open_not_as_zero() {
    let b = Budgets::from_json(r#"[{"name":"a","key":"all","tokens":10,"window_s":60}]"#).unwrap();
    let store = CasBudgetStore::new(Garbage);
    assert!(store.used("a|x", 0).is_err());
    match b.check(&store, &KeyFacts::default(), None, 0) {
        Decision::Allow { store_errors, .. } => assert_eq!(store_errors, 1),
        d => panic!("{d:?}"),
    }
}

#[test]
fn budgets_through_the_cas_store_deny_once_spent() {
    let shared = SharedData::default();
    let store = CasBudgetStore::new(&shared);
    let b =
        Budgets::from_json(r#"[{"name":"w","key":"header:x-api-key","tokens":50,"window_s":60}]"#)
            .unwrap();
    let headers: &[(&str, &[u8])] = &[("x-api-key", b"sk-1")];
    let facts = KeyFacts {
        headers,
        ..Default::default()
    };
    let mut rec = UsageRecord::default();
    rec.input_tokens = Some(10);
    rec.output_tokens = Some(10);
    let mut passed = 0;
    for _ in 0..5 {
        if let Decision::Allow { buckets, .. } = b.check(&store, &facts, None, 120) {
            passed += 1;
            assert_eq!(b.charge(&store, &buckets, &rec, None, 120), 0);
        }
    }
    assert_eq!(passed, 3, "0, 20, 40 used before: three pass, then 60 ≥ 50");
}
