//! 200 concurrent calls through one middleware: each gets its own record, and the
//! `metrics` counters add up to the fixtures' figures. (Its own test binary: it installs
//! the process's global metrics recorder.)

mod common;

use common::{client, request, Events, Fixture, Provider};
use llm_usage_reqwest::{LlmUsageMiddleware, Outcome};
use metrics_util::debugging::DebugValue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_calls_each_report_their_own_record() {
    let snapshotter = common::install_debugging_recorder();

    let provider = Provider::start().await;
    let fixtures = [
        "01-openai-chat-basic",
        "02-openai-chat-stream-usage",
        "11-anthropic-messages-basic",
        "12-anthropic-messages-stream",
    ]
    .map(Fixture::load);
    let events = Events::default();
    let c = client(events.middleware(LlmUsageMiddleware::new()));
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let c = c.clone();
        let fx = &fixtures[i % fixtures.len()];
        let rb = request(&c, &provider, fx).header("x-chunk", (5 + i % 50).to_string());
        let want = fx.response.clone();
        tasks.push(tokio::spawn(async move {
            let res = rb.send().await.expect("send");
            let body = res.bytes().await.expect("body");
            assert_eq!(&body[..], &want[..], "body changed");
        }));
    }
    for t in tasks {
        t.await.expect("call");
    }

    let evs = events.all();
    assert_eq!(evs.len(), 200);
    let mut want_input = 0;
    let mut want_output = 0;
    for fx in &fixtures {
        let path = fx.path();
        let mine: Vec<_> = evs
            .iter()
            .filter(|e| {
                e.url.path() == path && e.record.stream == fx.case["expect"]["stream"].as_bool()
            })
            .collect();
        assert_eq!(mine.len(), 50, "{}", fx.name);
        for e in mine {
            assert_eq!(e.outcome, Outcome::Complete);
            assert!(e.record.complete, "{}", fx.name);
            assert_eq!(
                e.record.input_tokens,
                fx.case["expect"]["input_tokens"].as_u64()
            );
            assert_eq!(
                e.record.output_tokens,
                fx.case["expect"]["output_tokens"].as_u64()
            );
            assert_eq!(e.label("http_status_class"), Some("2xx"));
        }
        want_input += 50 * fx.case["expect"]["input_tokens"].as_u64().unwrap();
        want_output += 50 * fx.case["expect"]["output_tokens"].as_u64().unwrap();
    }

    // Counters, summed over every label set.
    let mut requests = 0;
    let mut input = 0;
    let mut output = 0;
    let mut durations = 0;
    let mut usage_input = 0;
    let mut usage_output = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let k = key.key();
        let token_type = k
            .labels()
            .find(|l| l.key() == "gen_ai_token_type")
            .map(|l| l.value().to_owned());
        match (k.name(), value) {
            ("llm_usage_requests_total", DebugValue::Counter(n)) => requests += n,
            ("llm_usage_tokens_total", DebugValue::Counter(n)) => match token_type.as_deref() {
                Some("input") => input += n,
                Some("output") => output += n,
                _ => {}
            },
            ("gen_ai_client_inference_usage_input_tokens_total", DebugValue::Counter(n)) => {
                assert!(k
                    .labels()
                    .any(|l| l.key() == "gen_ai_token_modality" && l.value() == "unknown"));
                usage_input += n;
            }
            ("gen_ai_client_inference_usage_output_tokens_total", DebugValue::Counter(n)) => {
                usage_output += n;
            }
            ("gen_ai_server_request_duration_seconds", DebugValue::Histogram(v)) => {
                durations += v.len();
                assert!(v.iter().all(|s| s.into_inner() >= 0.0));
            }
            _ => {}
        }
    }
    assert_eq!(requests, 200);
    assert_eq!(input, want_input);
    assert_eq!(output, want_output);
    assert_eq!(durations, 200);
    assert_eq!(usage_input, want_input);
    assert_eq!(usage_output, want_output);
}
