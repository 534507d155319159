//! Proxy-wasm shared data as Envoy keeps it: one store for the whole process, shared by
//! every VM (every worker thread's copy of a plugin) with the same `vm_id`.
//!
//! Envoy's shared data is proxy-wasm cpp-host's (`src/shared_data.h`, `src/shared_data.cc`,
//! `SharedData` and its process-wide `global_shared_data`), and this follows it:
//!
//! - values are kept per `vm_id`, then per key; a read of a key (or a `vm_id`) never
//!   written is `NotFound`;
//! - every successful write stamps the value with the next number of one process-wide
//!   counter (`nextCas`: it starts at 1 and skips 0, which means "no CAS");
//! - a write with a non-zero `cas` to an existing key whose stamp differs is refused with
//!   `CasMismatch` and changes nothing; a write with `cas` 0, or to a key that does not
//!   exist yet (whatever its `cas`), always succeeds;
//! - one mutex makes each read and each write atomic, so VMs on different threads can race
//!   between their read and their write: the CAS is what keeps their updates.
//!
//! A [`Host`](crate::Host) holds one store: the VMs it starts are the workers of one Envoy.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The process-wide shared data (see the module docs).
#[derive(Debug)]
pub struct SharedData {
    inner: Mutex<Inner>,
}

/// One `vm_id`'s data: key → (value, cas).
type VmData = BTreeMap<Vec<u8>, (Vec<u8>, u32)>;

#[derive(Debug)]
struct Inner {
    /// `vm_id` → its data.
    data: BTreeMap<String, VmData>,
    /// The next CAS stamp (never 0).
    cas: u32,
}

/// A write refused because the value changed since the caller read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

impl Default for SharedData {
    fn default() -> Self {
        SharedData {
            inner: Mutex::new(Inner {
                data: BTreeMap::new(),
                cas: 1,
            }),
        }
    }
}

impl SharedData {
    /// An empty store.
    pub fn new() -> SharedData {
        SharedData::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A VM thread that panicked mid-call left no half-written entry (each operation is
        // one map insert): the data is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value and CAS stamp of `key` for `vm_id`, if it was ever written.
    pub fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.lock().data.get(vm_id)?.get(key).cloned()
    }

    /// Writes `value` under `key` for `vm_id` unless `cas` is non-zero and the key exists
    /// with another stamp.
    pub fn set(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        let mut inner = self.lock();
        let stamp = inner.cas;
        let map = inner.data.entry(vm_id.to_owned()).or_default();
        if let Some((_, current)) = map.get(key) {
            if cas != 0 && cas != *current {
                return Err(CasMismatch);
            }
        }
        map.insert(key.to_vec(), (value.to_vec(), stamp));
        inner.cas = stamp.wrapping_add(1).max(1);
        Ok(())
    }

    /// Every key and value of `vm_id`, for tests and reports.
    pub fn snapshot(&self, vm_id: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.lock()
            .data
            .get(vm_id)
            .map(|m| m.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_follows_cpp_host() {
        let s = SharedData::new();
        assert_eq!(s.get("vm", b"k"), None);
        // A key that does not exist is written whatever the CAS.
        s.set("vm", b"k", b"1", 77).unwrap();
        let (v, c1) = s.get("vm", b"k").unwrap();
        assert_eq!((v.as_slice(), c1), (&b"1"[..], 1));
        // Two readers with the same stamp: the first write wins, the second is refused.
        s.set("vm", b"k", b"2", c1).unwrap();
        assert_eq!(s.set("vm", b"k", b"3", c1), Err(CasMismatch));
        let (v, c2) = s.get("vm", b"k").unwrap();
        assert_eq!((v.as_slice(), c2), (&b"2"[..], 2));
        // CAS 0 always writes; stamps are process-wide, not per key.
        s.set("vm", b"other", b"x", 0).unwrap();
        assert_eq!(s.get("vm", b"other").unwrap().1, 3);
        s.set("vm", b"k", b"4", 0).unwrap();
        assert_eq!(s.get("vm", b"k").unwrap(), (b"4".to_vec(), 4));
        // Another vm_id sees nothing of this one.
        assert_eq!(s.get("other-vm", b"k"), None);
    }

    #[test]
    fn the_stamp_never_is_zero() {
        let s = SharedData::new();
        s.lock().cas = u32::MAX;
        s.set("vm", b"a", b"", 0).unwrap();
        assert_eq!(s.get("vm", b"a").unwrap().1, u32::MAX);
        s.set("vm", b"b", b"", 0).unwrap();
        assert_eq!(s.get("vm", b"b").unwrap().1, 1, "0 is skipped");
    }
}
