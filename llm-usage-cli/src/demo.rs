//! `llm-usage demo`: replays bundled provider exchanges through the core, in small
//! chunks as a proxy would see them, and prints each record and the totals per model.

use llm_usage_core::{Exchange, UsageRecord};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, Write};

// The bundled exchanges live in the package (`llm-usage-cli/demo/`, copies of
// `testdata/fixtures` cases, kept equal by a test) so that the published crate builds.
macro_rules! bundled {
    ($dir:literal) => {
        (
            $dir,
            include_str!(concat!("../demo/", $dir, "/case.json")),
            include_bytes!(concat!("../demo/", $dir, "/request.json")).as_slice(),
            include_bytes!(concat!("../demo/", $dir, "/response.bin")).as_slice(),
        )
    };
}

/// The bundled exchanges: (name, case.json, request body, response body).
pub(crate) const BUNDLED: &[(&str, &str, &[u8], &[u8])] = &[
    bundled!("01-openai-chat-basic"),
    bundled!("02-openai-chat-stream-usage"),
    bundled!("12-anthropic-messages-stream"),
    bundled!("13-anthropic-messages-cache"),
    bundled!("17-gemini-stream-sse-thinking"),
    bundled!("24-bedrock-converse-stream"),
    bundled!("28-dashscope-generation-sse"),
    bundled!("47-openai-gzip-json"),
    bundled!("51-anthropic-br-sse"),
    bundled!("52-openai-zstd-json"),
    bundled!("60-anthropic-web-fetch-cache-split-json"),
    bundled!("61-gemini-multimodal-input-json"),
];

fn headers(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Replays one bundled exchange, feeding bodies in 7-byte chunks.
pub(crate) fn replay(case_json: &str, request: &[u8], response: &[u8]) -> UsageRecord {
    let case: Value = serde_json::from_str(case_json).expect("bundled case.json is valid");
    let mut ex = Exchange::with_options(crate::exchange_options(false));
    ex.on_request_head(
        case["method"].as_str().unwrap_or("POST"),
        case["path"].as_str().unwrap_or("/"),
        headers(&case["request_headers"]),
    );
    request.chunks(7).for_each(|c| ex.on_request_body(c));
    ex.on_request_end();
    let status = case["response_status"].as_u64().unwrap_or(200) as u16;
    ex.on_response_head(status, headers(&case["response_headers"]));
    response.chunks(7).for_each(|c| ex.on_response_body(c));
    ex.on_response_end();
    ex.finish()
}

#[derive(Default)]
struct Totals {
    requests: u64,
    input: u64,
    output: u64,
    cached: u64,
    total: u64,
}

/// Runs the demo, writing to `out`.
pub(crate) fn run(out: &mut dyn Write) -> io::Result<()> {
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    writeln!(
        out,
        "Replaying {} bundled exchanges (no network):\n",
        BUNDLED.len()
    )?;
    for (name, case, request, response) in BUNDLED {
        let r = replay(case, request, response);
        writeln!(out, "# {name}")?;
        writeln!(
            out,
            "{}",
            serde_json::to_string(&r).expect("a record always serialises")
        )?;
        let t = totals
            .entry(r.model.clone().unwrap_or_else(|| "unknown".into()))
            .or_default();
        t.requests += 1;
        t.input += r.input_tokens.unwrap_or(0);
        t.output += r.output_tokens.unwrap_or(0);
        t.cached += r.cached_input_tokens.unwrap_or(0);
        t.total += r.total_tokens.unwrap_or(0);
    }
    writeln!(out, "\nToken totals per model:")?;
    writeln!(
        out,
        "{:<46} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "model", "requests", "input", "cached", "output", "total"
    )?;
    for (model, t) in &totals {
        writeln!(
            out,
            "{:<46} {:>8} {:>8} {:>8} {:>8} {:>8}",
            model, t.requests, t.input, t.cached, t.output, t.total
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_exchanges_give_their_expected_records() {
        for (name, case, request, response) in BUNDLED {
            let r = replay(case, request, response);
            let expect = &serde_json::from_str::<Value>(case).unwrap()["expect"];
            assert_eq!(r.model.as_deref(), expect["model"].as_str(), "{name}");
            assert_eq!(r.input_tokens, expect["input_tokens"].as_u64(), "{name}");
            assert_eq!(r.output_tokens, expect["output_tokens"].as_u64(), "{name}");
            assert_eq!(r.total_tokens, expect["total_tokens"].as_u64(), "{name}");
            assert!(r.complete, "{name}");
        }
    }

    #[test]
    fn bundled_copies_equal_the_fixtures() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let fixtures = root.join("../testdata/fixtures");
        // The packaged crate has no testdata/: only the repository can compare.
        if !fixtures.is_dir() {
            return;
        }
        let files = std::fs::read_dir(root.join("demo")).unwrap().count();
        assert_eq!(
            files,
            BUNDLED.len(),
            "demo/ holds exactly the bundled cases"
        );
        for (name, case, request, response) in BUNDLED {
            let dir = fixtures.join(name);
            let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
            assert_eq!(case.as_bytes(), read("case.json"), "{name}");
            assert_eq!(*request, read("request.json"), "{name}");
            assert_eq!(*response, read("response.bin"), "{name}");
        }
    }

    #[test]
    fn totals_table_sums_per_model() {
        let mut out = Vec::new();
        run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Token totals per model:"));
        // claude-3-7-sonnet: 1 request, 3648 input of which 3480 cached, 210 output.
        let line = text
            .lines()
            .find(|l| l.starts_with("claude-3-7-sonnet"))
            .expect("a model line");
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "claude-3-7-sonnet-20250219",
                "1",
                "3648",
                "3480",
                "210",
                "3858"
            ]
        );
    }
}
