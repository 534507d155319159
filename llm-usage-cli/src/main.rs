//! `llm-usage`: turn captured LLM API exchanges into usage records.
//!
//! ```text
//! llm-usage scan [--method M] [--path PATH_AND_QUERY] [--request FILE]
//!                [--request-header 'Name: value']... [--status N]
//!                [--header 'Name: value']... [--provider NAME]
//!                [--estimator bpe|chars] [--pretty] [--prices FILE]
//!                [RESPONSE_FILE|-]...
//! llm-usage report [--prices FILE] [--json] PATH...
//! llm-usage demo
//! ```
//!
//! All parsing lives in `llm-usage-core`; this binary only reads files and prints.
//! `llm-usage help SUBCOMMAND` (or `SUBCOMMAND --help`) tells each subcommand's options.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use llm_usage_core::{Exchange, Options, Provider, UsageRecord};
use llm_usage_cost::PriceTable;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod demo;
mod har;
mod report;

/// Token usage from captured LLM API traffic.
#[derive(Parser)]
#[command(name = "llm-usage", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the usage record of captured exchanges, one JSON record per line.
    ///
    /// Each RESPONSE_FILE is the response body of one exchange; every other option
    /// (method, path, request body, headers, status, provider) applies to each of them.
    /// Several files give several records, one JSON object per line, in the order of
    /// the files (with --pretty, indented objects one after another). Without a file, or
    /// with '-', the body is read from stdin.
    Scan(ScanArgs),
    /// Prints totals per model and per provider over many captured exchanges.
    ///
    /// Totals of requests, tokens by kind, the share of estimated records, and the cost
    /// with --prices. A PATH is a case folder (case.json, request.json, response.bin, as
    /// in testdata/fixtures), a folder of case folders, or a HAR file (browsers,
    /// mitmproxy and Charles export them; read one entry at a time). Unreadable entries
    /// are reported on stderr and skipped.
    Report(ReportArgs),
    /// Replays bundled exchanges (no network, no API key) and prints each record and the
    /// token totals per model.
    Demo,
}

/// How `scan` estimates tokens a response did not report.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Estimator {
    /// OpenAI's byte-pair encodings (o200k_base, cl100k_base for legacy models).
    Bpe,
    /// Character counts, as the proxy-wasm filter does.
    Chars,
}

#[derive(clap::Args)]
struct ScanArgs {
    /// Request method.
    #[arg(long, value_name = "METHOD", default_value = "POST")]
    method: String,
    /// Request path and query, e.g. /v1/chat/completions.
    #[arg(long, value_name = "PATH_AND_QUERY", default_value = "/")]
    path: String,
    /// Request body file.
    #[arg(long, value_name = "FILE")]
    request: Option<PathBuf>,
    /// A request header (repeatable).
    #[arg(long = "request-header", value_name = "NAME: VALUE", value_parser = parse_header)]
    request_headers: Vec<(String, String)>,
    /// Response status.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u16).range(100..=999))]
    status: u16,
    /// A response header (repeatable), e.g. 'content-type: text/event-stream'.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Force a provider: openai, azure, anthropic, gemini, vertex, bedrock, dashscope,
    /// ollama, cohere, mistral, deepseek (or a gen_ai.provider.name value).
    #[arg(long, value_name = "NAME")]
    provider: Option<Provider>,
    /// How to estimate tokens a response did not report.
    #[arg(long, value_enum, value_name = "ESTIMATOR", default_value_t = Estimator::Bpe)]
    estimator: Estimator,
    /// A price table (JSON): adds "cost" (a decimal string, or null when the model has no
    /// price or a needed count is unknown) and "currency".
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Indent the JSON.
    #[arg(long)]
    pretty: bool,
    /// Response body files ('-' or none: stdin); one record per file.
    #[arg(value_name = "RESPONSE_FILE")]
    responses: Vec<String>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// A price table (JSON): adds the cost per model and per provider.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Print the totals as one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Case folders, folders of case folders, or HAR files.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
}

/// A usage error found after parsing (a file that cannot be opened, a bad price table):
/// printed in clap's style with the subcommand's usage, exit code 2.
pub(crate) struct UsageError(pub(crate) String);

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

/// Parses a `--header` / `--request-header` value, `Name: value`.
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        // `:authority: host` style pseudo-headers keep their leading colon.
        Some(("", rest)) => match rest.split_once(':') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok((format!(":{}", name.trim()), value.trim().to_owned()))
            }
            _ => Err("expected 'Name: value'".into()),
        },
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err("expected 'Name: value'".into()),
    }
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

