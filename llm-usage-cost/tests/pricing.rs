//! Every pricing rule of issue 17, a million-exchange sum, and a proptest against a naive
//! rational oracle (fractions of the decimal texts, the issue's formula written out flat).

use llm_usage_core::UsageRecord;
use llm_usage_cost::{Amount, Counts, Figure, PriceTable, Pricing};
use proptest::prelude::*;

const ISSUE: &str = r#"{"currency": "USD", "per_tokens": 1000000, "models": {"gpt-4o*": {"input": 2.5, "cached_input": 1.25,
  "output": 10.0}, "claude-sonnet-4-5*": {"input": 3.0, "cached_input": 0.3, "cache_creation_input": 3.75,
  "cache_creation_1h_input": 6.0, "output": 15.0}, "text-embedding-3-large": {"input": 0.13}}}"#;

fn table() -> PriceTable {
    PriceTable::from_json(ISSUE).unwrap()
}

fn rec(model: &str, input: Option<u64>, output: Option<u64>) -> UsageRecord {
    let mut r = UsageRecord::default();
    r.model = Some(model.into());
    r.input_tokens = input;
    r.output_tokens = output;
    r
}

fn cost(t: &PriceTable, r: &UsageRecord) -> String {
    match t.price(r) {
        Pricing::Cost { amount, .. } => amount.to_string(),
        other => panic!("no cost: {other:?}"),
    }
}

#[test]
fn uncached_rest_at_input_cached_at_cached_input_output_at_output() {
    let mut r = rec("gpt-4o-2024-08-06", Some(1_000), Some(500));
    r.cached_input_tokens = Some(600);
    r.reasoning_tokens = Some(400); // part of output: no price of its own
                                    // 400 × 2.5 + 600 × 1.25 + 500 × 10 = 1000 + 750 + 5000 = 6750 per million.
    assert_eq!(cost(&table(), &r), "0.00675");
}

#[test]
fn cache_creation_at_its_price_and_the_1h_part_only_when_both_figures_exist() {
    let t = table();
    let mut r = rec("claude-sonnet-4-5-20250929", Some(10_000), Some(100));
    r.cached_input_tokens = Some(8_000);
    r.cache_creation_input_tokens = Some(1_000);
    // 1000 × 3 + 8000 × 0.3 + 1000 × 3.75 + 100 × 15 = 3000 + 2400 + 3750 + 1500.
    assert_eq!(cost(&t, &r), "0.01065");
    // With the 1 h figure (not in the record yet): through Counts.
    let entry = t.lookup("claude-sonnet-4-5-20250929").unwrap();
    let mut c = Counts::from_record(&r);
    c.cache_creation_1h_input = Some(400);
    // 600 × 3.75 + 400 × 6 = 2250 + 2400 instead of 3750: 3000 + 2400 + 4650 + 1500.
    assert_eq!(
        t.price_counts(entry, &c).amount().unwrap().to_string(),
        "0.01155"
    );
    // The 1 h figure without its price stays in the cache writes.
    let gpt = t.lookup("gpt-4o").unwrap();
    let mut c = Counts::from_record(&rec("gpt-4o", Some(100), Some(0)));
    c.cache_creation_input = Some(50);
    c.cache_creation_1h_input = Some(50);
    assert_eq!(
        t.price_counts(gpt, &c).amount().unwrap().to_string(),
        "0.00025"
    );
}

#[test]
fn parts_without_their_own_price_bill_at_input() {
    let t = PriceTable::from_json(
        r#"{"currency":"EUR","per_tokens":1000,"models":{"m":{"input":1,"output":2}}}"#,
    )
    .unwrap();
    let mut r = rec("m", Some(100), Some(10));
    r.cached_input_tokens = Some(60);
    r.cache_creation_input_tokens = Some(30);
    assert_eq!(cost(&t, &r), "0.12");
    assert_eq!(t.currency(), "EUR");
}

#[test]
fn unknown_counts() {
    let t = table();
    // A needed count unknown: no cost, and which one.
    assert_eq!(
        t.price(&rec("gpt-4o", None, Some(5))),
        Pricing::Unknown(Figure::Input)
    );
    assert_eq!(
        t.price(&rec("gpt-4o", Some(5), None)),
        Pricing::Unknown(Figure::Output)
    );
    // An entry without `output` needs no output count (embeddings).
    assert_eq!(
        cost(&t, &rec("text-embedding-3-large", Some(1_000_000), None)),
        "0.13"
    );
    assert_eq!(
        cost(&t, &rec("text-embedding-3-large", Some(1_000_000), Some(7))),
        "0.13",
        "output is not billed without an output price"
    );
    // Unknown cached / cache-creation counts are 0: all input at `input`.
    let r = rec("claude-sonnet-4-5", Some(1_000), Some(0));
    assert_eq!(r.cached_input_tokens, None);
    assert_eq!(cost(&t, &r), "0.003");
    // Reported zeros are zeros: a real cost of 0.
    assert_eq!(cost(&t, &rec("gpt-4o", Some(0), Some(0))), "0");
}

