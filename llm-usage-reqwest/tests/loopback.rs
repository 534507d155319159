//! The middleware against a mock provider on loopback: every fixture, byte-identical
//! streams, cut and dropped streams, failed requests.

mod common;

use common::{client, request, Events, Fixture, Provider};
use futures_util::StreamExt;
use llm_usage_reqwest::{LlmUsageMiddleware, Outcome};

/// Every recorded exchange (OpenAI, Anthropic and the other providers, JSON and streamed,
/// compressed or not) streams through byte for byte, and its record is the expected one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_streams_unchanged_and_gives_its_expected_record() {
    let provider = Provider::start().await;
    let names = llm_usage_testkit::fixture_names();
    assert!(names.len() >= 50, "fixtures missing: {names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let fx = Fixture::load(name);
        let events = Events::default();
        let c = client(events.middleware(LlmUsageMiddleware::new().without_metrics()));
        let res = request(&c, &provider, &fx).send().await.expect("send");
        assert_eq!(res.status().as_u16(), fx.status(), "{name}: status");
        let mut stream = res.bytes_stream();
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.expect("chunk"));
        }
        drop(stream);
        assert_eq!(body, fx.response, "{name}: body changed");
        let evs = events.all();
        assert_eq!(evs.len(), 1, "{name}: one record");
        let ev = &evs[0];
        assert_eq!(ev.outcome, Outcome::Complete, "{name}");
        assert_eq!(ev.response_body_bytes, fx.response.len() as u64, "{name}");
        let want_complete = fx.case["expect"]["complete"]
            .as_bool()
            .unwrap_or(!name.contains("truncated"));
        if ev.record.complete != want_complete {
            failures.push(format!("{name}: complete {}", ev.record.complete));
        }
        let got = fx.as_expected(&ev.record);
        if got != common::expected(&fx) {
            failures.push(format!("{name}: got {got}, want {}", common::expected(&fx)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A connection cut in the middle of an Anthropic stream: the caller gets the error, the
/// record is partial with what `message_start` said, and the output is an estimate.
#[tokio::test]
async fn a_cut_stream_gives_a_partial_record() {
    let provider = Provider::start().await;
    let fx = Fixture::load("12-anthropic-messages-stream");
    let events = Events::default();
    let c = client(events.middleware(LlmUsageMiddleware::new().without_metrics()));
    let cut = fx.response.len() / 2;
    let res = request(&c, &provider, &fx)
        .header("x-cut", cut.to_string())
        .send()
        .await
        .expect("send");
    let mut stream = res.bytes_stream();
    let mut body = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => body.extend_from_slice(&c),
            Err(_) => failed = true,
        }
    }
    drop(stream);
    assert!(failed, "the cut reaches the caller");
    assert_eq!(body, fx.response[..cut]);
    let evs = events.all();
    assert_eq!(evs.len(), 1);
    let ev = &evs[0];
    assert_eq!(ev.outcome, Outcome::BodyError);
    assert!(!ev.record.complete);
    assert_eq!(ev.record.input_tokens, Some(25));
    assert_eq!(
        ev.record.model.as_deref(),
        Some("claude-3-5-haiku-20241022")
    );
    // Never the provisional `1` of `message_start`: unknown or estimated from the text.
    assert!(ev.record.output_tokens.is_none() || ev.record.estimated);
}

/// The caller drops the response after the first chunk of an OpenAI stream: a partial
/// record, reported at the drop.
#[tokio::test]
async fn a_dropped_body_gives_a_partial_record() {
    let provider = Provider::start().await;
    let fx = Fixture::load("02-openai-chat-stream-usage");
    let events = Events::default();
    let c = client(events.middleware(LlmUsageMiddleware::new().without_metrics()));
    let res = request(&c, &provider, &fx)
        .header("x-chunk", "64")
        .send()
        .await
        .expect("send");
    let mut stream = res.bytes_stream();
    let first = stream.next().await.expect("a chunk").expect("ok");
    assert!(!first.is_empty());
    assert!(events.all().is_empty(), "nothing reported before the end");
    drop(stream);
    let evs = events.all();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].outcome, Outcome::Dropped);
    assert!(!evs[0].record.complete);
    assert_eq!(
        evs[0].record.input_tokens, None,
        "the usage chunk never came"
    );
    assert_eq!(evs[0].record.request_model.as_deref(), Some("gpt-4o"));
}

/// No response at all (nothing listens): the error goes to the caller, the call is
/// reported with its request model and no status.
#[tokio::test]
async fn a_failed_request_is_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let events = Events::default();
    let c = client(events.middleware(LlmUsageMiddleware::new().without_metrics()));
    let err = c
        .post(format!("http://{addr}/v1/chat/completions"))
        .body(r#"{"model":"gpt-4o","messages":[]}"#)
        .send()
        .await;
    assert!(err.is_err());
    let evs = events.all();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].outcome, Outcome::RequestError);
    assert_eq!(evs[0].status, None);
    assert_eq!(evs[0].record.request_model.as_deref(), Some("gpt-4o"));
    assert!(!evs[0].record.complete);
}
