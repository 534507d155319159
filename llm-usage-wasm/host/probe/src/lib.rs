//! A probe for the host's shared data and local replies, built to wasm32-wasip1 by the
//! host's tests (`llm-usage-wasm/host/tests/shared.rs`) and run in several VMs at once.
//!
//! It keeps a budget the way a proxy-wasm filter must across Envoy's workers: the counter
//! of a key lives in shared data under `probe|<window>|<key>`; at the request headers the
//! probe reads it and, when it has reached the budget, answers locally with `429`; when the
//! stream ends (`on_log`, also for cut streams) it adds the request's `x-charge` (default
//! one) with a compare-and-swap loop: read value and CAS, write with that CAS, retry on
//! `CasMismatch`. Any other shared-data failure lets the request through (fail open) and
//! is logged once per VM.
//!
//! Configuration (plugin configuration text): `budget=N window=S key=HEADER` (defaults 5,
//! 60 and `x-key`; a request without the key header is not counted).
//!
//! This is a test fixture for the host, not the llm-usage filter: the real filter's
//! budgets are `llm-usage-cost`'s.

#![deny(unsafe_op_in_unsafe_fn)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::Cell;

const OK: u32 = 0;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

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

/// Reads a shared value: `Ok(None)` when absent, else the value and its CAS stamp.
#[cfg(target_arch = "wasm32")]
fn get_shared(key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, u32> {
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
                // `proxy_on_memory_allocate` (a leaked boxed slice of exactly `len` bytes)
                // and hands them over: nothing else owns them.
                unsafe { Vec::from_raw_parts(ptr, len, len) }
            };
            Ok(Some((value, cas)))
        }
        NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn get_shared(_: &[u8]) -> Result<Option<(Vec<u8>, u32)>, u32> {
    Err(12)
}

#[cfg(target_arch = "wasm32")]
fn set_shared(key: &[u8], value: &[u8], cas: u32) -> u32 {
    // SAFETY: key and value are live for the call and only read by the host.
    unsafe {
        imports::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn set_shared(_: &[u8], _: &[u8], _: u32) -> u32 {
    12
}

/// The proxy-wasm header map serialisation (spec "Serialization").
fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
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

#[cfg(target_arch = "wasm32")]
fn send_local(status: u32, headers: &[(&str, &str)], body: &[u8]) -> u32 {
    let h = serialize(headers);
    let details = b"probe_budget_exhausted";
    // SAFETY: every pointer and length describes a live buffer only read by the host.
    unsafe {
        imports::proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            h.as_ptr(),
            h.len(),
            -1,
        )
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn send_local(_: u32, headers: &[(&str, &str)], _: &[u8]) -> u32 {
    let _ = serialize(headers);
    12
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

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            budget: 5,
            window: 60,
            key_header: "x-key".into(),
            warned: std::rc::Rc::new(Cell::new(false)),
        })
    });
}}

struct Root {
    budget: u64,
    window: u64,
    key_header: String,
    /// Whether this VM has logged a shared-data failure (logged once).
    warned: std::rc::Rc<Cell<bool>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        if let Some(cfg) = self.get_plugin_configuration() {
            for word in String::from_utf8_lossy(&cfg).split_whitespace() {
                match word.split_once('=') {
                    Some(("budget", v)) => self.budget = v.parse().unwrap_or(self.budget),
                    Some(("window", v)) => self.window = v.parse().unwrap_or(self.window).max(1),
                    Some(("key", v)) => self.key_header = v.to_owned(),
                    _ => {}
                }
            }
        }
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            budget: self.budget,
            window: self.window,
            key_header: self.key_header.clone(),
            warned: self.warned.clone(),
            key: None,
            charge: 1,
            replied: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    budget: u64,
    window: u64,
    key_header: String,
    warned: std::rc::Rc<Cell<bool>>,
    /// The counter's key (without the window), once the headers named one.
    key: Option<String>,
    charge: u64,
    replied: bool,
}

impl Stream {
    fn counter_key(&self, key: &str) -> String {
        let now = self
            .get_current_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("probe|{}|{key}", now / self.window)
    }

    fn fail_open(&self, what: &str, code: u32) {
        if !self.warned.replace(true) {
            log(
                3,
                &format!("probe: shared data {what} failed (status {code}); failing open"),
            );
        }
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(key) = self.get_http_request_header(&self.key_header) else {
            return Action::Continue;
        };
        self.charge = self
            .get_http_request_header("x-charge")
            .and_then(|v| parse_u64(v.as_bytes()))
            .unwrap_or(1);
        let counter = self.counter_key(&key);
        self.key = Some(key);
        let used = match get_shared(counter.as_bytes()) {
            Ok(Some((v, _))) => parse_u64(&v).unwrap_or(0),
            Ok(None) => 0,
            Err(code) => {
                self.fail_open("read", code);
                return Action::Continue;
            }
        };
        if used < self.budget {
            return Action::Continue;
        }
        let remaining = self.budget.saturating_sub(used).to_string();
        let limit = self.budget.to_string();
        let body = format!(
            "{{\"error\":{{\"message\":\"budget of {} used\",\"type\":\"tokens\",\"code\":\"rate_limit_exceeded\"}}}}",
            self.budget
        );
        send_local(
            429,
            &[
                ("Content-Type", "application/json"),
                ("retry-after", "1"),
                ("x-ratelimit-limit-tokens", &limit),
                ("x-ratelimit-remaining-tokens", &remaining),
            ],
            body.as_bytes(),
        );
        self.replied = true;
        Action::Pause
    }

    fn on_log(&mut self) {
        let Some(key) = self.key.clone() else { return };
        if self.replied {
            return;
        }
        let counter = self.counter_key(&key);
        let mut retries = 0u32;
        loop {
            let (used, cas) = match get_shared(counter.as_bytes()) {
                Ok(Some((v, cas))) => (parse_u64(&v).unwrap_or(0), cas),
                Ok(None) => (0, 0),
                Err(code) => return self.fail_open("read", code),
            };
            let next = (used + self.charge).to_string();
            match set_shared(counter.as_bytes(), next.as_bytes(), cas) {
                OK => break,
                CAS_MISMATCH if retries < 1000 => retries += 1,
                code => return self.fail_open("write", code),
            }
        }
        if retries > 0 {
            log(1, &format!("probe: cas retries {retries}"));
        }
    }
}
