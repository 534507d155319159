//! The token estimate against the provider figures of the fixture corpus: for every
//! fixture whose provider reported the output tokens and whose response carried the text
//! they count (no hidden reasoning: `reasoning_tokens` absent or 0), the estimate made from
//! that text, and its relative error, per dialect. README ("Estimates") states these
//! figures; the test fails if they get worse than it says.

use llm_usage_core::{Exchange, Options};
use serde_json::Value;
use std::path::Path;

struct Row {
    name: String,
    dialect: &'static str,
    exact: u64,
    estimate: u64,
}

/// Which estimate: character counts, or (with the `bpe` feature) OpenAI's encodings.
#[derive(Clone, Copy, PartialEq)]
enum Method {
    Chars,
    #[cfg(feature = "bpe")]
    Bpe,
}

/// Which figure: the output from the generated text, or the input from the prompt text.
#[derive(Clone, Copy, PartialEq)]
enum Figure {
    Output,
    Input,
}

fn rows() -> Vec<Row> {
    rows_of(Method::Chars, Figure::Output)
}

fn rows_of(method: Method, figure: Figure) -> Vec<Row> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
    let mut dirs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for d in dirs {
        let case: Value =
            serde_json::from_slice(&std::fs::read(d.join("case.json")).unwrap()).unwrap();
        let e = &case["expect"];
        let hidden_reasoning = e["reasoning_tokens"].as_u64().is_some_and(|r| r > 0);
        if e["estimated"].as_bool() == Some(true) || hidden_reasoning {
            continue;
        }
        let headers = |v: &Value| -> Vec<(String, String)> {
            v.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let options = match method {
            Method::Chars => Options::new(),
            #[cfg(feature = "bpe")]
            Method::Bpe => Options::new().token_counter(llm_usage_core::Bpe::boxed),
        };
        let mut ex = Exchange::with_options(options);
        ex.on_request_head(
            case["method"].as_str().unwrap(),
            case["path"].as_str().unwrap(),
            headers(&case["request_headers"]),
        );
        if let Ok(req) = std::fs::read(d.join("request.json")) {
            ex.on_request_body(&req);
        }
        ex.on_response_head(
            case["response_status"].as_u64().unwrap() as u16,
            headers(&case["response_headers"]),
        );
        ex.on_response_body(&std::fs::read(d.join("response.bin")).unwrap());
        ex.on_response_end();
        let (input, output) = ex.estimated_tokens();
        let (exact, estimate) = match figure {
            Figure::Output => (e["output_tokens"].as_u64(), output),
            Figure::Input => (e["input_tokens"].as_u64(), input),
        };
        let (Some(exact), Some(estimate)) = (exact, estimate) else {
            continue;
        };
        out.push(Row {
            name: d.file_name().unwrap().to_string_lossy().into_owned(),
            dialect: ex.dialect(),
            exact,
            estimate,
        });
    }
    out
}

fn rel(r: &Row) -> f64 {
    (r.estimate as f64 - r.exact as f64).abs() / r.exact as f64
}

fn median_and_worst(mut errs: Vec<f64>) -> (f64, f64) {
    errs.sort_by(f64::total_cmp);
    (errs[errs.len() / 2], *errs.last().unwrap())
}

/// Prints each row and the median and worst relative error, overall and per dialect;
/// returns the overall pair.
fn report(title: &str, rows: &[Row]) -> (f64, f64) {
    println!("{title}");
    for r in rows {
        println!(
            "  {:45} {:20} provider {:5} estimate {:5} error {:.0}%",
            r.name,
            r.dialect,
            r.exact,
            r.estimate,
            rel(r) * 100.0
        );
    }
    let (median, worst) = median_and_worst(rows.iter().map(rel).collect());
    println!(
        "{} fixtures: median error {:.0}%, worst {:.0}%",
        rows.len(),
        median * 100.0,
        worst * 100.0
    );
    let mut dialects: Vec<&str> = rows.iter().map(|r| r.dialect).collect();
    dialects.sort_unstable();
    dialects.dedup();
    for d in dialects {
        let (m, w) = median_and_worst(rows.iter().filter(|r| r.dialect == d).map(rel).collect());
        println!("  {d}: median {:.0}%, worst {:.0}%", m * 100.0, w * 100.0);
    }
    (median, worst)
}

#[test]
fn output_estimate_error_on_the_fixtures() {
    let rows = rows();
    let (median, _) = report("output, character counts", &rows);
    assert!(rows.len() >= 20, "{} fixtures with text", rows.len());
    assert!(median <= 0.55, "median output error {median}");
}

#[test]
fn input_estimate_error_on_the_fixtures() {
    let rows = rows_of(Method::Chars, Figure::Input);
    report("input, character counts", &rows);
}

#[cfg(feature = "bpe")]
#[test]
fn bpe_estimate_error_on_the_fixtures() {
    let rows = rows_of(Method::Bpe, Figure::Output);
    report("output, OpenAI encodings where the model has one", &rows);
    let rows = rows_of(Method::Bpe, Figure::Input);
    report("input, OpenAI encodings where the model has one", &rows);
}
