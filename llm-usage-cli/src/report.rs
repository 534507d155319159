//! `llm-usage report`: totals per model and per provider over many captured exchanges.
//!
//! Every exchange goes through the core exactly as `scan` sends it (no second parser),
//! and through the price table when one is given. Totals add the figures the traffic
//! carried; a figure it did not carry is not added as 0 but counted apart (`unknown_*`),
//! and a request without a cost is counted apart (`unpriced_requests`): a total over
//! partly unknown traffic says how partial it is.
//!
//! Sources are read one exchange at a time (a HAR file one entry at a time), so a
//! gigabyte capture needs the memory of its largest entry. An unreadable source or entry
//! is reported on stderr and skipped.

use crate::har::{self, HarExchange};
use crate::{load_prices, stream, UsageError};
use llm_usage_core::{Exchange, UsageRecord};
use llm_usage_cost::{Amount, PriceTable};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// The totals of one group of exchanges.
#[derive(Default, Clone)]
struct Totals {
    requests: u64,
    input: u64,
    output: u64,
    total: u64,
    cached_input: u64,
    cache_creation_input: u64,
    reasoning: u64,
    unknown_input: u64,
    unknown_output: u64,
    /// Requests whose input or output count is unknown.
    unknown_any: u64,
    estimated: u64,
    cost: Amount,
    unpriced: u64,
}

impl Totals {
    fn add(&mut self, r: &UsageRecord, cost: Option<Amount>) {
        let sum = |acc: &mut u64, v: Option<u64>| *acc = acc.saturating_add(v.unwrap_or(0));
        self.requests += 1;
        sum(&mut self.input, r.input_tokens);
        sum(&mut self.output, r.output_tokens);
        sum(&mut self.total, r.total_tokens);
        sum(&mut self.cached_input, r.cached_input_tokens);
        sum(
            &mut self.cache_creation_input,
            r.cache_creation_input_tokens,
        );
        sum(&mut self.reasoning, r.reasoning_tokens);
        self.unknown_input += u64::from(r.input_tokens.is_none());
        self.unknown_output += u64::from(r.output_tokens.is_none());
        self.unknown_any += u64::from(r.input_tokens.is_none() || r.output_tokens.is_none());
        self.estimated += u64::from(r.estimated);
        match cost.and_then(|c| self.cost.checked_add(c)) {
            Some(c) => self.cost = c,
            None => self.unpriced += 1,
        }
    }

    fn estimated_share(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.estimated as f64 / self.requests as f64
        }
    }

    fn json(&self, priced: bool) -> Value {
        json!({
            "requests": self.requests,
            "input_tokens": self.input,
            "output_tokens": self.output,
            "total_tokens": self.total,
            "cached_input_tokens": self.cached_input,
            "cache_creation_input_tokens": self.cache_creation_input,
            "reasoning_tokens": self.reasoning,
            "unknown_input_requests": self.unknown_input,
            "unknown_output_requests": self.unknown_output,
            "estimated_requests": self.estimated,
            "estimated_share": (self.estimated_share() * 1000.0).round() / 1000.0,
            "cost": priced.then(|| self.cost.to_string()),
            "unpriced_requests": priced.then_some(self.unpriced),
        })
    }
}

/// Everything the report adds up.
#[derive(Default)]
struct Report {
    by_model: BTreeMap<(String, String), Totals>,
    by_provider: BTreeMap<String, Totals>,
    all: Totals,
    lookup_misses: u64,
    skipped: u64,
}

const UNKNOWN: &str = "(unknown)";

impl Report {
    fn add(&mut self, r: &UsageRecord, prices: Option<&PriceTable>) {
        let pricing = prices.map(|t| t.price(r));
        if pricing.as_ref().is_some_and(|p| p.is_miss()) {
            self.lookup_misses += 1;
        }
        let cost = pricing.and_then(|p| p.amount());
        let provider = r.provider.map_or(UNKNOWN, |p| p.as_str()).to_owned();
        let model = r.model.clone().unwrap_or_else(|| UNKNOWN.to_owned());
        self.by_model
            .entry((model, provider.clone()))
            .or_default()
            .add(r, cost);
        self.by_provider.entry(provider).or_default().add(r, cost);
        self.all.add(r, cost);
    }

