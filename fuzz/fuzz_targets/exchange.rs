//! A whole exchange: request head, request body, response head, response body, all from
//! the input, under every dialect (detected from the path and headers, and forced by
//! every provider override).
//!
//! Input layout (what `fuzz/build-corpus.sh` writes from the fixtures):
//!
//! ```text
//! <byte: provider override, 0 = detect> <byte: options>
//! METHOD PATH\n
//! request-header: value\n ...
//! @ STATUS\n
//! response-header: value\n ...
//! \n
//! <request body> \0--response--\0 <response body>
//! ```
//!
//! Oracles: no panic; the same record whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_usage_core::Provider;
use llm_usage_fuzz::Scenario;

const SEP: &[u8] = b"\0--response--\0";

fn split_once<'a>(data: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = data.windows(sep.len()).position(|w| w == sep)?;
    Some((&data[..at], &data[at + sep.len()..]))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (forced, opts, rest) = (data[0], data[1], &data[2..]);
    let (head, bodies) = split_once(rest, b"\n\n").unwrap_or((rest, b""));
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let (request, response) = split_once(bodies, SEP).unwrap_or((bodies, b""));

    let mut lines = head.split('\n');
    let first = lines.next().unwrap_or("");
    let (method, path) = first.split_once(' ').unwrap_or(("POST", first));
    let mut req_headers = Vec::new();
    let mut resp_headers = Vec::new();
    let mut status = 200u16;
    let mut in_response = false;
    for line in lines {
        if let Some(s) = line.strip_prefix("@ ") {
            status = s.trim().parse().unwrap_or(200);
            in_response = true;
            continue;
        }
        let (k, v) = line.split_once(':').unwrap_or((line, ""));
        let v = v.strip_prefix(' ').unwrap_or(v);
        if in_response {
            resp_headers.push((k, v));
        } else {
            req_headers.push((k, v));
        }
    }

    let mut s = Scenario {
        method,
        path,
        request_headers: req_headers,
        status,
        response_headers: resp_headers,
        provider: None,
        max_body_bytes: None,
    };
    if opts & 0x80 != 0 {
        s.max_body_bytes = Some(u64::from(opts & 0x7f) * 37);
    }
    let forced = usize::from(forced);
    if forced > 0 && forced <= Provider::ALL.len() {
        s.provider = Some(Provider::ALL[forced - 1]);
        s.check(request, response, 1);
    } else {
        // Detected, then under every override.
        s.check(request, response, 0);
        for p in Provider::ALL {
            s.provider = Some(p);
            s.check(request, response, 2);
        }
    }
});
