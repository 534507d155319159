//! JSON bodies: one document, concatenated documents, or a streamed top-level array
//! (Gemini `streamGenerateContent` without `alt=sse`), under the JSON dialects.
//! Oracles: no panic, the same record whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_usage_fuzz::Scenario;

const PATHS: &[&str] = &[
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    "/v1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash:generateContent",
    "/v1/chat/completions",
    "/v1/messages",
    "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
    "/v2/chat",
];

fuzz_target!(|data: &[u8]| {
    for (i, path) in PATHS.iter().enumerate() {
        Scenario::new(path, "application/json").check(br#"{"model":"x"}"#, data, i as u64);
    }
    // The same bytes as a request body.
    Scenario::new("/v1/chat/completions", "application/json").check(data, b"{}", 77);
});
