//! Cost through the layer: every fixture of the corpus, with the dated example price table,
//! gives the cost `llm-usage-cost` computes from the fixture's expected figures, and the
//! cost and lookup-miss counters add up. No network.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::{irregular_chunks, Events, Fixture, FixtureExt, FramesBody};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use llm_usage_core::UsageRecord;
use llm_usage_cost::{Amount, PriceTable, Pricing};
use llm_usage_testkit::prom_sum;
use llm_usage_tower::{LlmUsageLayer, MetricsConfig, RequestBody};
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::{Layer, ServiceExt};

fn example_table() -> PriceTable {
    let path = llm_usage_testkit::example_prices();
    PriceTable::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The record a fixture expects, from its `case.json` alone (not from the layer).
fn expected_record(fx: &Fixture) -> UsageRecord {
    llm_usage_testkit::record_of(&fx.expect())
}

async fn through_layer(fx: &Fixture, layer: &LlmUsageLayer) {
    let status = fx.status();
    let headers = fx.response_headers();
    let chunks = irregular_chunks(&fx.response, 11, 61);
    let svc = tower::service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        let headers = headers.clone();
        let frames: Vec<_> = chunks.iter().cloned().map(|c| Ok(Frame::data(c))).collect();
        async move {
            let _ = req.into_body().collect().await.expect("request body");
            let mut res = Response::new(FramesBody::new(frames));
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            *res.headers_mut() = headers;
            Ok::<_, Infallible>(res)
        }
    });
    let req = common::fixture_request(fx);
    let res = layer.clone().layer(svc).oneshot(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], &fx.response[..], "{}: body changed", fx.name);
}

#[tokio::test]
async fn every_fixture_is_priced_as_llm_usage_cost_prices_its_figures() {
    let table = example_table();
    let names = llm_usage_testkit::fixture_names();
    assert!(names.len() >= 40, "fixtures missing: {names:?}");
    for profile in ["otel", "asm"] {
        let metrics = match profile {
            "otel" => MetricsConfig::otel(),
            _ => MetricsConfig::asm("w", "ns"),
        };
        let (cost_name, miss_name) = match profile {
            "otel" => (
                "llm_usage_cost_micros_total",
                "llm_usage_price_lookup_misses_total",
            ),
            _ => (
                "asm_llm_proxy_cost_micros",
                "asm_llm_proxy_price_lookup_misses",
            ),
        };
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let events = Events::default();
        let layer = LlmUsageLayer::new()
            .metrics(metrics)
            .recorder(recorder)
            .prices(example_table())
            .on_record(events.callback());
        let (mut priced, mut misses, mut micros) = (0u64, 0u64, 0u64);
        let mut total = Amount::ZERO;
        for name in &names {
            let fx = Fixture::load(name);
            through_layer(&fx, &layer).await;
            let ev = events.all().pop().unwrap();
            let want = table.price(&expected_record(&fx));
            assert_eq!(ev.pricing.as_ref(), Some(&want), "{name}");
            assert_eq!(ev.currency.as_deref(), Some("USD"), "{name}");
            assert_eq!(ev.cost(), want.amount(), "{name}");
            if let Some(a) = want.amount() {
                priced += 1;
                micros += u64::try_from(a.micros_floor()).unwrap();
                total = total.checked_add(a).unwrap();
            } else if want.is_miss() {
                misses += 1;
            }
        }
        assert_eq!(events.len(), names.len());
        // The example table prices the OpenAI, Anthropic and Gemini fixtures; the others
        // (Bedrock ids, DashScope, Ollama, Cohere, Mistral, …) are misses.
        assert!(priced >= 15, "{priced} priced");
        assert!(misses >= 10, "{misses} misses");
        assert!(total > Amount::ZERO);
        let text = handle.render();
        assert_eq!(
            prom_sum(&text, cost_name, &[]),
            Some(micros as f64),
            "{profile}\n{text}"
        );
        assert_eq!(
            prom_sum(&text, miss_name, &[]),
            Some(misses as f64),
            "{profile}"
        );
    }
}

/// A priced exchange by hand (13-anthropic-messages-cache: 12 uncached × 3 + 3480 cache
/// reads × 0.3 + 156 cache writes × 3.75 + 210 × 15 per million = 0.004815 USD), and an
/// unpriced model: a miss, no cost, no cost counted.
#[tokio::test]
async fn priced_and_unpriced_exchanges() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .recorder(recorder)
        .prices(example_table())
        .on_record(events.callback());
    through_layer(&Fixture::load("13-anthropic-messages-cache"), &layer).await;
    let ev = events.all().pop().unwrap();
    assert_eq!(ev.cost().unwrap().to_string(), "0.004815");
    assert!(matches!(&ev.pricing, Some(Pricing::Cost { key, .. }) if key == "claude-3-7-sonnet*"));
    let text = handle.render();
    assert_eq!(
        prom_sum(
            &text,
            "llm_usage_cost_micros_total",
            &[("gen_ai_request_model", "claude-3-7-sonnet-20250219")]
        ),
        Some(4815.0)
    );
    assert_eq!(
        prom_sum(&text, "llm_usage_price_lookup_misses_total", &[]),
        None
    );

    through_layer(&Fixture::load("32-cohere-chat"), &layer).await;
    let ev = events.all().pop().unwrap();
    assert_eq!(ev.pricing, Some(Pricing::Miss));
    assert_eq!(ev.cost(), None);
    let text = handle.render();
    assert_eq!(
        prom_sum(&text, "llm_usage_price_lookup_misses_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        prom_sum(&text, "llm_usage_cost_micros_total", &[]),
        Some(4815.0),
        "an unpriced exchange adds no cost"
    );

    // Without a table: no pricing at all, and no cost metrics.
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .on_record(events.callback());
    through_layer(&Fixture::load("13-anthropic-messages-cache"), &layer).await;
    let ev = events.all().pop().unwrap();
    assert_eq!((ev.pricing, ev.currency), (None, None));
}
