//! One name, one unit, and the histogram without subsets, through a real Prometheus
//! exporter: a middleware in milliseconds records under the `…_milliseconds` names (the
//! filter's) with the buckets `install_buckets` set, the token histogram carries `input`
//! and `output` only, and each subset has its `gen_ai.client.inference.usage` counter.
//! (Its own test binary: it installs the process's global metrics recorder.)

mod common;

use common::{client, request, Fixture, Provider};
use llm_usage_reqwest::prometheus::PrometheusBuilder;
use llm_usage_reqwest::{LlmUsageMiddleware, TimeUnit};
use llm_usage_testkit::prom_sum;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milliseconds_names_buckets_and_subset_counters() {
    let middleware = LlmUsageMiddleware::new().time_unit(TimeUnit::Milliseconds);
    let recorder = middleware
        .install_buckets(PrometheusBuilder::new())
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    let provider = Provider::start().await;
    let c = client(middleware);
    // Cache reads and reasoning; cache writes; audio parts.
    let names = [
        "04-openai-chat-reasoning-cached",
        "60-anthropic-web-fetch-cache-split-json",
        "58-openai-chat-audio-json",
    ];
    for name in names {
        let fx = Fixture::load(name);
        let res = request(&c, &provider, &fx).send().await.expect("send");
        res.bytes().await.expect("body");
    }
    let text = handle.render();
    let want = |field: &str| -> f64 {
        names
            .iter()
            .filter_map(|n| common::expected(&Fixture::load(n))[field].as_u64())
            .sum::<u64>() as f64
    };

    // Durations: milliseconds, under the milliseconds names, in millisecond buckets.
    assert_eq!(
        prom_sum(
            &text,
            "gen_ai_server_request_duration_milliseconds_count",
            &[]
        ),
        Some(3.0),
        "{text}"
    );
    assert!(text.contains("gen_ai_server_request_duration_milliseconds_bucket{"));
    assert!(text.contains("le=\"81920\""), "{text}");
    assert!(!text.contains("_seconds"), "{text}");

    // The histogram: `input` and `output` only.
    let types: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("gen_ai_client_token_usage_sum{"))
        .filter_map(|l| l.split("gen_ai_token_type=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(types, ["input", "output"].into(), "{text}");
    for (ty, field) in [("input", "input_tokens"), ("output", "output_tokens")] {
        assert_eq!(
            prom_sum(
                &text,
                "gen_ai_client_token_usage_sum",
                &[("gen_ai_token_type", ty)]
            ),
            Some(want(field))
        );
    }

    // Each figure its counter, with the modality.
    let modality = [("gen_ai_token_modality", "unknown")];
    for (counter, field) in [
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cache_read_input_tokens", "cached_input_tokens"),
        ("cache_write_input_tokens", "cache_creation_input_tokens"),
        ("reasoning_output_tokens", "reasoning_tokens"),
    ] {
        let name = format!("gen_ai_client_inference_usage_{counter}_total");
        assert_eq!(
            prom_sum(&text, &name, &modality),
            Some(want(field)),
            "{name}\n{text}"
        );
        assert!(want(field) > 0.0, "{field}: the fixtures carry it");
    }
}
