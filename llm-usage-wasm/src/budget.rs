//! Token budgets in the filter: `llm-usage-cost`'s [`Budgets`] over proxy-wasm shared data.
//!
//! Envoy runs one VM of the filter per worker thread, and the only state the workers
//! share is the process-wide shared data of the plugin's `vm_id`, whose one atomic
//! operation is a write carrying the CAS stamp the value was read with. So the counters
//! are `llm-usage-cost`'s [`CasBudgetStore`] over [`SharedData`] (read, write with the
//! stamp, read again on `CasMismatch`, bounded): the semantics (keys hashed, windows,
//! amounts, the `429` reply) are the cost crate's, the same as the tower layer's; this
//! module only binds them to the host calls.
//!
//! A shared-data call that fails is a store error: the check lets the request through and
//! a charge is lost (fail open), counted, and logged once per VM by the caller.

use llm_usage_cost::{CasBudgetStore, CasStore, CasWrite, LocalReply, StoreError};

use crate::abi::{self, Status};

/// Proxy-wasm shared data as a [`CasStore`], through the non-panicking host calls.
pub struct SharedData;

impl CasStore for SharedData {
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match abi::get_shared_data(key) {
            Ok(v) => Ok(Some(v)),
            Err(Status::NotFound) => Ok(None),
            Err(e) => Err(StoreError(format!("proxy_get_shared_data: {e:?}"))),
        }
    }

    fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Result<CasWrite, StoreError> {
        match abi::set_shared_data(key, value, cas) {
            Ok(()) => Ok(CasWrite::Written),
            Err(Status::CasMismatch) => Ok(CasWrite::Mismatch),
            Err(e) => Err(StoreError(format!("proxy_set_shared_data: {e:?}"))),
        }
    }
}

/// The budget store of this VM: counters in shared data.
pub fn store() -> CasBudgetStore<SharedData> {
    CasBudgetStore::new(SharedData)
}

/// The `details` Envoy logs for the local reply (`%RESPONSE_CODE_DETAILS%`).
pub const DETAILS: &str = "llm_usage_token_budget_exhausted";

/// Sends the `429` of a spent budget.
pub fn send(reply: &LocalReply) -> Result<(), Status> {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    abi::send_local_response(reply.status, DETAILS, &headers, reply.body.as_bytes())
}
