//! The parts of input and output (audio, image, the cache writes' 5-minute / 1-hour
//! lifetimes) reach the adapter's metrics in both profiles, from the shared series: a
//! token type of their own on `llm_usage_tokens_total` (`otel`), their own counters
//! (`asm`); each sums to the fixtures' figures, and none is on the histogram or the usage
//! counters. (Its own test binary: it installs the process's global metrics recorder.)

mod common;

use common::{client, request, Events, Fixture, Provider};
use llm_usage_reqwest::LlmUsageMiddleware;
use llm_usage_testkit::{PARTS, PART_FIXTURES};
use metrics_util::debugging::DebugValue;

/// The sum of `field` over the fixtures' expected records.
fn want(field: &str) -> u64 {
    PART_FIXTURES
        .iter()
        .filter_map(|n| common::expected(&Fixture::load(n))[field].as_u64())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_of_input_and_output_are_counted_in_both_profiles() {
    let snapshotter = common::install_debugging_recorder();
    let provider = Provider::start().await;
    // The two profiles' names differ, so one recorder tells them apart.
    for m in [
        LlmUsageMiddleware::new(),
        LlmUsageMiddleware::new().asm_metrics("sleep", "default"),
    ] {
        let events = Events::default();
        let c = client(events.middleware(m));
        for name in PART_FIXTURES {
            let fx = Fixture::load(name);
            let res = request(&c, &provider, &fx).send().await.expect("send");
            let body = res.bytes().await.expect("body");
            assert_eq!(&body[..], &fx.response[..], "{name}: body changed");
        }
        assert_eq!(events.all().len(), PART_FIXTURES.len());
    }

    let snapshot = snapshotter.snapshot().into_vec();
    let counted = |name: &str, type_label: Option<&str>| -> u64 {
        snapshot
            .iter()
            .filter(|(k, ..)| k.key().name() == name)
            .filter(|(k, ..)| {
                type_label.map_or(true, |t| {
                    k.key()
                        .labels()
                        .any(|l| l.key() == "gen_ai_token_type" && l.value() == t)
                })
            })
            .map(|(.., v)| match v {
                DebugValue::Counter(n) => *n,
                other => panic!("{name}: a counter, not {other:?}"),
            })
            .sum()
    };
    for (field, part, asm) in PARTS {
        let want = want(field);
        assert!(want > 0, "{field}: the fixtures carry it");
        assert_eq!(
            counted("llm_usage_tokens_total", Some(part)),
            want,
            "otel: {field}"
        );
        assert_eq!(counted(asm, None), want, "asm: {field}");
    }
    // The parents are still counted once, as types.
    assert_eq!(
        counted("llm_usage_tokens_total", Some("input")),
        want("input_tokens")
    );
    assert_eq!(
        counted("asm_llm_proxy_prompt_tokens", None),
        want("input_tokens")
    );
    // No part on the histogram or the usage counters (their series are sums of types).
    let parts: Vec<&str> = PARTS.iter().map(|p| p.1).collect();
    for (k, ..) in &snapshot {
        if k.key().name().starts_with("gen_ai_client") {
            assert!(
                !k.key().labels().any(|l| parts.contains(&l.value())),
                "{k:?}"
            );
        }
    }
}
