//! One `tracing` span per exchange with the OpenTelemetry GenAI attributes, seen by a
//! `tracing-subscriber` layer that captures every field recorded on it.

mod common;

use bytes::Bytes;
use common::{Fixture, FixtureExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use llm_usage_testkit::Capture;
use llm_usage_tower::{LlmUsageLayer, RequestBody};
use tower::{Layer, ServiceExt};
use tracing_subscriber::layer::SubscriberExt;

async fn run(fx: &Fixture) {
    let status = fx.status();
    let headers = fx.response_headers();
    let body = fx.response.clone();
    let svc = tower::service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        let headers = headers.clone();
        let body = body.clone();
        async move {
            let _ = req.into_body().collect().await.expect("request body");
            let mut res = Response::new(Full::new(Bytes::from(body)));
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            *res.headers_mut() = headers;
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    let req = common::fixture_request(fx);
    let res = LlmUsageLayer::new()
        .without_metrics()
        .layer(svc)
        .oneshot(req)
        .await
        .unwrap();
    let got = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&got[..], &fx.response[..]);
}

#[tokio::test]
async fn each_exchange_closes_one_span_with_the_gen_ai_attributes() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    for name in [
        "14-anthropic-stream-tool-use-cache",
        "04-openai-chat-reasoning-cached",
    ] {
        run(&Fixture::load(name)).await;
    }
    let closed = capture.closed();
    let spans: Vec<_> = closed
        .iter()
        .filter(|(n, _)| n == "gen_ai.exchange")
        .collect();
    assert_eq!(spans.len(), 2, "{closed:?}");

    let fx = Fixture::load("14-anthropic-stream-tool-use-cache");
    let (_, f) = spans[0];
    let e = &fx.case["expect"];
    assert_eq!(f["gen_ai.provider.name"], "anthropic");
    assert_eq!(f["gen_ai.operation.name"], "chat");
    // tracing-opentelemetry's span name and kind.
    assert_eq!(f["otel.name"], "chat");
    assert_eq!(f["otel.kind"], "client");
    assert_eq!(f["gen_ai.response.model"], e["model"].as_str().unwrap());
    assert_eq!(f["gen_ai.request.stream"], "true");
    for (attr, field) in [
        ("gen_ai.usage.input_tokens", "input_tokens"),
        ("gen_ai.usage.output_tokens", "output_tokens"),
        (
            "gen_ai.usage.cache_read.input_tokens",
            "cached_input_tokens",
        ),
        (
            "gen_ai.usage.cache_write.input_tokens",
            "cache_creation_input_tokens",
        ),
    ] {
        assert_eq!(f[attr], e[field].as_u64().unwrap().to_string(), "{attr}");
    }
    assert!(
        !f.contains_key("gen_ai.usage.reasoning.output_tokens"),
        "unknown, never 0"
    );
    assert!(
        !f.contains_key("gen_ai.usage.cache_creation.input_tokens"),
        "the old name"
    );
    assert_eq!(f["complete"], "true");
    assert_eq!(f["estimated"], "false");

    let fx = Fixture::load("04-openai-chat-reasoning-cached");
    let (_, f) = spans[1];
    let e = &fx.case["expect"];
    assert_eq!(f["gen_ai.provider.name"], "openai");
    assert_eq!(f["gen_ai.request.stream"], "false");
    assert_eq!(
        f["gen_ai.usage.reasoning.output_tokens"],
        e["reasoning_tokens"].as_u64().unwrap().to_string()
    );
    assert!(!f.contains_key("gen_ai.usage.cache_write.input_tokens"));
}
