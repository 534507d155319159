//! Replaying captured exchanges (the `testdata/fixtures` layout) through a VM.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::state::{Action, LocalResponse};
use crate::vm::{HostError, StreamId, Vm};

/// One captured HTTP exchange.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// A name for reports (the case directory name).
    pub name: String,
    /// Request method.
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// The `:authority`.
    pub authority: String,
    /// Request headers (without pseudo-headers).
    pub request_headers: Vec<(String, String)>,
    /// The request body.
    pub request_body: Vec<u8>,
    /// Response status.
    pub status: u16,
    /// Response headers (without `:status`).
    pub response_headers: Vec<(String, String)>,
    /// The response body as received (after HTTP de-chunking).
    pub response_body: Vec<u8>,
    /// The `expect` object of `case.json`, if any.
    pub expect: Option<Value>,
}

fn header_list(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Loads a case directory: `case.json`, optional `request.json`, `response.bin`.
/// `authority` is used when the request headers carry no `host`.
pub fn load_case(dir: &Path, authority: &str) -> Result<Exchange, String> {
    let case_path = dir.join("case.json");
    let text =
        std::fs::read_to_string(&case_path).map_err(|e| format!("{}: {e}", case_path.display()))?;
    let case: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", case_path.display()))?;
    let mut request_headers = header_list(case.get("request_headers"));
    let host = request_headers
        .iter()
        .position(|(k, _)| k == "host")
        .map(|i| request_headers.remove(i).1);
    let read_opt = |name: &str| -> Result<Vec<u8>, String> {
        let p = dir.join(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    };
    Ok(Exchange {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        method: case
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("POST")
            .to_string(),
        path: case
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_string(),
        authority: host.unwrap_or_else(|| authority.to_string()),
        request_headers,
        request_body: read_opt("request.json")?,
        status: case
            .get("response_status")
            .and_then(Value::as_u64)
            .unwrap_or(200) as u16,
        response_headers: header_list(case.get("response_headers")),
        response_body: read_opt("response.bin")?,
        expect: case.get("expect").cloned(),
    })
}

/// How bodies are cut into chunks and how time passes.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Largest chunk in bytes (at least 1).
    pub chunk_size: usize,
    /// Vary chunk sizes between 1 and `chunk_size` (deterministic, seeded by `seed`).
    pub jitter: bool,
    /// Seed for the jitter.
    pub seed: u64,
    /// Send the last data chunk without end-of-stream, then an empty chunk with it.
    pub empty_final_chunk: bool,
    /// Deliver the response end as trailers instead of an end-of-stream body call.
    pub response_trailers: bool,
    /// Cut the stream after the response body: no end-of-stream, straight to the access log
    /// (a reset, as Envoy sees a cut upstream connection).
    pub reset: bool,
    /// Milliseconds between the request and the response headers.
    pub upstream_ms: u64,
    /// Milliseconds between response body chunks.
    pub chunk_interval_ms: u64,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            chunk_size: 1460,
            jitter: true,
            seed: 1,
            empty_final_chunk: false,
            response_trailers: false,
            reset: false,
            upstream_ms: 120,
            chunk_interval_ms: 15,
        }
    }
}

fn chunks<'a>(body: &'a [u8], d: &Delivery, salt: u64) -> Vec<&'a [u8]> {
    let max = d.chunk_size.max(1);
    let mut state = d.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = if d.jitter {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            1 + (state % max as u64) as usize
        } else {
            max
        };
        let n = n.min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// What one replayed exchange did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The stream's context id.
    pub stream: StreamId,
    /// Filter state the filter set (`wasm.<path>` → value).
    pub filter_state: BTreeMap<String, String>,
    /// Whether every callback answered Continue.
    pub all_continue: bool,
    /// Whether the bytes passed on equal the bytes received, both ways, and no header or
    /// body was modified.
    pub forwarded_unchanged: bool,
    /// The local reply the filter sent instead of the upstream's response, if any (the
    /// exchange never reached the upstream).
    pub local_response: Option<LocalResponse>,
}

