//! An LLM gateway: an axum reverse proxy with the llm-usage layer on, serving Prometheus text
//! at `/metrics`.
//!
//! ```text
//! cargo run -p llm-usage-tower --example gateway -- --listen 127.0.0.1:8080 --upstream http://127.0.0.1:11434
//! cargo run -p llm-usage-tower --features tls --example gateway -- --upstream https://api.openai.com
//! cargo run -p llm-usage-tower --example gateway -- --listen 127.0.0.1:8080     # built-in mock provider
//! ```
//!
//! Options: `--listen ADDR` (default `127.0.0.1:8080`), `--upstream URL` (an `http://` base URL,
//! or `https://` when built with `--features tls`; without it a built-in mock provider answers OpenAI `/v1/chat/completions` and Anthropic
//! `/v1/messages`, JSON or SSE), `--profile otel|asm` (metric names), `--time-unit s|ms`
//! (durations in seconds or milliseconds, under names that say which: `ms` gives the
//! `llm-usage-wasm` filter's `…_milliseconds` series), `--provider NAME`
//! (force a dialect), `--prices FILE` (a price table: the cost of each exchange in its record
//! line and in the cost counter), `--limits FILE` (token budgets: a JSON list of limits in the
//! filter's shape, `[{"name": "per-key", "key": "header:x-api-key", "tokens": 100000,
//! "window_s": 60, "count": "total"}]`), `--redis URL` (keep the budget counters on a Redis
//! server shared by several gateways instead of in memory).
//!
//! Requests stream to the upstream and responses stream back frame by frame; the layer sees
//! every byte on the way and nothing waits for a whole body. WebSocket upgrades (OpenAI
//! Realtime, Gemini Live) are proxied too: the upgraded connections' bytes are copied both
//! ways through the layer's `realtime::Session`, one record per response the session closes.

// The test suite includes this file as a module and uses only parts of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use llm_usage_cost::{Budgets, PriceTable};
use llm_usage_tower::budget::{MemoryStore, RedisStore};
use llm_usage_tower::realtime::Session;
use llm_usage_tower::{Label, LlmUsageLayer, MetricsConfig, Provider, TimeUnit, UsageEvent};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// A Prometheus recorder with the OpenTelemetry bucket boundaries for `metrics`' histograms.
pub fn prometheus_recorder(metrics: &MetricsConfig) -> PrometheusRecorder {
    metrics
        .install_buckets(PrometheusBuilder::new())
        .expect("the tables' buckets are not empty")
        .build_recorder()
}

/// The gateway's router: `/metrics`, and every other path through `layer` to the upstream (or
/// to the mock provider when `upstream` is `None`).
pub fn app(upstream: Option<Uri>, layer: LlmUsageLayer, prometheus: PrometheusHandle) -> Router {
    let llm = match upstream {
        Some(base) => {
            let client = Client::builder(TokioExecutor::new()).build(connector());
            Router::new()
                .fallback(proxy)
                .with_state(Upstream { base, client })
        }
        None => mock::router(),
    };
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let p = prometheus.clone();
                async move { p.render() }
            }),
        )
        .fallback_service(llm.layer(layer))
}

/// Reads a price table file (`--prices`).
pub fn load_prices(path: &str) -> Result<PriceTable, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read --prices {path:?}: {e}"))?;
    PriceTable::from_json(&text).map_err(|e| format!("--prices {path:?}: {e}"))
}

/// Reads a limits file (`--limits`): a JSON list of limits in the filter's shape.
pub fn load_limits(path: &str) -> Result<Budgets, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read --limits {path:?}: {e}"))?;
    Budgets::from_json(&text).map_err(|e| format!("--limits {path:?}: {e}"))
}

/// Adds prices and budgets to `layer`: budget counters in memory, or on the Redis server
/// at `redis` (shared by every gateway pointing at it).
pub fn with_costs_and_budgets(
    mut layer: LlmUsageLayer,
    prices: Option<PriceTable>,
    limits: Option<Budgets>,
    redis: Option<&str>,
) -> Result<LlmUsageLayer, String> {
    if let Some(table) = prices {
        layer = layer.prices(table);
    }
    match (limits, redis) {
        (Some(b), Some(url)) => {
            let store = RedisStore::new(url).map_err(|e| format!("--redis {url:?}: {e}"))?;
            layer = layer.budgets(b, store);
        }
        (Some(b), None) => layer = layer.budgets(b, MemoryStore::new()),
        (None, Some(_)) => return Err("--redis needs --limits".to_owned()),
        (None, None) => {}
    }
    Ok(layer)
}

