//! The `otlp` example, end to end: its own `main` (the file is this test's module, not a
//! copy) runs without `OPENAI_API_KEY`, so against its loopback mock provider, with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a loopback OTLP/HTTP receiver started here.
//! The receiver decodes the protobuf export requests; the test checks one span per call
//! with the GenAI attributes of the mock's bytes, under the example's parent span.
//!
//! The batch processor's schedule is set to an hour, so the spans can only arrive through
//! the provider's shutdown at the end of `main`: a missing flush fails this test.

#[path = "../examples/otlp.rs"]
mod example;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};

/// What the receiver got: a decoded export request, or why a request was refused.
type Received = Result<ExportTraceServiceRequest, String>;

/// An OTLP/HTTP receiver on a free loopback port of `rt`: `POST /v1/traces` with an
/// `application/x-protobuf` body is decoded and answered `200` with an empty (valid)
/// `ExportTraceServiceResponse`; anything else is reported and answered `400`.
fn start_receiver(rt: &tokio::runtime::Runtime) -> (SocketAddr, mpsc::Receiver<Received>) {
    let (tx, rx) = mpsc::channel();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind loopback");
    let addr = listener.local_addr().expect("receiver address");
    rt.spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    let got = receive(req).await;
                    let status = if got.is_ok() {
                        StatusCode::OK
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    let _ = tx.send(got);
                    let mut res = Response::new(Full::new(Bytes::new()));
                    *res.status_mut() = status;
                    res.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/x-protobuf"),
                    );
                    Ok::<_, Infallible>(res)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), service),
            );
        }
    });
    (addr, rx)
}

async fn receive(req: Request<Incoming>) -> Received {
    let what = format!("{} {}", req.method(), req.uri());
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" {
        return Err(format!("unexpected request {what}"));
    }
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type != "application/x-protobuf" {
        return Err(format!("{what}: content-type {content_type:?}"));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{what}: body: {e}"))?
        .to_bytes();
    ExportTraceServiceRequest::decode(body).map_err(|e| format!("{what}: protobuf: {e}"))
}

/// An attribute value as JSON, to compare with `json!` values.
fn value(kv: &KeyValue) -> Value {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => json!(s),
        Some(Any::IntValue(i)) => json!(i),
        Some(Any::BoolValue(b)) => json!(b),
        Some(Any::DoubleValue(d)) => json!(d),
        other => json!(format!("{other:?}")),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter().map(|kv| (kv.key.clone(), value(kv))).collect()
}

/// The mock's figures, read from its bytes with `serde_json` (not with the parser under
/// test): the response model, `prompt_tokens` and `completion_tokens`.
fn openai_usage(body: &str) -> (Value, Value, Value) {
    let v: Value = serde_json::from_str(body).expect("mock body is JSON");
    (
        v["model"].clone(),
        v["usage"]["prompt_tokens"].clone(),
        v["usage"]["completion_tokens"].clone(),
    )
}

#[test]
fn the_example_exports_one_span_per_call_with_the_gen_ai_attributes() {
    let rt = tokio::runtime::Runtime::new().expect("receiver runtime");
    let (addr, received) = start_receiver(&rt);

    // The example's configuration, through the standard variables only. (This binary has
    // this one test, so nothing else reads the environment meanwhile.)
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "LLM_MODEL",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_EXPORT_TIMEOUT",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    std::env::set_var("OTEL_SERVICE_NAME", "llm-usage-otlp-test");
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "3600000");
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");

    example::main().expect("the example runs");

    // `main` returned after the shutdown's export; wait (bounded) for all three spans.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut requests = Vec::new();
    let mut spans: Vec<(String, String, Span)> = Vec::new();
    while spans.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(Ok(req)) => {
                for rs in &req.resource_spans {
                    let resource = rs
                        .resource
                        .as_ref()
                        .map(|r| attributes(&r.attributes))
                        .unwrap_or_default();
                    let service = resource
                        .get("service.name")
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    for ss in &rs.scope_spans {
                        let scope = ss
                            .scope
                            .as_ref()
                            .map(|s| s.name.clone())
                            .unwrap_or_default();
                        for s in &ss.spans {
                            spans.push((service.clone(), scope.clone(), s.clone()));
                        }
                    }
                }
                requests.push(req);
            }
            Ok(Err(refused)) => panic!("the receiver refused a request: {refused}"),
            Err(_) => panic!(
                "no 3 spans within 60 s of the example's end (the parent and one per call); \
                 {} export requests, spans: {:?}",
                requests.len(),
                spans.iter().map(|(_, _, s)| &s.name).collect::<Vec<_>>()
            ),
        }
    }
    // Anything already queued behind them is an extra span.
    while let Ok(got) = received.try_recv() {
        let got = got.expect("a later request refused");
        for rs in got.resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push((String::new(), String::new(), s));
                }
            }
        }
    }
    let names: Vec<&str> = spans.iter().map(|(_, _, s)| s.name.as_str()).collect();
    assert_eq!(spans.len(), 3, "{names:?}");

    for (service, scope, _) in &spans {
        assert_eq!(service, "\"llm-usage-otlp-test\"", "OTEL_SERVICE_NAME");
        assert_eq!(scope, "llm-usage-reqwest");
    }
    let parent = spans
        .iter()
        .map(|(_, _, s)| s)
        .find(|s| s.name == "llm-usage-reqwest example")
        .unwrap_or_else(|| panic!("no parent span in {names:?}"));
    let exchanges: Vec<&Span> = spans
        .iter()
        .map(|(_, _, s)| s)
        .filter(|s| s.name == "chat")
        .collect();
    assert_eq!(
        exchanges.len(),
        2,
        "one span per call, named by its operation: {names:?}"
    );
    for s in &exchanges {
        // SPAN_KIND_CLIENT in the OTLP enum: the conventions' kind for a model call.
        assert_eq!(s.kind, 3, "span kind of {:?}", s.name);
    }

    let stream_usage = example::mock::CHAT_STREAM
        .iter()
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::trim_end)
        .rfind(|d| d.contains("\"usage\":{"))
        .expect("the mock stream has a usage chunk");
    let cases = [
        (false, openai_usage(example::mock::CHAT_JSON)),
        (true, openai_usage(stream_usage)),
    ];
    for (stream, (model, input, output)) in cases {
        let span = exchanges
            .iter()
            .find(|s| {
                attributes(&s.attributes).get("gen_ai.request.stream") == Some(&json!(stream))
            })
            .unwrap_or_else(|| panic!("no exchange span with gen_ai.request.stream = {stream}"));
        let a = attributes(&span.attributes);
        assert_eq!(a["gen_ai.operation.name"], json!("chat"), "{a:?}");
        assert_eq!(a["gen_ai.provider.name"], json!("openai"), "{a:?}");
        assert_eq!(
            a["gen_ai.request.model"],
            json!(example::DEFAULT_MODEL),
            "{a:?}"
        );
        assert_eq!(a["gen_ai.response.model"], model, "{a:?}");
        assert_eq!(a["gen_ai.usage.input_tokens"], input, "{a:?}");
        assert_eq!(a["gen_ai.usage.output_tokens"], output, "{a:?}");
        assert_eq!(a["complete"], json!(true), "{a:?}");
        assert_eq!(a["estimated"], json!(false), "{a:?}");
        // Inside the example's parent span: one trace.
        assert_eq!(span.trace_id, parent.trace_id);
        assert_eq!(span.parent_span_id, parent.span_id);
    }
    drop(rt);
}
