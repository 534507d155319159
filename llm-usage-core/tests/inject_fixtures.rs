//! The injection fixtures (`inject_hidden_events` in `case.json`): the rewritten request is
//! `upstream-request.json` (absent: the request unchanged), the filtered stream is
//! `client-response.bin` (absent: the stream unchanged) at every split, and the record, fed
//! the upstream bytes, is `expect`.

use std::path::{Path, PathBuf};

use llm_usage_core::inject::{applies_to, rewrite_request, Filtered, Rewrite, UsageChunkFilter};
use llm_usage_core::Exchange;
use serde_json::Value;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| {
            std::fs::read(d.join("case.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|c| c.get("inject_hidden_events").is_some())
        })
        .collect();
    v.sort();
    assert!(v.len() >= 3, "{v:?}");
    v
}

fn filter(stream: &[u8], cut: usize) -> (Vec<u8>, u64) {
    let mut f = UsageChunkFilter::new();
    let mut client = Vec::new();
    for part in [&stream[..cut], &stream[cut..]] {
        let mut out = Vec::new();
        match f.push(part, &mut out) {
            Filtered::Unchanged => client.extend_from_slice(part),
            Filtered::Changed => client.extend_from_slice(&out),
        }
    }
    f.finish(&mut client);
    (client, f.removed_events())
}

#[test]
fn injection_fixtures_give_both_sides_and_the_record() {
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let case: Value =
            serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
        let path = case["path"].as_str().unwrap();
        assert!(applies_to("POST", path), "{name}");
        let request = std::fs::read(dir.join("request.json")).unwrap();
        let response = std::fs::read(dir.join("response.bin")).unwrap();
        let upstream_request = std::fs::read(dir.join("upstream-request.json")).ok();
        let client_response = std::fs::read(dir.join("client-response.bin")).ok();
        let hidden = case["inject_hidden_events"].as_u64().unwrap();

        let rewrite = rewrite_request(&request);
        match (&rewrite, &upstream_request) {
            (Rewrite::Injected(body), Some(want)) => assert_eq!(body, want, "{name}"),
            (Rewrite::ClientAsked, None) => {}
            other => panic!("{name}: {other:?}"),
        }
        let want_client = client_response.clone().unwrap_or_else(|| response.clone());
        for cut in 0..=response.len() {
            let (client, removed) = if rewrite.hides_usage_chunk() {
                filter(&response, cut)
            } else {
                (response.clone(), 0)
            };
            assert!(client == want_client, "{name}: split at {cut}");
            assert_eq!(removed, hidden, "{name}");
        }

        // The core sees the client's request and the upstream's response.
        let mut ex = Exchange::new();
        ex.on_request_head("POST", path, [("content-type", "application/json")]);
        ex.on_request_body(&request);
        ex.on_request_end();
        let ct = case["response_headers"]["content-type"].as_str().unwrap();
        ex.on_response_head(200, [("content-type", ct)]);
        ex.on_response_body(&response);
        ex.on_response_end();
        assert_eq!(ex.dialect(), "openai-chat");
        let r = ex.finish();
        let e = &case["expect"];
        assert_eq!(r.input_tokens, e["input_tokens"].as_u64(), "{name}");
        assert_eq!(r.output_tokens, e["output_tokens"].as_u64(), "{name}");
        assert_eq!(r.total_tokens, e["total_tokens"].as_u64(), "{name}");
        assert_eq!(r.model.as_deref(), e["model"].as_str(), "{name}");
        assert!(r.complete, "{name}");
    }
}