#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

#[cfg(feature = "tls")]
fn connector() -> Connector {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build()
}

#[cfg(not(feature = "tls"))]
fn connector() -> Connector {
    HttpConnector::new()
}

#[derive(Clone)]
struct Upstream {
    base: Uri,
    client: Client<Connector, Body>,
}

impl Upstream {
    /// Points a request at the upstream: its path and query after the base URI, and
    /// `host` the upstream's authority. An error when the path makes no URI.
    fn retarget(&self, parts: &mut http::request::Parts) -> Result<(), http::uri::InvalidUri> {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let base = self.base.to_string();
        parts.uri = format!("{}{}", base.trim_end_matches('/'), path).parse()?;
        if let Some(a) = self.base.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
        Ok(())
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Streams the request to the upstream and the response back; a WebSocket upgrade
/// (a realtime session) is proxied by [`proxy_upgrade`].
async fn proxy(State(up): State<Upstream>, req: Request) -> Response {
    if req.headers().contains_key(header::UPGRADE) {
        return proxy_upgrade(up, req).await;
    }
    let (mut parts, body) = req.into_parts();
    if up.retarget(&mut parts).is_err() {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    }
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    match up.client.request(Request::from_parts(parts, body)).await {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            for h in HOP_BY_HOP {
                parts.headers.remove(h);
            }
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("upstream error: {e}\n")).into_response(),
    }
}

/// Proxies an upgrade (a WebSocket: a realtime session): the request goes upstream with
/// its `upgrade` and `connection` headers; when the upstream answers `101`, so does the
/// gateway, and once both connections are upgraded their bytes are copied both ways. When
/// the layer observes the exchange it put a realtime [`Session`] in the request: the
/// client's side is wrapped by it, so that the layer reports every response the session
/// closes and the session's end. Any other answer is passed back as it came.
async fn proxy_upgrade(up: Upstream, mut req: Request) -> Response {
    let session = req.extensions_mut().remove::<Session>();
    let downstream = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    if up.retarget(&mut parts).is_err() {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    }
    // The upgrade's own hop-by-hop headers go on; the others do not.
    for h in HOP_BY_HOP {
        if h != "upgrade" && h != "connection" {
            parts.headers.remove(h);
        }
    }
    let mut res = match up.client.request(Request::from_parts(parts, body)).await {
        Ok(res) => res,
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("upstream error: {e}\n")).into_response()
        }
    };
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = res.into_parts();
        for h in HOP_BY_HOP {
            parts.headers.remove(h);
        }
        return Response::from_parts(parts, Body::new(body));
    }
    let upstream = hyper::upgrade::on(&mut res);
    tokio::spawn(async move {
        let (Ok(client), Ok(server)) = (downstream.await, upstream.await) else {
            return;
        };
        let mut server = TokioIo::new(server);
        let client = TokioIo::new(client);
        let _ = match session {
            Some(s) => tokio::io::copy_bidirectional(&mut s.server_io(client), &mut server).await,
            None => tokio::io::copy_bidirectional(&mut { client }, &mut server).await,
        };
    });
    // The `101` with the upstream's headers (`upgrade`, `connection`,
    // `sec-websocket-accept`, `sec-websocket-extensions`, ...) and no body.
    let (parts, _) = res.into_parts();
    Response::from_parts(parts, Body::empty())
}

/// A body that yields its chunks one by one, waiting the given delay before each.
pub struct Paced {
    chunks: VecDeque<(Duration, Bytes)>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Paced {
    /// Chunks with the delay before each.
    pub fn new(chunks: impl IntoIterator<Item = (Duration, Bytes)>) -> Self {
        Paced {
            chunks: chunks.into_iter().collect(),
            sleep: None,
        }
    }
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let Some((delay, _)) = this.chunks.front() else {
            return Poll::Ready(None);
        };
        if !delay.is_zero() {
            let delay = *delay;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        let (_, chunk) = this.chunks.pop_front().expect("front checked");
        Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// A mock provider speaking just enough OpenAI and Anthropic to exercise the layer.
pub mod mock {
    use super::*;

    /// The words of every mock answer; each is one output token.
    pub const ANSWER: [&str; 8] = [
        "Hello",
        "!",
        " This",
        " is",
        " the",
        " llm-usage",
        " mock",
        " provider.",
    ];

    /// Input tokens the mock reports for a request body: one per 4 bytes, at least 1.
    pub fn input_tokens(body: &[u8]) -> u64 {
        (body.len() as u64 / 4).max(1)
    }

    /// Routes: `POST /v1/chat/completions` and `POST /v1/messages`.
    pub fn router() -> Router {
        Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .fallback(|| async { (StatusCode::NOT_FOUND, "{\"error\":\"not found\"}") })
    }

    fn bad_json(e: serde_json::Error) -> Response {
        (
            StatusCode::BAD_REQUEST,
            format!("{{\"error\":\"bad json: {e}\"}}"),
        )
            .into_response()
    }

    fn sse(events: Vec<String>) -> Response {
        let chunks = events
            .into_iter()
            .map(|e| (Duration::from_millis(15), Bytes::from(e)));
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::new(Paced::new(chunks)))
            .expect("valid response")
    }

    fn json(v: serde_json::Value) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            v.to_string(),
        )
            .into_response()
    }

