//! The whole-event walk (with the envelope replay) against the streaming scanner: the
//! input is split into events at blank lines and walked one after the other as an SSE
//! body walks them.
//!
//! Oracle: wherever the walk reads an event through, the scanner alone reads the same
//! values and streamed strings from it and ends it with one complete document (no panic
//! either way). The watch table goes through arrays and streams text, as the dialects'
//! tables do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_usage_core::fuzzing::walk_agrees_with_scanner;
use llm_usage_fuzz::WALK_WATCHES as W;

fuzz_target!(|data: &[u8]| {
    let mut events = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(2).position(|w| w == b"\n\n") {
        events.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    events.push(rest);
    walk_agrees_with_scanner(W, &events);
});
