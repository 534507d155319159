//! Newline-delimited JSON: any bytes as an `application/x-ndjson` body (Ollama native and
//! an OpenAI-shaped dialect). Oracles: no panic, the same record whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_usage_fuzz::Scenario;

fuzz_target!(|data: &[u8]| {
    let request = br#"{"model":"llama3.2"}"#;
    Scenario::new("/api/chat", "application/x-ndjson").check(request, data, 1);
    Scenario::new("/api/generate", "application/jsonl").check(b"", data, 2);
    Scenario::new("/v1/chat/completions", "application/x-ndjson").check(request, data, 3);
    let mut capped = Scenario::new("/api/chat", "application/x-ndjson");
    capped.max_body_bytes = Some(data.len() as u64 / 2);
    capped.check(request, data, 4);
});
