//! Benchmarks of `llm-usage-core` against serde_json baselines and the memchr ceiling.
//!
//! Everything the `compare` binary and the criterion benches share lives here: the
//! deterministic [`inputs`], the [`baselines`], the core runner ([`run_core`]) and the
//! counting allocator ([`alloc::Counting`]) that proves the core allocates nothing per
//! event.
//!
//! The crate denies `unsafe` except in [`alloc`], where implementing `GlobalAlloc`
//! requires it, and in [`clock`], which reads the thread's CPU time.

#![deny(unsafe_code)]

pub mod alloc;
pub mod baselines;
pub mod clock;
pub mod inputs;

use baselines::Found;
use inputs::{Input, Side};
use llm_usage_core::{Exchange, UsageRecord};

/// How the core is fed.
#[derive(Debug, Clone, Copy)]
pub enum Feed<'a> {
    /// The whole body in one call.
    Whole,
    /// Successive chunks of these sizes (they add up to the wire length).
    Chunks(&'a [usize]),
}

/// Starts an exchange for `input`: heads seen, body not yet.
pub fn start(input: &Input) -> Exchange {
    let mut ex = Exchange::new();
    ex.on_request_head("POST", input.path, input.request_headers.iter().copied());
    if input.side == Side::Response {
        ex.on_request_end();
        ex.on_response_head(200, input.response_headers.iter().copied());
    }
    ex
}

/// Feeds the body of `input` to a started exchange.
pub fn feed(ex: &mut Exchange, input: &Input, how: Feed<'_>) {
    let mut put = |chunk: &[u8]| match input.side {
        Side::Request => ex.on_request_body(chunk),
        Side::Response => ex.on_response_body(chunk),
    };
    match how {
        Feed::Whole => put(&input.wire),
        Feed::Chunks(sizes) => {
            let mut at = 0;
            for &n in sizes {
                put(&input.wire[at..at + n]);
                at += n;
            }
        }
    }
}

/// One whole exchange through the core: heads, body, end, record.
pub fn run_core(input: &Input, how: Feed<'_>) -> UsageRecord {
    let mut ex = start(input);
    feed(&mut ex, input, how);
    match input.side {
        Side::Request => ex.on_request_end(),
        Side::Response => ex.on_response_end(),
    }
    ex.finish()
}

/// The core's record in the baselines' terms, to check everyone read the same figures.
pub fn found(input: &Input, record: &UsageRecord) -> Found {
    match input.side {
        Side::Request => Found {
            model: record.request_model.clone(),
            input: None,
            output: None,
            stream: record.stream,
        },
        Side::Response => Found {
            model: record.response_model.clone(),
            input: record.input_tokens,
            output: record.output_tokens,
            stream: None,
        },
    }
}
