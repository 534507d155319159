//! `llm-usage`: turn captured LLM API exchanges into usage records.
//!
//! ```text
//! llm-usage scan [--method M] [--path PATH_AND_QUERY] [--request FILE]
//!                [--request-header 'Name: value']... [--status N]
//!                [--header 'Name: value']... [--provider NAME]
//!                [--estimator bpe|chars] [--pretty] [--prices FILE]
//!                [RESPONSE_FILE|-]
//! llm-usage report [--prices FILE] [--json] PATH...
//! llm-usage demo
//! ```
//!
//! All parsing lives in `llm-usage-core`; this binary only reads files and prints.

use llm_usage_core::{Exchange, Options, Provider, UsageRecord};
use llm_usage_cost::PriceTable;
use std::io::{self, Read, Write};
use std::process::ExitCode;

mod demo;
mod har;
mod report;

const USAGE: &str = "\
llm-usage: token usage from captured LLM API traffic

USAGE:
    llm-usage scan [OPTIONS] [RESPONSE_FILE|-]
    llm-usage report [--prices FILE] [--json] PATH...
    llm-usage demo
    llm-usage help

scan reads one exchange (the response body from RESPONSE_FILE, or stdin when it is
absent or '-') and prints its usage record as one JSON object.

SCAN OPTIONS:
    --method METHOD             request method (default POST)
    --path PATH_AND_QUERY       request path and query, e.g. /v1/chat/completions
    --request FILE              request body file
    --request-header 'N: v'     a request header (repeatable)
    --status N                  response status (default 200)
    --header 'N: v'             a response header (repeatable), e.g. 'content-type: text/event-stream'
    --provider NAME             force a provider: openai, azure, anthropic, gemini, vertex,
                                bedrock, dashscope, ollama, cohere, mistral, deepseek
    --estimator bpe|chars       how to estimate tokens a response did not report: OpenAI's
                                byte-pair encodings (default), or character counts (what
                                the proxy-wasm filter does)
    --prices FILE               a price table (JSON): adds \"cost\" (a decimal string, or null
                                when the model has no price or a needed count is unknown)
                                and \"currency\"
    --pretty                    indent the JSON

report reads many exchanges and prints totals per model and per provider: requests,
tokens by kind, the share of estimated records, and the cost with --prices. A PATH is a
case folder (case.json, request.json, response.bin, as in testdata/fixtures), a folder
of case folders, or a HAR file (browsers, mitmproxy and Charles export them; read one
entry at a time). Unreadable entries are reported on stderr and skipped.

demo replays bundled exchanges (no network, no API key) and prints each record and the
token totals per model.
";

/// A usage error: printed with the usage hint, exit code 2.
pub(crate) struct UsageError(pub(crate) String);

struct ScanArgs {
    method: String,
    path: String,
    request: Option<String>,
    request_headers: Vec<(String, String)>,
    status: u16,
    headers: Vec<(String, String)>,
    provider: Option<Provider>,
    chars_estimator: bool,
    pretty: bool,
    prices: Option<String>,
    response: Option<String>,
}

/// The options of every exchange the binary reads: estimates with OpenAI's byte-pair
/// encodings unless character counts are asked for.
pub(crate) fn exchange_options(chars_estimator: bool) -> Options {
    let options = Options::new();
    if chars_estimator {
        options
    } else {
        options.token_counter(llm_usage_core::Bpe::boxed)
    }
}

pub(crate) fn parse_header(s: &str) -> Result<(String, String), UsageError> {
    match s.split_once(':') {
        // `:authority: host` style pseudo-headers keep their leading colon.
        Some(("", rest)) => match rest.split_once(':') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok((format!(":{}", name.trim()), value.trim().to_owned()))
            }
            _ => Err(UsageError(format!(
                "bad header {s:?}: expected 'Name: value'"
            ))),
        },
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(UsageError(format!(
            "bad header {s:?}: expected 'Name: value'"
        ))),
    }
}

