//! # llm-usage-wasm-host
//!
//! A small host for proxy-wasm modules that behaves like Envoy, so the `llm-usage-wasm`
//! filter can be tested as the real `.wasm` artifact and exchanges can be replayed through it
//! offline. It implements the proxy-wasm ABI 0.2.1 host side on the [wasmi] interpreter
//! (or, with the `wasmtime` feature, on wasmtime's Cranelift JIT; see [`EngineKind`]):
//!
//! - imports are bound from the module's own import list; an import Envoy does not provide,
//!   or one with the wrong signature, refuses the module as Envoy would;
//! - the VM starts like cpp-host: `_initialize` (then `main`), root context creation,
//!   `proxy_on_vm_start`, `proxy_on_configure`;
//! - streams follow Envoy's callback order, including `on_log` *before* `on_done` and
//!   `on_delete`, contexts created lazily at the request headers, body buffers that hold only
//!   the current chunk after `Continue` and accumulate after `Pause`;
//! - properties: node metadata under `xds.node.metadata.*` (Envoy ≥ 1.33) and/or
//!   `node.metadata.*`, request and response attributes, filter state read-back;
//! - `proxy_set_property` stores filter state under `wasm.<path>` and is refused outside a
//!   stream; metrics are created as `wasmcustom.<name>` with Envoy's id scheme and rules;
//! - [`StatsConfig`] applies bootstrap `stats_tags` and renders Prometheus text the way
//!   Envoy's admin handler does.
//!
//! ```no_run
//! use llm_usage_wasm_host::{Host, HostOptions, StatsConfig};
//!
//! let host = Host::from_file("llm_usage_wasm.wasm".as_ref()).unwrap();
//! let mut vm = host.start(HostOptions::default().node_metadata("WORKLOAD_NAME", "sleep")).unwrap();
//! let id = vm.new_stream();
//! vm.request_headers(id, &[(":method", "GET"), (":path", "/"), (":authority", "x")], true).unwrap();
//! vm.response_headers(id, &[(":status", "200")], true).unwrap();
//! vm.complete(id).unwrap();
//! print!("{}", vm.prometheus(&StatsConfig::asm()));
//! ```
//!
//! [wasmi]: https://docs.rs/wasmi

#![deny(missing_docs)]

pub mod abi;
mod engine;
pub mod replay;
pub mod shared;
pub mod state;
pub mod stats;
mod vm;

pub use shared::SharedData;
pub use state::{
    Action, HostState, Http1Framing, LiveMaps, LocalResponse, LogLine, NodePaths, StreamState,
};
pub use stats::{MetricValue, Stats, StatsConfig};
pub use vm::{EngineKind, Host, HostError, HostOptions, StreamId, Vm};
