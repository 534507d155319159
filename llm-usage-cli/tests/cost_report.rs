//! `scan --prices` on every fixture against an independent computation of the cost, and
//! `report` over the fixtures and over HAR files.

mod common;

use common::{bin, fixtures};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example_prices() -> PathBuf {
    root().join("prices/example-2026-12.json")
}

/// `scan` of the fixture's exchange, response body included.
fn scan_args(dir: &Path) -> Vec<String> {
    let mut args = common::scan_args(dir);
    args.push(dir.join("response.bin").to_string_lossy().into_owned());
    args
}

// ---- the independent computation: fractions over the table's decimal texts ----

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A reduced fraction (numerator, denominator).
fn frac(n: u128, d: u128) -> (u128, u128) {
    let g = gcd(n, d).max(1);
    (n / g, d / g)
}

/// A decimal text ("2.5", "0.075", "10") as a fraction.
fn dec(text: &str) -> (u128, u128) {
    let (i, f) = text.split_once('.').unwrap_or((text, ""));
    frac(
        format!("{i}{f}").parse().unwrap(),
        10u128.pow(f.len() as u32),
    )
}

fn add(a: (u128, u128), b: (u128, u128)) -> (u128, u128) {
    frac(a.0 * b.1 + b.0 * a.1, a.1 * b.1)
}

/// The entry for `model` in the table JSON: exact key, else longest `*` prefix.
fn entry<'a>(table: &'a Value, model: &str) -> Option<&'a Value> {
    let models = table["models"].as_object().unwrap();
    if let Some(e) = models.get(model) {
        return Some(e);
    }
    models
        .iter()
        .filter(|(k, _)| k.ends_with('*') && model.starts_with(&k[..k.len() - 1]))
        .max_by_key(|(k, _)| k.len())
        .map(|(_, e)| e)
}

/// The cost of a record (as the scan printed it) under the table, or None.
fn expected_cost(table: &Value, rec: &Value) -> Option<(u128, u128)> {
    let e = entry(table, rec["model"].as_str()?)?;
    let price = |k: &str| e.get(k).map(|v| dec(&v.to_string()));
    let count = |k: &str| rec[k].as_u64().map(u128::from);
    let input = count("input_tokens")?;
    let cached = count("cached_input_tokens").unwrap_or(0);
    let created = count("cache_creation_input_tokens").unwrap_or(0);
    let p_in = price("input").unwrap();
    let mut total = (0u128, 1u128);
    let mut bill = |n: u128, p: (u128, u128)| total = add(total, frac(n * p.0, p.1));
    // The modality parts of input and output, set apart only when the entry prices them.
    let mut apart = |parts: [(&str, &str); 2]| {
        let mut n = 0;
        for (field, key) in parts {
            if let (Some(p), Some(c)) = (price(key), count(field)) {
                bill(c, p);
                n += c;
            }
        }
        n
    };
    let input_parts = apart([
        ("input_audio_tokens", "input_audio"),
        ("input_image_tokens", "input_image"),
    ]);
    let output_parts = apart([
        ("output_audio_tokens", "output_audio"),
        ("output_image_tokens", "output_image"),
    ]);
    bill(input - cached - created - input_parts, p_in);
    bill(cached, price("cached_input").unwrap_or(p_in));
    // The 1-hour part of the cache writes, at its own price when the entry has one.
    let p_created = price("cache_creation_input").unwrap_or(p_in);
    match (
        price("cache_creation_1h_input"),
        count("cache_creation_1h_input_tokens"),
    ) {
        (Some(p_1h), Some(h)) => {
            bill(created - h, p_created);
            bill(h, p_1h);
        }
        _ => bill(created, p_created),
    }
    if let Some(p_out) = price("output") {
        bill(count("output_tokens")? - output_parts, p_out);
    }
    let per = u128::from(table["per_tokens"].as_u64().unwrap());
    Some(frac(total.0, total.1 * per))
}

#[test]
fn scan_prices_every_fixture_that_names_a_priced_model() {
    let table: Value = serde_json::from_slice(&std::fs::read(example_prices()).unwrap()).unwrap();
    let mut priced = 0;
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut args = scan_args(&dir);
        args.insert(1, "--prices".into());
        args.insert(2, example_prices().to_string_lossy().into_owned());
        let out = bin().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rec["currency"], "USD", "{name}");
        let want = expected_cost(&table, &rec);
        match (&rec["cost"], want) {
            (Value::String(s), Some(w)) => {
                assert_eq!(dec(s), w, "{name}: cost {s}");
                priced += 1;
            }
            (Value::Null, None) => {}
            (got, want) => panic!("{name}: cost {got} but expected {want:?}"),
        }
    }
    // The example table prices the OpenAI, Anthropic and Gemini fixtures.
    assert!(priced >= 28, "only {priced} fixtures priced");
}