    async fn openai(body: Bytes) -> Response {
        let req: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return bad_json(e),
        };
        let model = req["model"].as_str().unwrap_or("gpt-4o-mini").to_owned();
        let input = input_tokens(&body);
        let output = ANSWER.len() as u64;
        let usage = serde_json::json!({
            "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
        });
        if req["stream"] != serde_json::Value::Bool(true) {
            return json(serde_json::json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER.concat()},
                             "finish_reason": "stop"}],
                "usage": usage,
            }));
        }
        let include_usage = req["stream_options"]["include_usage"] == serde_json::Value::Bool(true);
        let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
            let mut c = serde_json::json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            });
            if include_usage {
                c["usage"] = serde_json::Value::Null;
            }
            format!("data: {c}\n\n")
        };
        let mut events = vec![chunk(
            serde_json::json!({"role": "assistant", "content": ""}),
            serde_json::Value::Null,
        )];
        for w in ANSWER {
            events.push(chunk(
                serde_json::json!({"content": w}),
                serde_json::Value::Null,
            ));
        }
        events.push(chunk(serde_json::json!({}), "stop".into()));
        if include_usage {
            let last = serde_json::json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [], "usage": usage,
            });
            events.push(format!("data: {last}\n\n"));
        }
        events.push("data: [DONE]\n\n".to_owned());
        sse(events)
    }

    async fn anthropic(body: Bytes) -> Response {
        let req: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return bad_json(e),
        };
        let model = req["model"]
            .as_str()
            .unwrap_or("claude-3-5-haiku-latest")
            .to_owned();
        let input = input_tokens(&body);
        let output = ANSWER.len() as u64;
        if req["stream"] != serde_json::Value::Bool(true) {
            return json(serde_json::json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": ANSWER.concat()}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": input, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "output_tokens": output},
            }));
        }
        let ev = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
        let mut events = vec![
            ev(
                "message_start",
                serde_json::json!({"type": "message_start", "message": {
                    "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": input, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": 1}}}),
            ),
            ev(
                "content_block_start",
                serde_json::json!({"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}}),
            ),
        ];
        for w in ANSWER {
            events.push(ev(
                "content_block_delta",
                serde_json::json!({"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": w}}),
            ));
        }
        events.push(ev(
            "content_block_stop",
            serde_json::json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(ev(
            "message_delta",
            serde_json::json!({"type": "message_delta",
                               "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                               "usage": {"output_tokens": output}}),
        ));
        events.push(ev(
            "message_stop",
            serde_json::json!({"type": "message_stop"}),
        ));
        sse(events)
    }
}

struct Args {
    listen: SocketAddr,
    upstream: Option<Uri>,
    profile: String,
    time_unit: Option<TimeUnit>,
    provider: Option<Provider>,
    inject_include_usage: bool,
    prices: Option<String>,
    limits: Option<String>,
    redis: Option<String>,
}

const USAGE: &str =
    "usage: gateway [--listen ADDR] [--upstream http(s)://HOST[:PORT]] [--profile otel|asm] [--time-unit s|ms] [--provider NAME] [--inject-include-usage] [--prices FILE] [--limits FILE [--redis URL]]";

fn usage_exit(msg: &str) -> ! {
    eprintln!("gateway: {msg}");
    eprintln!("{USAGE}");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        listen: "127.0.0.1:8080".parse().expect("valid default"),
        upstream: None,
        profile: "otel".to_owned(),
        time_unit: None,
        provider: None,
        inject_include_usage: false,
        prices: None,
        limits: None,
        redis: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage_exit(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--listen" => {
                args.listen = value()
                    .parse()
                    .unwrap_or_else(|e| usage_exit(&format!("bad --listen: {e}")))
            }
            "--upstream" => {
                let u: Uri = value()
                    .parse()
                    .unwrap_or_else(|e| usage_exit(&format!("bad --upstream: {e}")));
                match u.scheme_str() {
                    Some("http") => {}
                    Some("https") if cfg!(feature = "tls") => {}
                    Some("https") => usage_exit(
                        "https:// upstreams need the `tls` feature: cargo run -p llm-usage-tower --features tls --example gateway -- ...",
                    ),
                    _ => usage_exit("--upstream must be an http:// or https:// URL"),
                }
                args.upstream = Some(u);
            }
            "--profile" => args.profile = value(),
            "--time-unit" => {
                args.time_unit = Some(match value().as_str() {
                    "s" => TimeUnit::Seconds,
                    "ms" => TimeUnit::Milliseconds,
                    v => usage_exit(&format!("bad --time-unit {v:?}: s or ms")),
                })
            }
            "--provider" => {
                let v = value();
                args.provider = Some(
                    Provider::from_name(&v)
                        .unwrap_or_else(|| usage_exit(&format!("unknown provider {v:?}"))),
                );
            }
            "--inject-include-usage" => args.inject_include_usage = true,
            "--prices" => args.prices = Some(value()),
            "--limits" => args.limits = Some(value()),
            "--redis" => args.redis = Some(value()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => usage_exit(&format!("unknown argument {other:?}")),
        }
    }
    args
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let metrics = match args.profile.as_str() {
        "otel" => MetricsConfig::otel(),
        // In a gateway the destination is the upstream, not the Host the client used.
        "asm" => MetricsConfig::asm("gateway", "default").label(Label::constant(
            "llmproxy_destination_service",
            args.upstream
                .as_ref()
                .and_then(|u| u.authority())
                .map_or("mock", |a| a.as_str()),
        )),
        p => usage_exit(&format!("unknown profile {p:?}")),
    };
    let metrics = match args.time_unit {
        Some(unit) => metrics.time_unit(unit),
        None => metrics,
    };
    let prices = args
        .prices
        .as_deref()
        .map(load_prices)
        .transpose()
        .unwrap_or_else(|e| usage_exit(&e));
    let limits = args
        .limits
        .as_deref()
        .map(load_limits)
        .transpose()
        .unwrap_or_else(|e| usage_exit(&e));
    let recorder = prometheus_recorder(&metrics);
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("first recorder");
    let mut layer = LlmUsageLayer::new()
        .metrics(metrics)
        .on_record(|ev: &UsageEvent| {
            let r = &ev.record;
            eprintln!(
                "{} {} status={} outcome={} provider={} model={} in={:?} out={:?} cached={:?} reasoning={:?} complete={} {:?}",
                ev.method,
                ev.uri.path(),
                ev.status.map(|s| s.as_u16()).unwrap_or(0),
                ev.outcome.as_str(),
                r.provider.map(|p| p.as_str()).unwrap_or("-"),
                r.model.as_deref().unwrap_or("-"),
                r.input_tokens,
                r.output_tokens,
                r.cached_input_tokens,
                r.reasoning_tokens,
                r.complete,
                ev.duration,
            );
            if let Some(p) = &ev.pricing {
                match (p.amount(), &ev.currency) {
                    (Some(a), Some(c)) => eprintln!("  cost={a} {c}"),
                    _ => eprintln!("  cost=unknown ({p:?})"),
                }
            }
        });
    if let Some(p) = args.provider {
        layer = layer.provider(p);
    }
    layer = layer.inject_include_usage(args.inject_include_usage);
    let budgets = limits.as_ref().map_or(0, |b| b.limits().len());
    layer = with_costs_and_budgets(layer, prices, limits, args.redis.as_deref())
        .unwrap_or_else(|e| usage_exit(&e));
    layer.describe_metrics();
    // Periodic upkeep keeps the Prometheus histograms' memory bounded.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .unwrap_or_else(|e| usage_exit(&format!("cannot listen on {}: {e}", args.listen)));
    match &args.upstream {
        Some(u) => eprintln!("gateway: http://{} -> {u}", args.listen),
        None => eprintln!("gateway: http://{} -> built-in mock provider", args.listen),
    }
    eprintln!("gateway: metrics at http://{}/metrics", args.listen);
    if budgets > 0 {
        let store = args.redis.as_deref().unwrap_or("memory");
        eprintln!("gateway: {budgets} token limit(s), counters in {store}");
    }
    axum::serve(listener, app(args.upstream, layer, handle))
        .await
        .expect("server error");
}