/// Replays one exchange through `vm`, the way Envoy would deliver it.
pub fn run(vm: &mut Vm, ex: &Exchange, d: &Delivery) -> Result<Outcome, HostError> {
    let id = vm.new_stream();
    let mut req: Vec<(&str, &str)> = vec![
        (":method", ex.method.as_str()),
        (":path", ex.path.as_str()),
        (":authority", ex.authority.as_str()),
        (":scheme", "https"),
    ];
    req.extend(
        ex.request_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    vm.request_headers(id, &req, ex.request_body.is_empty())?;
    deliver(vm, id, &ex.request_body, d, true, 0)?;
    vm.advance_ms(d.upstream_ms);
    let status = ex.status.to_string();
    let mut resp: Vec<(&str, &str)> = vec![(":status", status.as_str())];
    resp.extend(
        ex.response_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let headers_only = ex.response_body.is_empty() && !d.reset && !d.response_trailers;
    vm.response_headers(id, &resp, headers_only)?;
    deliver(vm, id, &ex.response_body, d, false, d.chunk_interval_ms)?;
    vm.advance_ms(1);
    vm.complete(id)?;
    let s = vm.stream(id).ok_or(HostError::NoSuchStream(id))?;
    let all_continue = s
        .callbacks
        .iter()
        .all(|(_, a)| matches!(a, Action::Continue | Action::None));
    let forwarded_unchanged = s.forwarded_request == ex.request_body
        && s.forwarded_response == ex.response_body
        && !s.modified;
    Ok(Outcome {
        stream: id,
        filter_state: vm.filter_state(id),
        all_continue,
        forwarded_unchanged,
        local_response: s.local_response.clone(),
    })
}

fn deliver(
    vm: &mut Vm,
    id: StreamId,
    body: &[u8],
    d: &Delivery,
    request: bool,
    interval: u64,
) -> Result<(), HostError> {
    let cut = !request && d.reset;
    let trailers = !request && d.response_trailers && !cut;
    if !body.is_empty() {
        let parts = chunks(body, d, if request { 1 } else { 2 });
        let n = parts.len();
        let eos_on_last = !cut && !trailers && !d.empty_final_chunk;
        for (i, c) in parts.into_iter().enumerate() {
            if i > 0 {
                vm.advance_ms(interval);
            }
            let eos = eos_on_last && i + 1 == n;
            if request {
                vm.request_body(id, c, eos)?;
            } else {
                vm.response_body(id, c, eos)?;
            }
        }
        if !cut && !trailers && d.empty_final_chunk {
            if request {
                vm.request_body(id, &[], true)?;
            } else {
                vm.response_body(id, &[], true)?;
            }
        }
    }
    if trailers {
        vm.response_trailers(id, &[("x-trailer", "1")])?;
    }
    Ok(())
}

/// The filter-state keys (under `wasm.<prefix>.`) and the `expect` fields they must match.
pub const EXPECT_KEYS: [(&str, &str); 14] = [
    ("request_prompt_tokens", "input_tokens"),
    ("request_completion_tokens", "output_tokens"),
    ("request_total_tokens", "total_tokens"),
    ("request_cached_tokens", "cached_input_tokens"),
    (
        "request_cache_creation_tokens",
        "cache_creation_input_tokens",
    ),
    ("request_reasoning_tokens", "reasoning_tokens"),
    ("input_audio_tokens", "input_audio_tokens"),
    ("input_image_tokens", "input_image_tokens"),
    ("output_audio_tokens", "output_audio_tokens"),
    ("output_image_tokens", "output_image_tokens"),
    (
        "cache_creation_5m_input_tokens",
        "cache_creation_5m_input_tokens",
    ),
    (
        "cache_creation_1h_input_tokens",
        "cache_creation_1h_input_tokens",
    ),
    ("web_search_requests", "web_search_requests"),
    ("web_fetch_requests", "web_fetch_requests"),
];

/// The filter-state keys holding text figures and the `expect` fields they must match.
pub const EXPECT_TEXT_KEYS: [(&str, &str); 2] =
    [("service_tier", "service_tier"), ("operation", "operation")];

/// Compares the filter state with a case's `expect`: a list of mismatches (empty: all good).
pub fn check_expect(
    filter_state: &BTreeMap<String, String>,
    expect: &Value,
    prefix: &str,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (key, field) in EXPECT_KEYS {
        let want = expect
            .get(field)
            .and_then(Value::as_u64)
            .map(|v| v.to_string());
        let got = filter_state.get(&format!("wasm.{prefix}.{key}")).cloned();
        if want != got {
            bad.push(format!("{key}: want {want:?}, got {got:?}"));
        }
    }
    for (key, field) in EXPECT_TEXT_KEYS {
        let want = expect
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_string);
        let got = filter_state.get(&format!("wasm.{prefix}.{key}")).cloned();
        if want != got {
            bad.push(format!("{key}: want {want:?}, got {got:?}"));
        }
    }
    let want_model = expect
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string);
    let got_model = filter_state.get(&format!("wasm.{prefix}.model")).cloned();
    if want_model != got_model {
        bad.push(format!("model: want {want_model:?}, got {got_model:?}"));
    }
    // The figures are the provider's unless the case says they are estimated.
    let want_estimated = expect
        .get("estimated")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string();
    let got_estimated = filter_state
        .get(&format!("wasm.{prefix}.estimated"))
        .cloned();
    if got_estimated.as_deref() != Some(want_estimated.as_str()) {
        bad.push(format!(
            "estimated: want {want_estimated}, got {got_estimated:?}"
        ));
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_covers_the_body() {
        let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        for jitter in [false, true] {
            let d = Delivery {
                chunk_size: 97,
                jitter,
                ..Delivery::default()
            };
            let parts = chunks(&body, &d, 2);
            assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= 97));
            assert_eq!(parts.concat(), body);
        }
    }
}