fn parse_scan(args: &[String]) -> Result<ScanArgs, UsageError> {
    let mut a = ScanArgs {
        method: "POST".into(),
        path: "/".into(),
        request: None,
        request_headers: Vec::new(),
        status: 200,
        headers: Vec::new(),
        provider: None,
        chars_estimator: false,
        pretty: false,
        prices: None,
        response: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| UsageError(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--method" => a.method = value("--method")?,
            "--path" => a.path = value("--path")?,
            "--request" => a.request = Some(value("--request")?),
            "--request-header" => a
                .request_headers
                .push(parse_header(&value("--request-header")?)?),
            "--header" => a.headers.push(parse_header(&value("--header")?)?),
            "--status" => {
                let v = value("--status")?;
                a.status = v
                    .parse()
                    .ok()
                    .filter(|s| (100..=999).contains(s))
                    .ok_or_else(|| {
                        UsageError(format!("bad --status {v:?}: expected an HTTP status code"))
                    })?;
            }
            "--provider" => {
                let v = value("--provider")?;
                a.provider = Some(
                    Provider::from_name(&v)
                        .ok_or_else(|| UsageError(format!("unknown provider {v:?}")))?,
                );
            }
            "--estimator" => match value("--estimator")?.as_str() {
                "bpe" => a.chars_estimator = false,
                "chars" => a.chars_estimator = true,
                v => {
                    return Err(UsageError(format!(
                        "bad --estimator {v:?}: expected bpe or chars"
                    )))
                }
            },
            "--pretty" => a.pretty = true,
            "--prices" => a.prices = Some(value("--prices")?),
            "-" => a.response = Some("-".into()),
            s if s.starts_with('-') => return Err(UsageError(format!("unknown option {s:?}"))),
            s => {
                if a.response.is_some() {
                    return Err(UsageError(format!(
                        "unexpected argument {s:?}: one response file only"
                    )));
                }
                a.response = Some(s.to_owned());
            }
        }
    }
    Ok(a)
}

/// Streams a reader into `f` in fixed chunks: the core never needs a whole body.
pub(crate) fn stream(mut r: impl Read, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => f(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn open(path: &str, what: &str) -> Result<std::fs::File, UsageError> {
    std::fs::File::open(path).map_err(|e| UsageError(format!("cannot open {what} {path:?}: {e}")))
}

/// Reads a price table file: a missing or bad table is a usage error.
pub(crate) fn load_prices(path: &str) -> Result<PriceTable, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read price table {path:?}: {e}")))?;
    PriceTable::from_json(&text).map_err(|e| UsageError(format!("{path}: {e}")))
}

fn scan(args: &[String]) -> Result<UsageRecord, UsageError> {
    let a = parse_scan(args)?;
    let prices = a.prices.as_deref().map(load_prices).transpose()?;
    // Open everything first so a missing file is a usage error before any output.
    let request = a
        .request
        .as_deref()
        .map(|p| open(p, "request file"))
        .transpose()?;
    let response = match a.response.as_deref() {
        None | Some("-") => None,
        Some(p) => Some(open(p, "response file")?),
    };
    let mut options = exchange_options(a.chars_estimator);
    if let Some(p) = a.provider {
        options = options.provider(p);
    }
    let mut ex = Exchange::with_options(options);
    let io_err = |e: io::Error| UsageError(format!("read error: {e}"));
    ex.on_request_head(
        &a.method,
        &a.path,
        a.request_headers.iter().map(|(k, v)| (k, v)),
    );
    if let Some(f) = request {
        stream(f, |c| ex.on_request_body(c)).map_err(io_err)?;
    }
    ex.on_request_end();
    ex.on_response_head(a.status, a.headers.iter().map(|(k, v)| (k, v)));
    match response {
        Some(f) => stream(f, |c| ex.on_response_body(c)).map_err(io_err)?,
        None => stream(io::stdin().lock(), |c| ex.on_response_body(c)).map_err(io_err)?,
    }
    ex.on_response_end();
    let record = ex.finish();
    /// The record with its cost, fields in the record's order then `cost`, `currency`.
    #[derive(serde::Serialize)]
    struct Priced<'a> {
        #[serde(flatten)]
        record: &'a UsageRecord,
        cost: Option<String>,
        currency: &'a str,
    }
    let text = match &prices {
        Some(table) => {
            let priced = Priced {
                record: &record,
                cost: table.price(&record).amount().map(|a| a.to_string()),
                currency: table.currency(),
            };
            if a.pretty {
                serde_json::to_string_pretty(&priced)
            } else {
                serde_json::to_string(&priced)
            }
        }
        None if a.pretty => serde_json::to_string_pretty(&record),
        None => serde_json::to_string(&record),
    };
    println!("{}", text.expect("a JSON value always serialises"));
    Ok(record)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("scan") => scan(&args[1..]).map(|_| ()),
        Some("report") => report::run(&args[1..]),
        Some("demo") if args.len() == 1 => {
            demo::run(&mut io::stdout().lock()).map_err(|e| UsageError(e.to_string()))
        }
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("--version" | "-V") => {
            println!("llm-usage {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(other) => Err(UsageError(format!("unknown command {other:?}"))),
        None => Err(UsageError("missing command".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(UsageError(msg)) => {
            let _ = writeln!(
                io::stderr(),
                "llm-usage: {msg}\nRun 'llm-usage help' for usage."
            );
            ExitCode::from(2)
        }
    }
}
