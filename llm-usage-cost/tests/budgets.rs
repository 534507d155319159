//! Token budgets: limits, keys, windows, the local reply, failing open, and the sharded
//! in-memory store under concurrency.

use llm_usage_core::{Provider, UsageRecord};
use llm_usage_cost::{
    Amount, BudgetStore, Budgets, CountKind, Decision, KeyFacts, KeySpec, MemoryStore, StoreError,
};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

const PER_KEY: &str = r#"[{"name": "per-key", "key": "header:x-api-key", "tokens": 100,
    "window_s": 60, "count": "total"}]"#;

fn rec(input: Option<u64>, output: Option<u64>, total: Option<u64>) -> UsageRecord {
    let mut r = UsageRecord::default();
    r.input_tokens = input;
    r.output_tokens = output;
    r.total_tokens = total;
    r
}

fn facts<'a>(headers: &'a [(&'a str, &'a [u8])]) -> KeyFacts<'a> {
    KeyFacts {
        headers,
        ..Default::default()
    }
}

#[test]
fn limits_read_and_bad_ones_are_refused() {
    let b = Budgets::from_json(
        r#"[{"name":"a","key":"header:X-Api-Key","tokens":5,"window_s":60},
            {"name":"b","key":"model","tokens":5,"window_s":1,"count":"cost_micros"},
            {"name":"c","key":"all","tokens":1,"window_s":2678400,"count":"output"}]"#,
    )
    .unwrap();
    assert_eq!(b.limits()[0].key, KeySpec::Header("x-api-key".into()));
    assert_eq!(b.limits()[0].count, CountKind::Total);
    assert_eq!(b.limits()[1].count, CountKind::CostMicros);
    let err = |s: &str| Budgets::from_json(s).unwrap_err().to_string();
    let one = |fields: &str| format!("[{{{fields}}}]");
    assert!(err(&one(r#""name":"a b","key":"all","tokens":1,"window_s":1"#)).contains("name"));
    assert!(err(&one(r#""name":"a","key":"cookie","tokens":1,"window_s":1"#)).contains("key"));
    assert!(err(&one(
        r#""name":"a","key":"header:","tokens":1,"window_s":1"#
    ))
    .contains("key"));
    assert!(err(&one(r#""name":"a","key":"all","tokens":0,"window_s":1"#)).contains("tokens"));
    assert!(err(&one(r#""name":"a","key":"all","tokens":1,"window_s":0"#)).contains("window_s"));
    assert!(err(&one(
        r#""name":"a","key":"all","tokens":1,"window_s":1,"count":"bytes" "#
    ))
    .contains("bytes"));
    assert!(err(&one(
        r#""name":"a","key":"all","tokens":1,"window_s":1,"extra":1"#
    ))
    .contains("extra"));
    assert!(err(r#"[{"name":"a","key":"all","tokens":1,"window_s":1},{"name":"a","key":"all","tokens":1,"window_s":1}]"#).contains("twice"));
}

#[test]
fn answers_429_exactly_once_the_budget_is_spent_and_charges_every_exchange() {
    let b = Budgets::from_json(PER_KEY).unwrap();
    let store = MemoryStore::new();
    let h: &[(&str, &[u8])] = &[("X-API-Key", b"sk-live-123")];
    let now = 1_800_000_000; // window 30_000_000, 0 s in
    let mut allowed = 0;
    // Each exchange uses 30 tokens: 4 pass (0, 30, 60, 90 used before), the 5th is denied.
    for _ in 0..6 {
        match b.check(&store, &facts(h), None, now) {
            Decision::Allow {
                buckets,
                store_errors,
            } => {
                assert_eq!(store_errors, 0);
                allowed += 1;
                assert_eq!(
                    b.charge(&store, &buckets, &rec(Some(10), Some(20), None), None, now),
                    0
                );
            }
            Decision::Deny { limit, reply } => {
                assert_eq!(limit, 0);
                assert_eq!(reply.status, 429);
                let hv = |n: &str| {
                    reply
                        .headers
                        .iter()
                        .find(|(k, _)| *k == n)
                        .unwrap()
                        .1
                        .clone()
                };
                assert_eq!(hv("retry-after"), "60");
                assert_eq!(hv("x-ratelimit-limit-tokens"), "100");
                assert_eq!(hv("x-ratelimit-remaining-tokens"), "0");
                assert!(!reply.body.contains("sk-live-123"), "never the raw key");
            }
        }
    }
    assert_eq!(allowed, 4);
    // Another key has its own budget; a request without the header is not limited.
    let other: &[(&str, &[u8])] = &[("x-api-key", b"sk-live-456")];
    assert!(matches!(
        b.check(&store, &facts(other), None, now),
        Decision::Allow { .. }
    ));
    match b.check(&store, &facts(&[]), None, now) {
        Decision::Allow { buckets, .. } => assert!(buckets.is_empty()),
        d => panic!("{d:?}"),
    }
    // The window rolls over: the next window starts empty; retry-after counts down.
    assert!(matches!(
        b.check(&store, &facts(h), None, now + 59),
        Decision::Deny { .. }
    ));
    assert_eq!(b.limits()[0].retry_after(now + 59), 1);
    assert!(matches!(
        b.check(&store, &facts(h), None, now + 60),
        Decision::Allow { .. }
    ));
}

#[test]
fn replies_are_shaped_like_the_provider() {
    let b = Budgets::from_json(PER_KEY).unwrap();
    let body = |p: Option<Provider>| -> Value {
        serde_json::from_str(&b.reply(0, 150, p, 30).body).unwrap()
    };
    let openai = body(None);
    assert_eq!(openai["error"]["code"], "rate_limit_exceeded");
    assert_eq!(openai["error"]["type"], "tokens");
    assert_eq!(body(Some(Provider::OpenAi)), openai);
    let anthropic = body(Some(Provider::Anthropic));
    assert_eq!(anthropic["type"], "error");
    assert_eq!(anthropic["error"]["type"], "rate_limit_error");
    assert_eq!(
        body(Some(Provider::Gemini))["error"]["status"],
        "RESOURCE_EXHAUSTED"
    );
    let r = b.reply(0, 150, None, 30);
    assert!(r.headers.contains(&("retry-after", "30".into())));
    assert!(r
        .headers
        .contains(&("x-ratelimit-remaining-tokens", "0".into())));
    assert!(r
        .headers
        .contains(&("content-type", "application/json".into())));
}

#[test]
fn cut_streams_charge_what_was_seen_and_unknown_charges_nothing() {
    let b = Budgets::from_json(
        r#"[{"name":"t","key":"all","tokens":1000,"window_s":60},
            {"name":"i","key":"all","tokens":1000,"window_s":60,"count":"input"},
            {"name":"o","key":"all","tokens":1000,"window_s":60,"count":"output"},
            {"name":"c","key":"all","tokens":1000,"window_s":60,"count":"cost_micros"}]"#,
    )
    .unwrap();
    let l = b.limits();
    // A stream cut before its usage: input known, output estimated from the text seen.
    let mut cut = UsageRecord::default();
    cut.input_tokens = Some(25);
    cut.output_tokens = Some(7);
    cut.estimated = true;
    cut.complete = false;
    assert_eq!(l[0].amount(&cut, None), 32);
    assert_eq!(l[1].amount(&cut, None), 25);
    assert_eq!(l[2].amount(&cut, None), 7);
    assert_eq!(
        l[0].amount(&rec(Some(5), Some(5), Some(12)), None),
        12,
        "the provider's total"
    );
    assert_eq!(l[0].amount(&rec(None, None, None), None), 0);
    // Cost: rounded up to whole micro-units; no cost charges nothing.
    assert_eq!(l[3].amount(&cut, Some(Amount::from_attos(1))), 1);
    assert_eq!(
        l[3].amount(&cut, Some(Amount::from_attos(2_000_000_000_000))),
        2
    );
    assert_eq!(l[3].amount(&cut, None), 0);
    // Charged through the store.
    let store = MemoryStore::new();
    let buckets = b.buckets(&KeyFacts::default());
    assert_eq!(buckets.len(), 4);
    // At 100 s: window 1 of 60 s, 20 s to its end, kept one more window.
    let charges = b.charges(&buckets, &cut, None, 100);
    let amounts: Vec<(u64, u64, u64)> = charges
        .iter()
        .map(|c| (c.window, c.amount, c.ttl_s))
        .collect();
    assert_eq!(
        amounts,
        [(1, 32, 80), (1, 25, 80), (1, 7, 80)],
        "nothing charged is no charge"
    );
    b.charge(&store, &buckets, &cut, None, 100);
    assert_eq!(store.used(&buckets[0].name, 1).unwrap(), 32);
    assert_eq!(store.used(&buckets[3].name, 1).unwrap(), 0);
}

/// A store that refuses everything (the host refuses shared data, Redis is down).
struct Broken(AtomicU64);

impl BudgetStore for Broken {
    fn used(&self, _: &str, _: u64) -> Result<u64, StoreError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Err(StoreError("refused".into()))
    }
    fn charge(&self, _: &str, _: u64, _: u64, _: u64) -> Result<u64, StoreError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Err(StoreError("refused".into()))
    }
}

#[test]
fn a_failing_store_fails_open() {
    let b = Budgets::from_json(PER_KEY).unwrap();
    let store = Broken(AtomicU64::new(0));
    let h: &[(&str, &[u8])] = &[("x-api-key", b"k")];
    for _ in 0..3 {
        match b.check(&store, &facts(h), None, 0) {
            Decision::Allow {
                buckets,
                store_errors,
            } => {
                assert_eq!(store_errors, 1);
                assert_eq!(
                    b.charge(&store, &buckets, &rec(Some(500), Some(500), None), None, 0),
                    1
                );
            }
            d => panic!("must fail open: {d:?}"),
        }
    }
    assert_eq!(store.0.load(Ordering::Relaxed), 6);
}

#[test]
fn hostile_keys_become_hashes() {
    let b = Budgets::from_json(PER_KEY).unwrap();
    let huge = vec![b'a'; 1 << 20];
    let weird: &[u8] = b"sk|x\nper-key|0000000000000000\r\n";
    for key in [huge.as_slice(), weird, b"", &[0xff, 0x00, 0x7c][..]] {
        let h: &[(&str, &[u8])] = &[("x-api-key", key)];
        let buckets = b.buckets(&facts(h));
        assert_eq!(buckets.len(), 1);
        let name = &buckets[0].name;
        assert_eq!(name.len(), "per-key|".len() + 16, "{name}");
        let hex = name.strip_prefix("per-key|").unwrap();
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{name}");
    }
    // Distinct keys, distinct buckets; the same key, the same bucket.
    let a = b.buckets(&facts(&[("x-api-key", b"k1")]));
    let c = b.buckets(&facts(&[("x-api-key", b"k2")]));
    assert_ne!(a, c);
    assert_eq!(a, b.buckets(&facts(&[("X-API-KEY", b"k1")])));
}

#[test]
fn memory_store_loses_no_update_under_200_concurrent_charges() {
    let store = MemoryStore::new();
    std::thread::scope(|s| {
        for t in 0..200u64 {
            let store = &store;
            s.spawn(move || {
                for i in 0..50u64 {
                    store.charge(&format!("b|{}", i % 7), 9, t + 1, 60).unwrap();
                }
            });
        }
    });
    let sum: u64 = (0..7)
        .map(|i| store.used(&format!("b|{i}"), 9).unwrap())
        .sum();
    // Σ over 200 threads of 50 × (t + 1) = 50 × 20100.
    assert_eq!(sum, 50 * 20_100);
    // A new window replaces the old counter; a charge to a past window counts nowhere.
    assert_eq!(store.charge("b|0", 10, 5, 60).unwrap(), 5);
    assert_eq!(store.used("b|0", 9).unwrap(), 0);
    assert_eq!(store.charge("b|0", 9, 5, 60).unwrap(), 0);
    assert_eq!(store.used("b|0", 10).unwrap(), 5);
}

#[test]
fn memory_store_stays_bounded_under_invented_keys() {
    let store = MemoryStore::new();
    for i in 0..(MemoryStore::MAX_PER_SHARD as u64 * 16 * 3) {
        store
            .charge(&format!("k|{i:016x}"), i / 10_000, 1, 60)
            .unwrap();
    }
    assert!(
        store.len() <= MemoryStore::MAX_PER_SHARD * 16,
        "{}",
        store.len()
    );
    assert!(!store.is_empty());
}
