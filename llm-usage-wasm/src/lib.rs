//! # llm-usage-wasm
//!
//! A [proxy-wasm] filter for Envoy and Istio that observes LLM API traffic and reports the
//! model and token usage of every exchange, with no change to applications. It is drop-in
//! compatible with Alibaba Cloud Service Mesh's LLM observability (filter-state keys
//! `wasm.asm.llmproxy.*`, the `asm_llm_proxy_*` counters and their `stats_tags`), and can
//! instead name its metrics after the OpenTelemetry GenAI conventions.
//!
//! By default the filter only observes: every callback returns `Continue`, no byte is held
//! or changed, and a failing host call is logged once and otherwise ignored. The opt-in
//! `inject_include_usage` setting holds and rewrites streamed OpenAI-compatible requests so
//! that their streams report usage, and removes the added usage chunk from the client's
//! stream (see the README). All parsing happens in
//! [`llm_usage_core`]; this crate is plumbing, configuration, filter state and metrics.
//!
//! Build: `cargo build --release -p llm-usage-wasm --target wasm32-wasip1`, which gives
//! `target/wasm32-wasip1/release/llm_usage_wasm.wasm`. Configuration and deployment are
//! described in the crate's `README.md`.
//!
//! [proxy-wasm]: https://github.com/proxy-wasm/spec

#![deny(missing_docs)]

pub mod abi;
mod budget;
pub mod config;
mod filter;
pub mod labels;
mod raw;
mod sdk;

pub use filter::Root;

/// The module entry point: `_initialize` registers the root context factory.
#[cfg(target_arch = "wasm32")]
mod entry {
    use super::Root;

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(Root::new())
        });
    }}
}
