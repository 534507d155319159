//! What every `llm-usage` frontend reports, and how, written once.
//!
//! `llm-usage-core` turns bytes into a [`UsageRecord`]. Between that record and a sink
//! (proxy-wasm metrics and filter state in Envoy, the [`metrics`] facade and a callback in
//! a tower service or a reqwest client) lies logic that depends on no frontend: when an
//! exchange starts and ends and what the clock said then ([`Tracker`], [`Timings`]),
//! whether the traffic was LLM traffic and which model to report ([`select`]), which
//! record figure becomes which counter, histogram, token type and filter-state key
//! ([`tokens`], [`names`]), and how label values are cleaned and capped ([`labels`]).
//! Each frontend used to write it in its own code; now each is an adapter: it feeds bytes
//! to a [`Tracker`], passes times in as numbers, and hands the finished record and its
//! labels to its own sink.
//!
//! A new figure in the record (a token kind, say) is one row of [`tokens::TOKEN_FIELDS`]
//! and reaches every frontend's filter state, counters and token-type histograms from
//! there.
//!
//! The crate holds no clock, no lock and no hash map (it runs inside the proxy-wasm
//! filter, whose size is budgeted): times are nanoseconds of the frontend's clock, value
//! caps use a `BTreeSet`, and a frontend shared across threads wraps what it shares.
//!
//! [`metrics`]: https://docs.rs/metrics
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod labels;
mod lifecycle;
pub mod names;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod select;
pub mod series;
pub mod span;
mod timings;
pub mod tokens;

pub use crate::lifecycle::Tracker;

/// The core's options every native frontend starts from: with the `bpe` feature, tokens a
/// response did not report are estimated with OpenAI's byte-pair encodings for OpenAI
/// models ([`Bpe`](llm_usage_core::Bpe)); without it, from character counts.
pub fn default_options() -> llm_usage_core::Options {
    let options = llm_usage_core::Options::new();
    #[cfg(feature = "bpe")]
    let options = options.token_counter(llm_usage_core::Bpe::boxed);
    options
}
pub use crate::timings::Timings;
pub use llm_usage_core::{Exchange, UsageRecord};