fn open(path: &Path, what: &str) -> Result<std::fs::File, UsageError> {
    std::fs::File::open(path).map_err(|e| UsageError(format!("cannot open {what} {path:?}: {e}")))
}

/// Reads a `--prices` table file: a missing or bad table is a usage error.
pub(crate) fn load_prices(path: &Path) -> Result<PriceTable, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read --prices {path:?}: {e}")))?;
    PriceTable::from_json(&text)
        .map_err(|e| UsageError(format!("bad --prices {}: {e}", path.display())))
}

/// Where one exchange's response body comes from.
enum Source {
    Stdin,
    File(PathBuf, std::fs::File),
}

/// The record with its cost, fields in the record's order then `cost`, `currency`.
#[derive(serde::Serialize)]
struct Priced<'a> {
    #[serde(flatten)]
    record: &'a UsageRecord,
    cost: Option<String>,
    currency: &'a str,
}

/// `llm-usage scan`: one record per response body, printed as it is read.
fn scan(a: &ScanArgs, out: &mut dyn Write) -> Result<(), UsageError> {
    let prices = a.prices.as_deref().map(load_prices).transpose()?;
    // Open everything first so a missing file is a usage error before any output.
    if let Some(p) = &a.request {
        open(p, "--request file")?;
    }
    if a.responses.iter().filter(|r| *r == "-").count() > 1 {
        return Err(UsageError(
            "RESPONSE_FILE '-' (stdin) given more than once".into(),
        ));
    }
    let mut sources = Vec::new();
    for r in &a.responses {
        sources.push(if r == "-" {
            Source::Stdin
        } else {
            let p = PathBuf::from(r);
            let f = open(&p, "RESPONSE_FILE")?;
            Source::File(p, f)
        });
    }
    if sources.is_empty() {
        sources.push(Source::Stdin);
    }
    for source in sources {
        let record = scan_one(a, source)?;
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
        let text = text.map_err(|e| UsageError(format!("cannot write a record as JSON: {e}")))?;
        writeln!(out, "{text}").map_err(|e| UsageError(format!("write error: {e}")))?;
    }
    Ok(())
}

/// Runs one exchange: the request (re-read for every response), then `source`.
fn scan_one(a: &ScanArgs, source: Source) -> Result<UsageRecord, UsageError> {
    let mut options = exchange_options(a.estimator == Estimator::Chars);
    if let Some(p) = a.provider {
        options = options.provider(p);
    }
    let mut ex = Exchange::with_options(options);
    ex.on_request_head(
        &a.method,
        &a.path,
        a.request_headers.iter().map(|(k, v)| (k, v)),
    );
    if let Some(p) = &a.request {
        let f = open(p, "--request file")?;
        stream(f, |c| ex.on_request_body(c))
            .map_err(|e| UsageError(format!("cannot read --request file {p:?}: {e}")))?;
    }
    ex.on_request_end();
    ex.on_response_head(a.status, a.headers.iter().map(|(k, v)| (k, v)));
    match source {
        Source::File(p, f) => stream(f, |c| ex.on_response_body(c))
            .map_err(|e| UsageError(format!("cannot read RESPONSE_FILE {p:?}: {e}")))?,
        Source::Stdin => stream(io::stdin().lock(), |c| ex.on_response_body(c))
            .map_err(|e| UsageError(format!("cannot read stdin: {e}")))?,
    }
    ex.on_response_end();
    Ok(ex.finish())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = io::stdout().lock();
    let (name, result) = match &cli.command {
        Command::Scan(a) => ("scan", scan(a, &mut out)),
        Command::Report(a) => (
            "report",
            report::run(a.prices.as_deref(), a.json, &a.paths, &mut out),
        ),
        Command::Demo => (
            "demo",
            demo::run(&mut out).map_err(|e| UsageError(format!("write error: {e}"))),
        ),
    };
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(UsageError(msg)) => {
            // clap's error style, with the subcommand's usage line; exit code 2 as for
            // every usage error clap finds itself.
            let mut cmd = Cli::command();
            cmd.build();
            let sub = cmd
                .find_subcommand_mut(name)
                .expect("every Command variant is a subcommand");
            let _ = sub
                .error(clap::error::ErrorKind::ValueValidation, msg)
                .print();
            ExitCode::from(2)
        }
    }
}
