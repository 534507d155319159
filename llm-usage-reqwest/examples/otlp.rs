//! The middleware's `tracing` spans exported to an OpenTelemetry collector over OTLP:
//! `tracing-subscriber` with a `tracing-opentelemetry` layer, and an `opentelemetry-otlp`
//! span exporter (HTTP, protobuf bodies) configured by the standard environment variables.
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 OTEL_SERVICE_NAME=my-app \
//!     cargo run -p llm-usage-reqwest --example otlp
//! ```
//!
//! Two chat completions go through [`LlmUsageMiddleware`], one answered as JSON and one
//! streamed, inside one parent span, so the collector receives one trace: the parent and
//! one `gen_ai.exchange` span per call with the GenAI attributes (`gen_ai.provider.name`,
//! `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.input_tokens`, …).
//!
//! - With `OPENAI_API_KEY` set, the calls go to OpenAI (`OPENAI_BASE_URL`, default
//!   `https://api.openai.com/v1`, needs `--features tls`; `LLM_MODEL`, default
//!   `gpt-4o-mini`).
//! - Without it, they go to a mock provider this example starts on loopback, which answers
//!   with OpenAI's bytes (a JSON completion, an event stream with the usage chunk), so the
//!   example runs anywhere.
//!
//! The exporter reads `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4318`; the
//! spans go to its `/v1/traces`), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL, wins
//! over the former), `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_EXPORTER_OTLP_TIMEOUT`; the
//! resource reads `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; the batch processor
//! reads `OTEL_BSP_*`. The tracer provider is flushed and shut down before the program
//! ends: without that, the spans still batched are lost at exit. The example fails when
//! the collector did not take them.
//!
//! In an application, turn on this crate's `tracing` feature (here the dev-dependencies
//! turn the span on).

use std::error::Error;
use std::time::Duration;

