//! A [tower] layer that gives any Rust HTTP service or client model- and token-level
//! observability of LLM API traffic, streaming, with no buffering.
//!
//! [`LlmUsageLayer`] wraps a service; the resulting [`LlmUsage`] wraps request and response
//! bodies in [`RequestBody`] and [`ResponseBody`], which show every data frame to an
//! `llm-usage-core` [`Exchange`](llm_usage_core::Exchange) as it passes and forward it
//! unchanged. Parsing lives entirely in the core: this crate only feeds it and reports.
//! (Opt-in: [`LlmUsageLayer::inject_include_usage`] holds and rewrites streamed
//! OpenAI-compatible requests so that their streams report usage, and removes the added usage
//! chunk from the client's stream; the core decides every byte.)
//!
//! Once per exchange (when the response body ends, errors, or is dropped early) the
//! [`UsageRecord`] is emitted:
//! - through the [`metrics`] facade, with OpenTelemetry GenAI names by default or the
//!   `asm` profile of the `llm-usage-wasm` filter ([`MetricsConfig`]);
//! - to an [`OnRecord`] callback, for access logs or billing.
//!
//! A client that hangs up mid-stream yields a partial record (`complete: false`,
//! [`Outcome::Dropped`]) with the usage known so far.
//!
//! ```
//! use axum::{routing::post, Router};
//! use llm_usage_tower::{LlmUsageLayer, UsageEvent};
//!
//! async fn chat() -> &'static str {
//!     r#"{"model":"gpt-4o","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#
//! }
//!
//! let app: Router = Router::new()
//!     .route("/v1/chat/completions", post(chat))
//!     .layer(LlmUsageLayer::new().on_record(|ev: &UsageEvent| {
//!         println!("model={:?} in={:?} out={:?}", ev.record.model, ev.record.input_tokens, ev.record.output_tokens);
//!     }));
//! # let _ = app;
//! ```
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
pub mod budget;
mod callback;
mod layer;
mod metrics_config;
pub mod realtime;
mod state;

pub use crate::body::{RequestBody, ResponseBody};
pub use crate::callback::{Injection, OnRecord, Outcome, UsageEvent};
pub use crate::layer::{LlmUsage, LlmUsageLayer, ResponseFuture};
pub use crate::metrics_config::{
    Label, MetricsConfig, TimeUnit, TokenMetric, TokenType, DEFAULT_MAX_MODELS, OTHER,
    REQUEST_DURATION_BUCKETS, TIME_PER_OUTPUT_TOKEN_BUCKETS, TIME_TO_FIRST_TOKEN_BUCKETS,
    TOKEN_USAGE_BUCKETS, UNKNOWN,
};
pub use llm_usage_core::inject::Skip;
pub use llm_usage_core::{Provider, UsageRecord};
// Public dependencies, re-exported so that users name the versions this crate uses: the
// `metrics` facade (its `SharedString` names and its recorder), the core (`Options`,
// the record) and the cost crate (`Budgets`).
/// The Prometheus exporter's builder and error, and the bucket helper behind
/// [`MetricsConfig::install_buckets`] (`prometheus` feature).
#[cfg(feature = "prometheus")]
pub use llm_usage_report::prometheus;
#[doc(no_inline)]
pub use {llm_usage_core, llm_usage_cost, metrics};

// The README's code blocks are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