#[test]
fn lookup_misses_are_no_cost() {
    let t = table();
    assert_eq!(
        t.price(&rec("gpt-3.5-turbo", Some(1), Some(1))),
        Pricing::Miss
    );
    assert!(t.price(&rec("gpt-3.5-turbo", Some(1), Some(1))).is_miss());
    let mut no_model = UsageRecord::default();
    no_model.input_tokens = Some(1);
    assert_eq!(t.price(&no_model), Pricing::NoModel);
    assert!(t.price(&no_model).is_miss());
    assert_eq!(t.price(&no_model).amount(), None);
}

#[test]
fn contradictory_records_are_no_cost() {
    let t = table();
    let mut r = rec("gpt-4o", Some(100), Some(1));
    r.cached_input_tokens = Some(101);
    assert_eq!(t.price(&r), Pricing::Inconsistent);
    let mut r = rec("claude-sonnet-4-5", Some(100), Some(1));
    r.cached_input_tokens = Some(60);
    r.cache_creation_input_tokens = Some(41);
    assert_eq!(t.price(&r), Pricing::Inconsistent);
}

#[test]
fn extremes_do_not_overflow_silently() {
    let t = PriceTable::from_json(
        r#"{"currency":"USD","per_tokens":1,"models":{"m":{"input":1000000,"output":1000000}}}"#,
    )
    .unwrap();
    // 2 × (2⁶⁴−1) tokens at 10⁶ per token: 3.7 × 10²⁵ units = 3.7 × 10⁴³ attos > u128.
    let r = rec("m", Some(u64::MAX), Some(u64::MAX));
    assert_eq!(t.price(&r), Pricing::Inconsistent);
    let t = table();
    let big = t.price(&rec("gpt-4o", Some(u64::MAX), Some(u64::MAX)));
    // (2⁶⁴−1) × 12.5 / 10⁶ exactly.
    assert_eq!(big.amount().unwrap().to_string(), "230584300921369.3951875");
}

#[test]
fn per_request_prices_are_per_unit() {
    let t = PriceTable::from_json(
        r#"{"currency":"USD","per_tokens":1000000,"models":{"m":{"input":1,"output":1,
            "web_search_request":0.01,"input_audio":40,"output_audio":80,"input_image":5,"output_image":30}}}"#,
    )
    .unwrap();
    let e = t.lookup("m").unwrap();
    let c = Counts {
        input: Some(1_000),
        input_audio: Some(100),
        input_image: Some(200),
        output: Some(1_000),
        output_audio: Some(500),
        output_image: Some(100),
        web_search_requests: Some(3),
        ..Default::default()
    };
    // in: 700×1 + 100×40 + 200×5 = 5700; out: 400×1 + 500×80 + 100×30 = 43400;
    // (5700 + 43400) / 10⁶ + 3 × 0.01.
    assert_eq!(
        t.price_counts(e, &c).amount().unwrap().to_string(),
        "0.0791"
    );
}

#[test]
fn a_million_exchanges_sum_without_drift() {
    let t = PriceTable::from_json(
        r#"{"currency":"USD","per_tokens":1000000,"models":{"gpt-4o-mini*":{"input":0.15,"cached_input":0.075,"output":0.6}}}"#,
    )
    .unwrap();
    let mut total = Amount::ZERO;
    let mut r = rec("gpt-4o-mini-2024-07-18", Some(0), Some(0));
    for i in 0..1_000_000u64 {
        r.input_tokens = Some(27 + i % 5);
        r.cached_input_tokens = Some(i % 3);
        r.output_tokens = Some(8 + i % 7);
        let a = t.price(&r).amount().unwrap();
        total = total.checked_add(a).unwrap();
    }
    // Closed form, by hand:
    // Σ (27 + i%5) over 10⁶ = 27e6 + 200,000 × 10 = 29,000,000;
    // Σ i%3 = 333,333 × 3 + (i = 999,999: 999,999 % 3 = 0) = 999,999;
    // Σ (8 + i%7) = 8e6 + 142,857 × 21 + (i = 999,999: 999,999 % 7 = 0) = 10,999,997.
    // cost = ((29,000,000 − 999,999) × 0.15 + 999,999 × 0.075 + 10,999,997 × 0.6) / 10⁶
    //      = (4,200,000.15 + 74,999.925 + 6,599,998.2) / 10⁶ = 10.874998275.
    assert_eq!(total.to_string(), "10.874998275");
    assert_eq!(total.micros_floor(), 10_874_998);
}

// ---- the oracle: fractions over the price texts, the formula written out flat ----

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A non-negative fraction, kept reduced.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Q(u128, u128);

impl Q {
    fn new(n: u128, d: u128) -> Q {
        let g = gcd(n, d).max(1);
        Q(n / g, d / g)
    }
    fn add(self, o: Q) -> Q {
        let g = gcd(self.1, o.1);
        Q::new(self.0 * (o.1 / g) + o.0 * (self.1 / g), self.1 / g * o.1)
    }
    fn mul_int(self, k: u64) -> Q {
        Q::new(self.0 * u128::from(k), self.1)
    }
}

