//! Client middleware: the layer around a hyper-util client, so an application that *calls* an
//! LLM API records its own token usage.
//!
//! ```text
//! cargo run -p llm-usage-tower --example client                        # against the built-in mock
//! cargo run -p llm-usage-tower --example client -- http://127.0.0.1:8080  # against a server you run
//! ```
//!
//! It sends one streamed OpenAI chat completion and one streamed Anthropic message, prints
//! each record from the `OnRecord` callback, then the Prometheus text of the metrics.

#[path = "gateway.rs"]
mod gateway;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_usage_tower::{LlmUsageLayer, MetricsConfig, RequestBody, UsageEvent};
use tower::{Layer, Service, ServiceExt};

#[tokio::main]
async fn main() {
    let base = match std::env::args().nth(1) {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            // Serve the gateway example's mock provider on an ephemeral loopback port.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, gateway::mock::router()).await });
            format!("http://{addr}")
        }
    };

    let metrics = MetricsConfig::otel();
    let recorder = gateway::prometheus_recorder(&metrics);
    let prometheus = recorder.handle();

    // The client's body type is the layer's RequestBody around the application's body type.
    let client: Client<HttpConnector, RequestBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut llm = LlmUsageLayer::new()
        .metrics(metrics)
        .recorder(recorder)
        .on_record(|ev: &UsageEvent| {
            println!(
                "record: {} {} model={:?} input={:?} output={:?} complete={}",
                ev.method,
                ev.uri,
                ev.record.model,
                ev.record.input_tokens,
                ev.record.output_tokens,
                ev.record.complete
            )
        })
        .layer(client);

    for (path, body) in [
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#,
        ),
        (
            "/v1/messages",
            r#"{"model":"claude-3-5-haiku-latest","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#,
        ),
    ] {
        let req = Request::post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let res = llm.ready().await.unwrap().call(req).await.unwrap();
        // Stream the answer; the record is emitted when the body ends.
        let mut body = res.into_body();
        let mut bytes = 0;
        while let Some(frame) = body.frame().await {
            bytes += frame.unwrap().data_ref().map_or(0, |d| d.len());
        }
        println!("{path}: {bytes} response bytes streamed");
    }

    println!("\n{}", prometheus.render());
}
