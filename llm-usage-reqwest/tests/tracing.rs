//! One `tracing` span per call with the OpenTelemetry GenAI attributes, seen by a
//! `tracing-subscriber` layer that captures every field recorded on it.

mod common;

use common::{client, request, Fixture, Provider};
use llm_usage_reqwest::LlmUsageMiddleware;
use llm_usage_testkit::Capture;
use tracing_subscriber::layer::SubscriberExt;

/// A streamed OpenAI call and a cut Anthropic one: one closed span each, the figures the
/// traffic carried and nothing else.
#[tokio::test]
async fn each_call_closes_one_span_with_the_gen_ai_attributes() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let provider = Provider::start().await;
    let c = client(LlmUsageMiddleware::new().without_metrics());

    let fx = Fixture::load("02-openai-chat-stream-usage");
    let body = request(&c, &provider, &fx)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], &fx.response[..]);
    let cut = Fixture::load("12-anthropic-messages-stream");
    let res = request(&c, &provider, &cut)
        .header("x-cut", (cut.response.len() / 2).to_string())
        .send()
        .await
        .unwrap();
    assert!(res.bytes().await.is_err());

    let closed = capture.closed();
    let spans: Vec<_> = closed
        .iter()
        .filter(|(n, _)| n == "gen_ai.exchange")
        .collect();
    assert_eq!(spans.len(), 2, "{closed:?}");
    let (_, f) = spans[0];
    let e = &fx.case["expect"];
    assert_eq!(f["gen_ai.provider.name"], "openai");
    assert_eq!(f["gen_ai.request.model"], "gpt-4o");
    assert_eq!(f["gen_ai.response.model"], e["model"].as_str().unwrap());
    assert_eq!(f["gen_ai.request.stream"], "true");
    assert_eq!(
        f["gen_ai.usage.input_tokens"],
        e["input_tokens"].to_string()
    );
    assert_eq!(
        f["gen_ai.usage.output_tokens"],
        e["output_tokens"].to_string()
    );
    assert_eq!(f["complete"], "true");
    let (_, f) = spans[1];
    assert_eq!(f["gen_ai.provider.name"], "anthropic");
    assert_eq!(f["gen_ai.usage.input_tokens"], "25");
    assert_eq!(f["complete"], "false");
}
