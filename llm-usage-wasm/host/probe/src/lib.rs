//! A probe for the host's shared data and local replies, built to wasm32-wasip1 by the
//! host's tests (`llm-usage-wasm/host/tests/shared.rs`) and run in several VMs at once.
//!
//! It applies `llm-usage-cost` token budgets the way the llm-usage filter is to: the
//! limits come from the plugin configuration (`{"token_limits": [...]}`, the filter's
//! shape); at the request headers [`Budgets::check`] reads the counters from proxy-wasm
//! shared data through [`CasBudgetStore`] and a spent budget is answered with
//! `proxy_send_local_response` (the [`LocalReply`](llm_usage_cost::LocalReply) as data);
//! when the stream ends (`on_log`, also for cut streams) [`Budgets::charge`] adds the
//! exchange's usage with CAS. A shared-data failure lets the request through (fail open)
//! and is logged once per VM.
//!
//! The probe parses no traffic: an exchange's usage is the request's `x-charge` header
//! (total tokens, default one). This is a test fixture for the host, not the filter.

#![deny(unsafe_op_in_unsafe_fn)]

use llm_usage_core::UsageRecord;
use llm_usage_cost::{
    Bucket, Budgets, CasBudgetStore, CasStore, CasWrite, Decision, KeyFacts, StoreError,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::Cell;
use std::rc::Rc;

/// Proxy-wasm status codes the probe tells apart (the host calls exist on wasm32 only).
#[cfg(target_arch = "wasm32")]
mod status {
    pub const OK: u32 = 0;
    pub const NOT_FOUND: u32 = 1;
    pub const CAS_MISMATCH: u32 = 8;
}
#[cfg(target_arch = "wasm32")]
use status::{CAS_MISMATCH, NOT_FOUND, OK};

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        pub fn proxy_send_local_response(
            status_code: u32,
            details_data: *const u8,
            details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    }
}

/// Proxy-wasm shared data through the raw host calls (every status becomes a `Result`;
/// the SDK's wrappers panic on statuses they do not expect).
struct SharedData;

impl CasStore for SharedData {
    #[cfg(target_arch = "wasm32")]
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let mut ptr: *mut u8 = core::ptr::null_mut();
        let mut len: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the key is live for the call; `ptr`, `len` and `cas` are live locals the
        // host writes.
        let code = unsafe {
            imports::proxy_get_shared_data(key.as_ptr(), key.len(), &mut ptr, &mut len, &mut cas)
        };
        match code {
            OK => {
                let value = if ptr.is_null() || len == 0 {
                    Vec::new()
                } else {
                    // SAFETY: the host allocated `len` bytes at `ptr` through the SDK's
                    // `proxy_on_memory_allocate` (a leaked boxed slice of exactly `len`
                    // bytes) and hands them over: nothing else owns them.
                    unsafe { Vec::from_raw_parts(ptr, len, len) }
                };
                Ok(Some((value, cas)))
            }
            NOT_FOUND => Ok(None),
            other => Err(StoreError(format!("proxy_get_shared_data: status {other}"))),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn get(&self, _: &[u8]) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Err(StoreError("no host".into()))
    }

    #[cfg(target_arch = "wasm32")]
    fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Result<CasWrite, StoreError> {
        // SAFETY: key and value are live for the call and only read by the host.
        let code = unsafe {
            imports::proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas,
            )
        };
        match code {
            OK => Ok(CasWrite::Written),
            CAS_MISMATCH => Ok(CasWrite::Mismatch),
            other => Err(StoreError(format!("proxy_set_shared_data: status {other}"))),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn set(&self, _: &[u8], _: &[u8], _: u32) -> Result<CasWrite, StoreError> {
        Err(StoreError("no host".into()))
    }
}

/// The proxy-wasm header map serialisation (spec "Serialization").
fn serialize(pairs: &[(&str, String)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn send_local(status: u16, headers: &[(&'static str, String)], body: &[u8]) {
    let h = serialize(headers);
    let details = b"token_budget_exhausted";
    #[cfg(target_arch = "wasm32")]
    // SAFETY: every pointer and length describes a live buffer only read by the host.
    unsafe {
        imports::proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            h.as_ptr(),
            h.len(),
            -1,
        );
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (status, h, details, body);
}

fn log(level: u32, msg: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the message is live for the call and only read by the host.
    unsafe {
        imports::proxy_log(level, msg.as_ptr(), msg.len());
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, msg);
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { budgets: Rc::new(Budgets::default()), warned: Rc::new(Cell::new(false)) })
    });
}}

struct Root {
    budgets: Rc<Budgets>,
    /// Whether this VM has logged a shared-data failure (logged once).
    warned: Rc<Cell<bool>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let Some(cfg) = self.get_plugin_configuration() else {
            return true;
        };
        let limits = serde_json::from_slice::<serde_json::Value>(&cfg)
            .ok()
            .and_then(|v| v.get("token_limits").map(|l| l.to_string()));
        match limits.map(|l| Budgets::from_json(&l)) {
            Some(Ok(b)) => {
                self.budgets = Rc::new(b);
                true
            }
            Some(Err(e)) => {
                log(4, &e.to_string());
                false
            }
            None => true,
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            budgets: self.budgets.clone(),
            warned: self.warned.clone(),
            buckets: Vec::new(),
            charge: 1,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    budgets: Rc<Budgets>,
    warned: Rc<Cell<bool>>,
    /// The buckets to charge when the stream ends (none after a local reply).
    buckets: Vec<Bucket>,
    charge: u64,
}

impl Stream {
    fn now_s(&self) -> u64 {
        self.get_current_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn fail_open(&self, errors: u32) {
        if errors > 0 && !self.warned.replace(true) {
            log(3, "probe: budget store failed; failing open");
        }
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let headers = self.get_http_request_headers_bytes();
        self.charge = headers
            .iter()
            .find(|(k, _)| k == "x-charge")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(1);
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let facts = KeyFacts {
            headers: &pairs,
            ..Default::default()
        };
        let store = CasBudgetStore::new(SharedData);
        match self.budgets.check(&store, &facts, None, self.now_s()) {
            Decision::Allow {
                buckets,
                store_errors,
            } => {
                self.fail_open(store_errors);
                self.buckets = buckets;
                Action::Continue
            }
            Decision::Deny { reply, .. } => {
                send_local(reply.status, &reply.headers, reply.body.as_bytes());
                Action::Pause
            }
        }
    }

    fn on_log(&mut self) {
        if self.buckets.is_empty() {
            return;
        }
        let mut record = UsageRecord::default();
        record.total_tokens = Some(self.charge);
        let store = CasBudgetStore::new(SharedData);
        let errors = self
            .budgets
            .charge(&store, &self.buckets, &record, None, self.now_s());
        self.fail_open(errors);
    }
}