#[test]
fn scan_known_costs_by_hand() {
    // Fixture 13: Anthropic with 3480 cache reads and 156 cache writes of 3648 input,
    // 210 output, claude-3-7-sonnet at 3 / 0.3 / 3.75 / 15 per million:
    // 12 × 3 + 3480 × 0.3 + 156 × 3.75 + 210 × 15 = 36 + 1044 + 585 + 3150 = 4815.
    let dir = root().join("testdata/fixtures/13-anthropic-messages-cache");
    let mut args = scan_args(&dir);
    args.insert(1, "--prices".into());
    args.insert(2, example_prices().to_string_lossy().into_owned());
    let rec: Value = serde_json::from_slice(&bin().args(&args).output().unwrap().stdout).unwrap();
    assert_eq!(rec["cost"], "0.004815");
    // Fixture 69: gpt-image-1, 14 text input tokens at 5 and 272 output (image) tokens
    // at 40 per million: 70 + 10880 = 10950.
    let dir = root().join("testdata/fixtures/69-openai-images-generations-json");
    let mut args = scan_args(&dir);
    args.insert(1, "--prices".into());
    args.insert(2, example_prices().to_string_lossy().into_owned());
    let rec: Value = serde_json::from_slice(&bin().args(&args).output().unwrap().stdout).unwrap();
    assert_eq!(rec["cost"], "0.01095");
    // Without --prices: no cost fields at all.
    let rec: Value =
        serde_json::from_slice(&bin().args(scan_args(&dir)).output().unwrap().stdout).unwrap();
    assert!(rec.get("cost").is_none() && rec.get("currency").is_none());
    // A bad table is a usage error naming the problem.
    let bad =
        std::env::temp_dir().join(format!("llm-usage-bad-prices-{}.json", std::process::id()));
    std::fs::write(
        &bad,
        r#"{"currency":"USD","per_tokens":1000000,"models":{"m":{"input":1,"ouptut":2}}}"#,
    )
    .unwrap();
    let out = bin()
        .args(["scan", "--prices"])
        .arg(&bad)
        .arg("-")
        .output()
        .unwrap();
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ouptut"));
}

