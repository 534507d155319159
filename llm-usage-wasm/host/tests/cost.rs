//! Cost in the real release filter (issue 17): with the project's example price table
//! inline as `prices`, every fixture whose model is priced gets filter state
//! `request_cost` / `cost_currency` equal to what `llm-usage-cost` computes in this test
//! from the fixture's expected figures, the cost counter adds the micro-units, and
//! unpriced models are counted as price lookup misses, in both profiles.

mod common;

use common::{asm_stats, fixtures, sleep_vm};
use llm_usage_cost::{Amount, PriceTable};
use llm_usage_wasm_host::replay::{self, Delivery};

fn example_table() -> String {
    std::fs::read_to_string(common::workspace().join("prices/example-2026-12.json")).unwrap()
}

#[test]
fn priced_fixtures_cost_what_llm_usage_cost_computes() {
    let text = example_table();
    let table = PriceTable::from_json(&text).unwrap();
    for profile in ["asm", "otel"] {
        let config = format!(r#"{{"profile": "{profile}", "prices": {text}}}"#);
        let mut vm = sleep_vm(&config);
        let mut priced = 0;
        let mut micros: u128 = 0;
        let mut misses = 0;
        let mut dirs: Vec<_> = std::fs::read_dir(fixtures())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("case.json").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let mut ex = replay::load_case(&dir, "api.example.com").unwrap();
            common::expectation(&mut ex);
            let expect = ex.expect.clone().unwrap();
            let out = replay::run(&mut vm, &ex, &Delivery::default()).unwrap();
            assert!(out.forwarded_unchanged, "{}", ex.name);
            let state = |k: &str| {
                out.filter_state
                    .get(&format!("wasm.asm.llmproxy.{k}"))
                    .cloned()
            };
            let record = llm_usage_testkit::record_of(&expect);
            let pricing = table.price(&record);
            let want: Option<Amount> = pricing.amount();
            assert_eq!(
                state("request_cost"),
                want.map(|a| a.to_string()),
                "{}: {pricing:?}",
                ex.name
            );
            if let Some(a) = want {
                priced += 1;
                micros += a.micros_floor();
                assert_eq!(state("cost_currency").as_deref(), Some("USD"));
            } else {
                assert_eq!(state("cost_currency"), None, "{}", ex.name);
            }
            // The filter reports LLM traffic only: a fixture without a model or a count
            // is not priced, and not a miss either.
            let reported = state("model").is_some() || state("request_prompt_tokens").is_some();
            if pricing.is_miss() && reported {
                misses += 1;
            }
        }
        assert!(priced >= 15, "{profile}: only {priced} fixtures priced");
        assert!(
            misses >= 1,
            "{profile}: no unpriced model among the fixtures"
        );
        let prom = vm.prometheus(&asm_stats());
        let sum = |name: &str| -> u128 {
            prom.lines()
                .filter(|l| l.starts_with(name) && !l.starts_with('#'))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u128>().unwrap())
                .sum()
        };
        let (cost, miss) = match profile {
            "asm" => (
                "asm_llm_proxy_cost_micros",
                "asm_llm_proxy_price_lookup_misses",
            ),
            _ => ("llm_usage_cost_micros", "llm_usage_price_lookup_misses"),
        };
        assert_eq!(sum(cost), micros, "{profile}: {prom}");
        assert_eq!(sum(miss), misses as u128, "{profile}");
        if profile == "asm" {
            assert!(
                prom.contains("asm_llm_proxy_cost_micros{llmproxy_source_workload=\"sleep\""),
                "the usual dimensions: {prom}"
            );
        }
    }
}

#[test]
fn without_prices_there_is_no_cost_and_no_miss() {
    let mut vm = sleep_vm("");
    let ex =
        replay::load_case(&fixtures().join("01-openai-chat-basic"), "api.example.com").unwrap();
    let out = replay::run(&mut vm, &ex, &Delivery::default()).unwrap();
    assert!(!out
        .filter_state
        .keys()
        .any(|k| k.ends_with("request_cost") || k.ends_with("cost_currency")));
    let prom = vm.prometheus(&asm_stats());
    assert!(!prom.contains("cost_micros") && !prom.contains("price_lookup"));
}

#[test]
fn a_bad_price_table_refuses_the_configuration_with_its_position() {
    let config = "{\n  \"prices\": {\"currency\": \"USD\", \"per_tokens\": 1000000,\n    \"models\": {\"gpt-4o*\": {\"input\": 2.5, \"cache_input\": 1.25}}}\n}";
    let err = common::host()
        .start(llm_usage_wasm_host::HostOptions::with_config(config))
        .err()
        .expect("refused");
    let text = format!("{err:?}");
    assert!(
        text.contains("prices (value at line 2 column 13)")
            && text.contains("unknown field `cache_input`"),
        "{text}"
    );
}
