//! Cost through the middleware: every fixture, with the dated example price table, gives
//! the cost `llm-usage-cost` computes from the fixture's expected figures, and the cost and
//! lookup-miss counters add up. (Its own test binary: it installs the process's global
//! metrics recorder.)

mod common;

use common::{client, request, Events, Fixture, Provider};
use llm_usage_cost::{Amount, PriceTable};
use llm_usage_reqwest::{LlmUsageMiddleware, UsageRecord};
use metrics_util::debugging::DebugValue;

fn example_table() -> PriceTable {
    let path = llm_usage_testkit::example_prices();
    PriceTable::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The record a fixture expects, from its `case.json` alone.
fn expected_record(fx: &Fixture) -> UsageRecord {
    llm_usage_testkit::record_of(&common::expected(fx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_priced_and_counted() {
    let snapshotter = common::install_debugging_recorder();
    let table = example_table();
    let provider = Provider::start().await;
    let events = Events::default();
    let c = client(events.middleware(LlmUsageMiddleware::new().prices(example_table())));
    let (mut priced, mut misses, mut micros) = (0u64, 0u64, 0u64);
    let names = llm_usage_testkit::fixture_names();
    for name in &names {
        let fx = Fixture::load(name);
        let res = request(&c, &provider, &fx).send().await.expect("send");
        let body = res.bytes().await.expect("body");
        assert_eq!(&body[..], &fx.response[..], "{name}: body changed");
        let ev = events.all().pop().unwrap();
        let want = table.price(&expected_record(&fx));
        assert_eq!(ev.pricing.as_ref(), Some(&want), "{name}");
        assert_eq!(ev.currency.as_deref(), Some("USD"));
        assert_eq!(ev.cost(), want.amount(), "{name}");
        match want.amount() {
            Some(a) => {
                priced += 1;
                micros += u64::try_from(a.micros_floor()).unwrap();
            }
            None if want.is_miss() => misses += 1,
            None => {}
        }
    }
    assert_eq!(events.all().len(), names.len());
    assert!(
        priced >= 15 && misses >= 10,
        "{priced} priced, {misses} misses"
    );
    let by_hand = events
        .all()
        .into_iter()
        .find(|e| e.url.path() == "/v1/messages" && e.record.cached_input_tokens == Some(3480))
        .expect("13-anthropic-messages-cache");
    assert_eq!(
        by_hand.cost(),
        Some(Amount::from_attos(4_815_000_000_000_000))
    );

    let (mut cost_counter, mut miss_counter) = (0, 0);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        match (key.key().name(), value) {
            ("llm_usage_cost_micros_total", DebugValue::Counter(n)) => cost_counter += n,
            ("llm_usage_price_lookup_misses_total", DebugValue::Counter(n)) => miss_counter += n,
            _ => {}
        }
    }
    assert_eq!(cost_counter, micros);
    assert_eq!(miss_counter, misses);
}
