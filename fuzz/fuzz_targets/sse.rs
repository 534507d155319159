//! Server-sent events: any bytes as a `text/event-stream` response body, under every
//! dialect that streams SSE. Oracles: no panic, the same record whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_usage_fuzz::Scenario;

const PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    "/api/v1/services/aigc/text-generation/generation",
    "/v2/chat",
];

fuzz_target!(|data: &[u8]| {
    let request = br#"{"model":"m","stream":true}"#;
    for (i, path) in PATHS.iter().enumerate() {
        let mut s = Scenario::new(path, "text/event-stream");
        if i == 4 {
            s.request_headers.push(("x-dashscope-sse", "enable"));
        }
        s.check(request, data, i as u64);
    }
    // Undeclared framing: detected from the first bytes.
    Scenario::new("/v1/chat/completions", "application/octet-stream").check(request, data, 99);
});