fn report_json(args: &[&str]) -> (Value, String) {
    let out = bin()
        .arg("report")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn report_over_the_fixtures_adds_what_scan_says() {
    let prices = example_prices();
    let fixtures_dir = root().join("testdata/fixtures");
    let (rep, stderr) = report_json(&[
        "--prices",
        prices.to_str().unwrap(),
        fixtures_dir.to_str().unwrap(),
    ]);
    assert_eq!(stderr, "");
    // The same sums from scan, exchange by exchange.
    let table: Value = serde_json::from_slice(&std::fs::read(&prices).unwrap()).unwrap();
    let (mut input, mut output, mut cost, mut unpriced, mut estimated) =
        (0u64, 0u64, (0u128, 1u128), 0u64, 0u64);
    let all = fixtures();
    for dir in &all {
        let rec: Value =
            serde_json::from_slice(&bin().args(scan_args(dir)).output().unwrap().stdout).unwrap();
        input += rec["input_tokens"].as_u64().unwrap_or(0);
        output += rec["output_tokens"].as_u64().unwrap_or(0);
        estimated += u64::from(rec["estimated"] == true);
        match expected_cost(&table, &rec) {
            Some(c) => cost = add(cost, c),
            None => unpriced += 1,
        }
    }
    let total = &rep["total"];
    assert_eq!(rep["exchanges"], all.len());
    assert_eq!(rep["skipped"], 0);
    assert_eq!(total["requests"], all.len());
    assert_eq!(total["input_tokens"], input);
    assert_eq!(total["output_tokens"], output);
    assert_eq!(total["estimated_requests"], estimated);
    assert_eq!(total["unpriced_requests"], unpriced);
    assert_eq!(dec(total["cost"].as_str().unwrap()), cost);
    // Per provider and per model add up to the total.
    for key in ["providers", "models"] {
        let rows = rep[key].as_array().unwrap();
        let sum: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
        assert_eq!(sum, all.len() as u64, "{key}");
        let sum: u64 = rows
            .iter()
            .map(|r| r["input_tokens"].as_u64().unwrap())
            .sum();
        assert_eq!(sum, input, "{key}");
    }
    let anthropic = rep["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "anthropic")
        .unwrap();
    assert!(anthropic["requests"].as_u64().unwrap() >= 10);
    // No table: no cost, not a cost of 0.
    let (rep, _) = report_json(&[fixtures_dir.to_str().unwrap()]);
    assert_eq!(rep["total"]["cost"], Value::Null);
    assert_eq!(rep["currency"], Value::Null);
    // The table form has the same totals line.
    let out = bin()
        .args([
            "report",
            "--prices",
            prices.to_str().unwrap(),
            fixtures_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("TOTAL")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], all.len().to_string());
    assert_eq!(cols[2], input.to_string());
    assert_eq!(cols[3], output.to_string());
}

#[test]
fn report_skips_unreadable_sources_and_entries() {
    let dir = std::env::temp_dir().join(format!("llm-usage-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A HAR with one good OpenAI entry (fixture 01's bytes), one entry with no URL, then a
    // syntax error: the good one counts, both faults are reported, nothing stops.
    let f01 = root().join("testdata/fixtures/01-openai-chat-basic");
    let req = std::fs::read_to_string(f01.join("request.json")).unwrap();
    let resp = std::fs::read_to_string(f01.join("response.bin")).unwrap();
    let good = serde_json::json!({
        "request": {"method": "POST", "url": "https://api.openai.com/v1/chat/completions",
            "headers": [{"name": "content-type", "value": "application/json"}],
            "postData": {"mimeType": "application/json", "text": req}},
        "response": {"status": 200,
            "headers": [{"name": "content-type", "value": "application/json"},
                        {"name": "content-encoding", "value": "gzip"}],
            "content": {"mimeType": "application/json", "text": resp}}
    });
    let har = format!(
        r#"{{"log":{{"version":"1.2","entries":[{good},{{"request":{{"method":"GET"}},"response":{{"status":200}}}},{good},{{"#
    );
    std::fs::write(dir.join("cut.har"), har).unwrap();
    let (rep, stderr) = report_json(&[
        dir.join("cut.har").to_str().unwrap(),
        dir.join("missing.har").to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(rep["exchanges"], 2);
    assert_eq!(rep["total"]["input_tokens"], 54);
    assert_eq!(rep["models"][0]["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(rep["skipped"], 4, "{stderr}");
    assert!(stderr.contains("cut.har entry 1: "), "{stderr}");
    assert!(stderr.contains("after 3 entries"), "{stderr}");
    assert!(stderr.contains("missing.har"), "{stderr}");
    assert!(stderr.contains("no case folders"), "{stderr}");
    // No PATH at all is a usage error.
    let out = bin().arg("report").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn report_reads_a_har_exported_by_mitmproxy() {
    // testdata/har/mitmproxy-curl.har: curl through mitmdump 11.0.2 (its HAR export) to a
    // loopback mock provider; see testdata/har/make-har.sh. mitmproxy stores the decoded
    // text of the gzip response and keeps its content-encoding header.
    let har = root().join("testdata/har/mitmproxy-curl.har");
    let prices = example_prices();
    let (rep, stderr) = report_json(&["--prices", prices.to_str().unwrap(), har.to_str().unwrap()]);
    assert_eq!(stderr, "");
    assert_eq!(rep["exchanges"], 5);
    assert_eq!(rep["skipped"], 0);
    let model = |m: &str| {
        rep["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == m)
            .unwrap_or_else(|| panic!("{m} in {rep}"))
            .clone()
    };
    let chat = model("gpt-4o-mini-2024-07-18");
    assert_eq!(
        (
            chat["input_tokens"].as_u64(),
            chat["output_tokens"].as_u64()
        ),
        (Some(21), Some(3))
    );
    // 21 × 0.15 + 3 × 0.6 per million.
    assert_eq!(chat["cost"], "0.00000495");
    let stream = model("gpt-4.1-2025-04-14");
    assert_eq!(stream["total_tokens"], 14);
    let claude = model("claude-sonnet-4-5-20250929");
    assert_eq!(claude["input_tokens"], 1240);
    assert_eq!(claude["cached_input_tokens"], 1000);
    assert_eq!(claude["cache_creation_input_tokens"], 200);
    // 40 × 3 + 1000 × 0.3 + 200 × 3.75 + 9 × 15 per million.
    assert_eq!(claude["cost"], "0.001305");
    let embed = model("text-embedding-3-small");
    assert_eq!(embed["cost"], "0.00000012");
    assert_eq!(embed["unknown_output_requests"], 1);
    // The 404 to an unknown route: counted, nothing known, no cost.
    assert_eq!(rep["price_lookup_misses"], 1);
    assert_eq!(rep["total"]["unpriced_requests"], 1);
    assert_eq!(rep["total"]["cost"], "0.00135007");
}