    fn skip(&mut self, what: &str, why: &str) {
        self.skipped += 1;
        let _ = writeln!(io::stderr(), "llm-usage: report: skipped {what}: {why}");
    }

    fn json(&self, prices: Option<&PriceTable>) -> Value {
        let priced = prices.is_some();
        let name = |s: &str| if s == UNKNOWN { Value::Null } else { s.into() };
        let models: Vec<Value> = self
            .by_model
            .iter()
            .map(|((m, p), t)| {
                let mut v = t.json(priced);
                v["model"] = name(m);
                v["provider"] = name(p);
                v
            })
            .collect();
        let providers: Vec<Value> = self
            .by_provider
            .iter()
            .map(|(p, t)| {
                let mut v = t.json(priced);
                v["provider"] = name(p);
                v
            })
            .collect();
        json!({
            "currency": prices.map(|t| t.currency()),
            "exchanges": self.all.requests,
            "skipped": self.skipped,
            "price_lookup_misses": priced.then_some(self.lookup_misses),
            "models": models,
            "providers": providers,
            "total": self.all.json(priced),
        })
    }

    fn table(&self, prices: Option<&PriceTable>, out: &mut dyn Write) -> io::Result<()> {
        let cur = prices.map_or("", |t| t.currency());
        let header = [
            "REQS", "INPUT", "OUTPUT", "CACHED", "CACHE_WR", "REASON", "UNKNOWN", "EST%",
        ];
        let row = |out: &mut dyn Write, name: &str, t: &Totals| -> io::Result<()> {
            let cost = match prices {
                None => "-".to_owned(),
                Some(_) if t.unpriced == 0 => format!("{} {cur}", t.cost),
                Some(_) if t.unpriced == t.requests => format!("- ({} unpriced)", t.unpriced),
                Some(_) => format!("{} {cur} (+{} unpriced)", t.cost, t.unpriced),
            };
            writeln!(
                out,
                "{name:<50} {:>6} {:>10} {:>9} {:>9} {:>9} {:>8} {:>7} {:>5.1}  {cost}",
                t.requests,
                t.input,
                t.output,
                t.cached_input,
                t.cache_creation_input,
                t.reasoning,
                t.unknown_any,
                t.estimated_share() * 100.0,
            )
        };
        let head = |out: &mut dyn Write, first: &str| {
            writeln!(
                out,
                "{first:<50} {:>6} {:>10} {:>9} {:>9} {:>9} {:>8} {:>7} {:>5}  COST",
                header[0],
                header[1],
                header[2],
                header[3],
                header[4],
                header[5],
                header[6],
                header[7]
            )
        };
        head(out, "MODEL (PROVIDER)")?;
        for ((m, p), t) in &self.by_model {
            let m = if m == UNKNOWN { "(no model)" } else { m };
            let p = if p == UNKNOWN { "unknown provider" } else { p };
            row(out, &format!("{m} ({p})"), t)?;
        }
        writeln!(out)?;
        head(out, "PROVIDER")?;
        for (p, t) in &self.by_provider {
            row(
                out,
                if p == UNKNOWN {
                    "(unknown provider)"
                } else {
                    p
                },
                t,
            )?;
        }
        writeln!(out)?;
        row(out, "TOTAL", &self.all)?;
        writeln!(
            out,
            "\n{} exchanges, {} skipped{}. UNKNOWN: requests whose input or output count the \
             traffic did not carry (not added as 0).",
            self.all.requests,
            self.skipped,
            match prices {
                Some(_) => format!(", {} price lookup misses", self.lookup_misses),
                None => String::new(),
            }
        )
    }
}