use llm_usage_reqwest::{LlmUsageMiddleware, UsageEvent};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Instrument;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` gives one.
const DEFAULT_SERVICE_NAME: &str = "llm-usage-reqwest-example";
/// The model asked for when `LLM_MODEL` is not set.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// Sets up the exporter, makes the calls, then shuts the tracer provider down (flushing the
/// spans) whether the calls succeeded or not. (`pub`: `tests/otlp.rs` runs this function
/// against a loopback OTLP receiver.)
#[tokio::main]
pub async fn main() -> Result<(), Failure> {
    let provider = init_tracing()?;
    let calls = calls().await;
    // Exports what the batch processor still holds (its result says whether the collector
    // took the spans: the shutdown's does not), then stops the processor's thread.
    let flushed = provider.force_flush();
    let shutdown = provider.shutdown();
    calls?;
    flushed.map_err(|e| {
        Failure(format!(
            "the spans were not exported (is a collector listening?): {e}"
        ))
    })?;
    shutdown?;
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .unwrap_or_else(|_| "http://localhost:4318".to_owned());
    println!("The spans went to the collector at {endpoint}.");
    Ok(())
}

/// An error shown as its message: `main`'s error is printed with `Debug`.
pub struct Failure(String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// The OTLP/HTTP span exporter, a batching tracer provider, and the global `tracing`
/// subscriber that turns `info` spans and above into OpenTelemetry spans.
fn init_tracing() -> Result<SdkTracerProvider, Box<dyn Error>> {
    // HTTP with protobuf bodies through reqwest's blocking client (the crate's defaults):
    // the batch processor exports from a thread of its own, outside any async runtime.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let mut resource = Resource::builder().build();
    let named = resource
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    if !named {
        resource = Resource::builder()
            .with_service_name(DEFAULT_SERVICE_NAME)
            .build();
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("llm-usage-reqwest");
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(LevelFilter::INFO),
        )
        .try_init()?;
    Ok(provider)
}

/// A JSON and a streamed chat completion through the middleware, in one parent span.
async fn calls() -> Result<(), Box<dyn Error>> {
    let (base, key) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) => {
            let base = std::env::var("OPENAI_BASE_URL")
                .unwrap_or_else(|_| "https://api.openai.com/v1".to_owned());
            if base.starts_with("https:") && !cfg!(feature = "tls") {
                println!("{base} needs TLS: run with `--features tls`. Nothing was called.");
                return Ok(());
            }
            (base, key)
        }
        Err(_) => {
            let addr = mock::start().await?;
            println!("OPENAI_API_KEY is not set: calling a mock provider on {addr}.");
            (format!("http://{addr}/v1"), "mock".to_owned())
        }
    };
    let model = std::env::var("LLM_MODEL").unwrap_or_else(|_| DEFAULT_MODEL.to_owned());
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
    )
    .with(
        LlmUsageMiddleware::new()
            .without_metrics()
            .on_record(|ev: &UsageEvent| {
                let r = &ev.record;
                println!(
                    "usage: {:?} in={:?} out={:?} complete={}",
                    r.model, r.input_tokens, r.output_tokens, r.complete
                );
            }),
    )
    .build();
    let url = format!("{base}/chat/completions");

    async {
        for stream in [false, true] {
            let mut body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "Name the largest moon of Saturn."}],
            });
            if stream {
                body["stream"] = true.into();
                body["stream_options"] = serde_json::json!({"include_usage": true});
            }
            let res = client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await?
                .error_for_status()?;
            // The exchange's span closes when its body ends, here.
            let body = res.bytes().await?;
            println!("{} bytes of response (stream: {stream})", body.len());
        }
        Ok::<_, Box<dyn Error>>(())
    }
    .instrument(tracing::info_span!("llm-usage-reqwest example"))
    .await
}

/// A mock OpenAI on loopback: `POST /v1/chat/completions` answers [`CHAT_JSON`], or the
/// events of [`CHAT_STREAM`] one frame each when the request says `"stream": true`.
///
/// [`CHAT_JSON`]: mock::CHAT_JSON
/// [`CHAT_STREAM`]: mock::CHAT_STREAM
pub mod mock {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::combinators::BoxBody;
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::{Frame, Incoming};
    use hyper::header::HeaderValue;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    /// A chat completion as OpenAI answers it without `stream`.
    pub const CHAT_JSON: &str = r#"{
  "id": "chatcmpl-C2kq7uQ0bT4nVx8mYp3RzL1aWd9Hs",
  "object": "chat.completion",
  "created": 1765100000,
  "model": "gpt-4o-mini-2024-07-18",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Titan is the largest moon of Saturn.",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 15,
    "completion_tokens": 9,
    "total_tokens": 24,
    "prompt_tokens_details": {
      "cached_tokens": 0,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_560af6e559"
}
"#;

    /// The events of a streamed chat completion with `stream_options.include_usage`: the
    /// deltas, the finish, then a chunk without choices that carries the usage.
    pub const CHAT_STREAM: &[&str] = &[
        "data: {\"id\":\"chatcmpl-C2kq9Fh2sNw6Yb0cJr5TqM7eUx4Kp\",\"object\":\"chat.completion.chunk\",\"created\":1765100002,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"q3Zk\"}\n\n",
        "data: {\"id\":\"chatcmpl-C2kq9Fh2sNw6Yb0cJr5TqM7eUx4Kp\",\"object\":\"chat.completion.chunk\",\"created\":1765100002,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Titan\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"Vb\"}\n\n",
        "data: {\"id\":\"chatcmpl-C2kq9Fh2sNw6Yb0cJr5TqM7eUx4Kp\",\"object\":\"chat.completion.chunk\",\"created\":1765100002,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" is\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"x8Lw1\"}\n\n",
        "data: {\"id\":\"chatcmpl-C2kq9Fh2sNw6Yb0cJr5TqM7eUx4Kp\",\"object\":\"chat.completion.chunk\",\"created\":1765100002,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" Saturn's\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"\"}\n\n",
        "data: {\"id\":\"chatcmpl-C2kq9Fh2sNw6Yb0cJr5TqM7eUx4Kp\",\"object\":\"chat.completion.chunk\",\"created\":1765100002,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" largest moon.\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"Jd\"}\n\n",
        "data: {\"id\":\"chatcmpl-C2kq9Fh2sNw6Yb0cJr5TqM7eUx4Kp\",\"object\":\"chat.completion.chunk\",\"created\":1765100002,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null,\"obfuscation\":\"m0QeT\"}\n\n",
        "data: {\"id\":\"chatcmpl-C2kq9Fh2sNw6Yb0cJr5TqM7eUx4Kp\",\"object\":\"chat.completion.chunk\",\"created\":1765100002,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":[],\"usage\":{\"prompt_tokens\":15,\"completion_tokens\":7,\"total_tokens\":22,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}},\"obfuscation\":\"7Rc\"}\n\n",
        "data: [DONE]\n\n",
    ];

    type Body = BoxBody<Bytes, Infallible>;

    /// Listens on a free loopback port and serves until the runtime ends; returns the
    /// address.
    pub async fn start() -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), hyper::service::service_fn(answer)),
                );
            }
        });
        Ok(addr)
    }

    async fn answer(req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
        if req.method() != hyper::Method::POST || req.uri().path() != "/v1/chat/completions" {
            return Ok(reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                Full::default().boxed(),
            ));
        }
        let body = req.into_body().collect().await?.to_bytes();
        let stream = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["stream"].as_bool())
            .unwrap_or(false);
        Ok(if stream {
            let frames = CHAT_STREAM
                .iter()
                .map(|e| Ok(Frame::data(Bytes::from_static(e.as_bytes()))));
            reply(
                StatusCode::OK,
                "text/event-stream; charset=utf-8",
                StreamBody::new(futures_util::stream::iter(frames)).boxed(),
            )
        } else {
            reply(
                StatusCode::OK,
                "application/json",
                Full::new(Bytes::from_static(CHAT_JSON.as_bytes())).boxed(),
            )
        })
    }

    fn reply(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
        let mut res = Response::new(body);
        *res.status_mut() = status;
        res.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        res
    }
}