/// "12.345" → 12345/1000.
fn q_of(text: &str) -> Q {
    let (i, f) = text.split_once('.').unwrap_or((text, ""));
    let n: u128 = format!("{i}{f}").parse().unwrap();
    Q::new(n, 10u128.pow(f.len() as u32))
}

fn price_text(cents_thousandths: u32) -> String {
    // Up to 6 decimals, e.g. 1234567 → "1.234567".
    format!(
        "{}.{:06}",
        cents_thousandths / 1_000_000,
        cents_thousandths % 1_000_000
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]
    #[test]
    fn matches_a_rational_oracle(
        pin in 0u32..100_000_000, pcached in proptest::option::of(0u32..100_000_000),
        pcreate in proptest::option::of(0u32..100_000_000), p1h in proptest::option::of(0u32..100_000_000),
        pout in proptest::option::of(0u32..100_000_000),
        per_exp in 0u32..=9,
        input in proptest::option::of(0u64..10_000_000), output in proptest::option::of(0u64..10_000_000),
        cached_frac in proptest::option::of(0u64..=100), create_frac in proptest::option::of(0u64..=100),
        h1_frac in proptest::option::of(0u64..=100),
    ) {
        let per = 10u64.pow(per_exp);
        let mut fields = vec![format!("\"input\":{}", price_text(pin))];
        for (name, p) in [("cached_input", pcached), ("cache_creation_input", pcreate),
                          ("cache_creation_1h_input", p1h), ("output", pout)] {
            if let Some(p) = p {
                fields.push(format!("\"{name}\":{}", price_text(p)));
            }
        }
        let json = format!(r#"{{"currency":"USD","per_tokens":{per},"models":{{"m*":{{{}}}}}}}"#, fields.join(","));
        let t = PriceTable::from_json(&json).unwrap();
        // Parts that fit in their whole (halves, so that cached + creation ≤ input).
        let cached = input.zip(cached_frac).map(|(i, f)| i / 2 * f / 100);
        let create = input.zip(create_frac).map(|(i, f)| i / 2 * f / 100);
        let h1 = create.zip(h1_frac).map(|(c, f)| c * f / 100);
        let counts = Counts {
            input, output, cached_input: cached, cache_creation_input: create,
            cache_creation_1h_input: h1, ..Default::default()
        };
        let got = t.price_counts(t.lookup("model").unwrap(), &counts);

        // The oracle.
        let p = |x: Option<u32>| x.map(|v| q_of(&price_text(v)));
        let (qin, qcached, qcreate, q1h, qout) = (p(Some(pin)).unwrap(), p(pcached), p(pcreate), p(p1h), p(pout));
        let want = match (input, output, qout) {
            (None, _, _) => None,
            (_, None, Some(_)) => None,
            (Some(input), output, qout) => {
                let cached = cached.unwrap_or(0);
                let create = create.unwrap_or(0);
                let (h1, h1_price) = match (h1, q1h) {
                    (Some(h), Some(q)) => (h, q),
                    _ => (0, Q(0, 1)),
                };
                let create_price = qcreate.unwrap_or(qin);
                let mut total = qin.mul_int(input - cached - create)
                    .add(qcached.unwrap_or(qin).mul_int(cached))
                    .add(create_price.mul_int(create - h1))
                    .add(h1_price.mul_int(h1));
                if let (Some(o), Some(q)) = (output, qout) {
                    total = total.add(q.mul_int(o));
                }
                Some(Q::new(total.0, total.1 * u128::from(per)))
            }
        };
        let got_q = got.amount().map(|a| Q::new(a.attos(), 1_000_000_000_000_000_000));
        prop_assert_eq!(got_q, want, "{:?}", got);
    }
}

/// A Gemini prompt is split two ways: by modality (`input_image_tokens`) and by cache
/// (`cached_input_tokens`), and the cached tokens may be the image's. A part the entry
/// does not price apart costs what the input does, so it is not set apart and the two
/// splits need not fit together; when both are priced apart and cannot be disjoint, the
/// cost is unknown rather than a guess.
#[test]
fn overlapping_splits_only_matter_when_both_are_priced() {
    let mut r = rec("gemini-2.5-flash", Some(530), Some(96));
    r.cached_input_tokens = Some(258);
    r.input_image_tokens = Some(516);
    r.input_audio_tokens = Some(0);
    let t = PriceTable::from_json(
        r#"{"currency":"USD","per_tokens":1000000,"models":{"gemini-2.5-flash*":{"input":0.3,"cached_input":0.03,"output":2.5}}}"#,
    )
    .unwrap();
    // 272 × 0.3 + 258 × 0.03 + 96 × 2.5 = 81.6 + 7.74 + 240 per million.
    assert_eq!(cost(&t, &r), "0.00032934");
    let t = PriceTable::from_json(
        r#"{"currency":"USD","per_tokens":1000000,"models":{"gemini-2.5-flash*":{"input":0.3,"cached_input":0.03,"input_image":0.5,"output":2.5}}}"#,
    )
    .unwrap();
    assert_eq!(t.price(&r), Pricing::Inconsistent);
}