/// One exchange through the core, bodies fed as they are read.
fn record_of(
    method: &str,
    path: &str,
    request_headers: &[(String, String)],
    request: impl Read,
    status: u16,
    response_headers: &[(String, String)],
    response: impl Read,
) -> io::Result<UsageRecord> {
    let mut ex = Exchange::with_options(crate::exchange_options(false));
    ex.on_request_head(method, path, request_headers.iter().map(|(k, v)| (k, v)));
    stream(request, |c| ex.on_request_body(c))?;
    ex.on_request_end();
    ex.on_response_head(status, response_headers.iter().map(|(k, v)| (k, v)));
    stream(response, |c| ex.on_response_body(c))?;
    ex.on_response_end();
    Ok(ex.finish())
}

fn headers_of(v: &Value) -> Result<Vec<(String, String)>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => Ok((k.clone(), s.to_owned())),
                None => Err(format!("header {k:?} is not a string")),
            })
            .collect(),
        _ => Err("headers are not an object".into()),
    }
}

/// A case folder: `case.json` (method, path, headers, status), `request.json`,
/// `response.bin`.
fn case_record(dir: &Path) -> Result<UsageRecord, String> {
    let text = std::fs::read(dir.join("case.json")).map_err(|e| format!("case.json: {e}"))?;
    let case: Value = serde_json::from_slice(&text).map_err(|e| format!("case.json: {e}"))?;
    let method = case["method"].as_str().unwrap_or("POST");
    let path = case["path"].as_str().ok_or("case.json: no \"path\"")?;
    let status = case["response_status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(200);
    let req_headers = headers_of(&case["request_headers"])?;
    let resp_headers = headers_of(&case["response_headers"])?;
    let request: Box<dyn Read> = match File::open(dir.join("request.json")) {
        Ok(f) => Box::new(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Box::new(io::empty()),
        Err(e) => return Err(format!("request.json: {e}")),
    };
    let response =
        File::open(dir.join("response.bin")).map_err(|e| format!("response.bin: {e}"))?;
    record_of(
        method,
        path,
        &req_headers,
        request,
        status,
        &resp_headers,
        response,
    )
    .map_err(|e| format!("read error: {e}"))
}

fn har_record(x: &HarExchange) -> UsageRecord {
    record_of(
        &x.method,
        &x.path,
        &x.request_headers,
        x.request_body.as_slice(),
        x.status,
        &x.response_headers,
        x.response_body.as_slice(),
    )
    .expect("reading from memory cannot fail")
}

fn add_path(report: &mut Report, prices: Option<&PriceTable>, path: &Path) {
    let shown = path.display().to_string();
    if path.is_dir() {
        if path.join("case.json").is_file() {
            match case_record(path) {
                Ok(r) => report.add(&r, prices),
                Err(e) => report.skip(&shown, &e),
            }
            return;
        }
        let mut dirs: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("case.json").is_file())
                .collect(),
            Err(e) => return report.skip(&shown, &e.to_string()),
        };
        if dirs.is_empty() {
            return report.skip(&shown, "no case folders (folders with a case.json) in it");
        }
        dirs.sort();
        for d in dirs {
            add_path(report, prices, &d);
        }
        return;
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return report.skip(&shown, &e.to_string()),
    };
    let mut pending: Vec<(usize, String)> = Vec::new();
    let result = har::for_each_entry(BufReader::new(file), &mut |i, entry| match entry {
        Ok(x) => report.add(&har_record(&x), prices),
        Err(e) => pending.push((i, e)),
    });
    for (i, e) in pending {
        report.skip(&format!("{shown} entry {i}"), &e);
    }
    if let Err(e) = result {
        report.skip(&shown, &e);
    }
}

/// Runs `llm-usage report`: `paths` read in order, totals written to `out`.
pub(crate) fn run(
    prices: Option<&Path>,
    as_json: bool,
    paths: &[PathBuf],
    out: &mut dyn Write,
) -> Result<(), UsageError> {
    let prices = prices.map(load_prices).transpose()?;
    let mut report = Report::default();
    for p in paths {
        add_path(&mut report, prices.as_ref(), p);
    }
    let written = if as_json {
        writeln!(out, "{}", report.json(prices.as_ref()))
    } else {
        report.table(prices.as_ref(), out)
    };
    written.map_err(|e| UsageError(format!("write error: {e}")))
}
