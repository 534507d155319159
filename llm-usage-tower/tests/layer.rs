//! In-memory tests of the layer: body pass-through, exactly-once emission, partial records,
//! errors, metric names and label caps. No network.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::{fixture_request, irregular_chunks, Events, Fixture, FixtureExt, FramesBody};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use llm_usage_testkit::{prom_sum, PARTS, PART_FIXTURES};
use llm_usage_tower::{
    Label, LlmUsageLayer, MetricsConfig, Outcome, Provider, RequestBody, TokenMetric,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::{Layer, Service, ServiceExt};

fn prometheus() -> (
    metrics_exporter_prometheus::PrometheusRecorder,
    PrometheusHandle,
) {
    let rec = PrometheusBuilder::new().build_recorder();
    let handle = rec.handle();
    (rec, handle)
}

/// A service that reads the whole request body, then answers with the fixture's response in
/// irregular chunks (plus `extra` frames at the end).
fn fixture_service(
    fx: &Fixture,
    extra: fn() -> Vec<Result<Frame<Bytes>, std::io::Error>>,
) -> impl Service<
    Request<RequestBody<Full<Bytes>>>,
    Response = Response<FramesBody>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    let status = fx.status();
    let headers = fx.response_headers();
    let chunks = irregular_chunks(&fx.response, 7, 53);
    tower::service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        let headers = headers.clone();
        let mut frames: Vec<_> = chunks.iter().cloned().map(|c| Ok(Frame::data(c))).collect();
        frames.extend(extra());
        async move {
            let _ = req.into_body().collect().await.expect("request body");
            let mut res = Response::new(FramesBody::new(frames));
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            *res.headers_mut() = headers;
            Ok::<_, Infallible>(res)
        }
    })
}

#[tokio::test]
async fn openai_stream_passes_unchanged_and_records_once() {
    let fx = Fixture::load("02-openai-chat-stream-usage");
    let events = Events::default();
    let (rec, handle) = prometheus();
    let layer = LlmUsageLayer::new()
        .recorder(rec)
        .on_record(events.callback());
    let svc = layer.layer(fixture_service(&fx, Vec::new));
    let res = svc.oneshot(fixture_request(&fx)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], &fx.response[..], "body changed");
    // The record is emitted as the body yields its end, before `collect` returns.
    let evs = events.all();
    assert_eq!(evs.len(), 1, "exactly one record");
    let ev = &evs[0];
    assert_eq!(ev.outcome, Outcome::Complete);
    assert_eq!(ev.response_body_bytes, fx.response.len() as u64);
    assert_eq!(ev.request_body_bytes, fx.request.len() as u64);
    let r = &ev.record;
    assert!(r.complete);
    assert_eq!(r.provider, Some(Provider::OpenAi));
    assert_eq!(r.model, fx.expect_model());
    assert_eq!(r.request_model.as_deref(), Some("gpt-4o"));
    assert_eq!(r.stream, Some(true));
    assert_eq!(r.input_tokens, Some(16));
    assert_eq!(r.output_tokens, Some(6));
    assert_eq!(r.total_tokens, Some(22));
    assert!(ev.time_to_first_byte.is_some());

    let text = handle.render();
    let lbl = [
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_request_model", "gpt-4o"),
        ("gen_ai_response_model", "gpt-4o-2024-08-06"),
        ("http_status_class", "2xx"),
    ];
    assert_eq!(prom_sum(&text, "llm_usage_requests_total", &lbl), Some(1.0));
    let with = |t: &'static str| {
        let mut v = lbl.to_vec();
        v.push(("gen_ai_token_type", t));
        v
    };
    assert_eq!(
        prom_sum(&text, "llm_usage_tokens_total", &with("input")),
        Some(16.0)
    );
    assert_eq!(
        prom_sum(&text, "llm_usage_tokens_total", &with("output")),
        Some(6.0)
    );
    assert_eq!(
        prom_sum(&text, "gen_ai_client_token_usage_sum", &with("output")),
        Some(6.0)
    );
    assert_eq!(
        prom_sum(&text, "gen_ai_client_token_usage_count", &with("input")),
        Some(1.0)
    );
    assert_eq!(
        prom_sum(&text, "gen_ai_server_request_duration_seconds_count", &lbl),
        Some(1.0)
    );
    assert_eq!(
        prom_sum(
            &text,
            "gen_ai_server_time_to_first_token_seconds_count",
            &lbl
        ),
        Some(1.0)
    );
    assert_eq!(
        prom_sum(
            &text,
            "gen_ai_server_time_per_output_token_seconds_count",
            &lbl
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn trailers_and_size_hint_pass_through() {
    let fx = Fixture::load("11-anthropic-messages-basic");
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .on_record(events.callback());
    let svc = layer.layer(fixture_service(&fx, || {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        vec![Ok(Frame::trailers(trailers))]
    }));
    let res = svc.oneshot(fixture_request(&fx)).await.unwrap();
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(
        collected.trailers().and_then(|t| t.get("x-checksum")),
        Some(&"abc".parse().unwrap())
    );
    assert_eq!(&collected.to_bytes()[..], &fx.response[..]);
    let evs = events.wait_for(1).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].record.input_tokens, fx.expect_u64("input_tokens"));
    assert_eq!(evs[0].record.output_tokens, fx.expect_u64("output_tokens"));
    assert!(evs[0].labels.is_empty(), "no metrics, no labels");

    // Size hints of both wrappers are the inner body's.
    let body = llm_usage_tower::ResponseBody::unobserved(Full::new(Bytes::from_static(b"12345")));
    assert_eq!(body.size_hint().exact(), Some(5));
}

#[tokio::test]
async fn dropped_response_body_gives_partial_record() {
    let fx = Fixture::load("12-anthropic-messages-stream");
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .on_record(events.callback());
    let svc = layer.layer(fixture_service(&fx, Vec::new));
    let res = svc.oneshot(fixture_request(&fx)).await.unwrap();
    let mut body = res.into_body();
    // Read past the message_start event, then hang up.
    let cut = fx
        .response
        .windows(b"content_block_start".len())
        .position(|w| w == b"content_block_start")
        .unwrap();
    let mut seen = 0;
    while seen < cut + 200 {
        let f = body.frame().await.unwrap().unwrap();
        seen += f.data_ref().map(|d| d.len()).unwrap_or(0);
    }
    assert_eq!(events.len(), 0, "nothing before the end");
    drop(body);
    let evs = events.all();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].outcome, Outcome::Dropped);
    assert!(!evs[0].record.complete);
    assert_eq!(evs[0].record.input_tokens, Some(25));
    assert_eq!(
        evs[0].record.model.as_deref(),
        Some("claude-3-5-haiku-20241022")
    );
    assert_eq!(evs[0].response_body_bytes, seen as u64);
}

#[tokio::test]
async fn body_error_passes_through_and_is_recorded() {
    let fx = Fixture::load("12-anthropic-messages-stream");
    let events = Events::default();
    let (rec, handle) = prometheus();
    let layer = LlmUsageLayer::new()
        .recorder(rec)
        .metrics(MetricsConfig::otel().label(Label::outcome("outcome")))
        .on_record(events.callback());
    let svc = layer.layer(fixture_service(&fx, || {
        vec![Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "upstream reset",
        ))]
    }));
    let res = svc.oneshot(fixture_request(&fx)).await.unwrap();
    let Err(e) = res.into_body().collect().await else {
        panic!("the body error must pass through")
    };
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    let evs = events.all();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].outcome, Outcome::BodyError);
    assert!(!evs[0].record.complete);
    assert_eq!(evs[0].record.output_tokens, Some(31));
    assert_eq!(
        prom_sum(
            &handle.render(),
            "llm_usage_requests_total",
            &[("outcome", "body_error")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn service_error_and_cancelled_future_are_recorded() {
    let events = Events::default();
    let (rec, handle) = prometheus();
    let layer = LlmUsageLayer::new()
        .recorder(rec)
        .on_record(events.callback());
    let failing = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::other("no upstream"))
    });
    let req = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"gpt-4o","messages":[]}"#,
        )))
        .unwrap();
    let err = layer.layer(failing).oneshot(req).await.unwrap_err();
    assert_eq!(err.to_string(), "no upstream");
    let evs = events.all();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].outcome, Outcome::ServiceError);
    assert_eq!(evs[0].status, None);
    assert_eq!(evs[0].label("http_status_class"), Some("error"));
    assert_eq!(
        prom_sum(
            &handle.render(),
            "llm_usage_requests_total",
            &[("http_status_class", "error")]
        ),
        Some(1.0)
    );

    // A response future dropped before the inner service answered.
    let pending = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>().await
    });
    let mut svc = layer.layer(pending);
    let fut = svc.call(Request::new(Full::new(Bytes::new())));
    drop(fut);
    let evs = events.all();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[1].outcome, Outcome::Cancelled);
}

#[tokio::test]
async fn empty_response_body_is_complete_without_being_polled() {
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .on_record(events.callback());
    let svc = layer.layer(tower::service_fn(
        |_req: Request<RequestBody<Full<Bytes>>>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(204)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        },
    ));
    let res = svc
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .unwrap();
    assert!(res.body().is_end_stream());
    drop(res);
    let evs = events.all();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].outcome, Outcome::Complete);
    assert_eq!(evs[0].status, Some(StatusCode::NO_CONTENT));
}

#[tokio::test]
async fn filter_skips_unobserved_requests() {
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .on_record(events.callback())
        .filter(|p: &http::request::Parts| p.uri.path().starts_with("/v1/"));
    let svc = layer.layer(tower::service_fn(
        |req: Request<RequestBody<Full<Bytes>>>| async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        },
    ));
    let res = svc
        .clone()
        .oneshot(
            Request::get("/healthz")
                .body(Full::new(Bytes::from("ok")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        &res.into_body().collect().await.unwrap().to_bytes()[..],
        b"ok"
    );
    assert_eq!(events.len(), 0);
    let res = svc
        .oneshot(
            Request::post("/v1/x")
                .body(Full::new(Bytes::from("{}")))
                .unwrap(),
        )
        .await
        .unwrap();
    let _ = res.into_body().collect().await.unwrap();
    assert_eq!(events.len(), 1);
}

/// A service answering every request with an OpenAI JSON completion naming the request's model.
fn echo_model_service() -> impl Service<
    Request<RequestBody<Full<Bytes>>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|req: Request<RequestBody<Full<Bytes>>>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let out = serde_json::json!({
            "id": "x", "object": "chat.completion", "model": v["model"],
            "choices": [],
            "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
        });
        let mut res = Response::new(Full::new(Bytes::from(out.to_string())));
        res.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok::<_, Infallible>(res)
    })
}

async fn call_model(
    svc: &mut impl Service<
        Request<Full<Bytes>>,
        Response = Response<llm_usage_tower::ResponseBody<Full<Bytes>>>,
        Error = Infallible,
    >,
    model: &str,
) {
    let req = Request::post("/v1/chat/completions")
        .header("host", "llm.internal:8000")
        .header("user-type", "subscriber")
        .body(Full::new(Bytes::from(format!(
            r#"{{"model":"{model}","messages":[]}}"#
        ))))
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let _ = res.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn model_labels_are_capped_and_allow_listed() {
    let (rec, handle) = prometheus();
    let layer = LlmUsageLayer::new().recorder(rec).metrics(
        MetricsConfig::otel()
            .labels([Label::model("model")])
            .model_allow_list(["gpt-4o"])
            .max_models(2),
    );
    let mut svc = layer.layer(echo_model_service());
    for m in ["m1", "m2", "m3", "m4\\nevil", "gpt-4o", "m1", "m5"] {
        call_model(&mut svc, m).await;
    }
    let text = handle.render();
    let req = |m: &str| prom_sum(&text, "llm_usage_requests_total", &[("model", m)]);
    assert_eq!(req("gpt-4o"), Some(1.0));
    assert_eq!(req("m1"), Some(2.0));
    assert_eq!(req("m2"), Some(1.0));
    assert_eq!(req("m3"), None);
    assert_eq!(req("other"), Some(3.0));
    let series = text
        .lines()
        .filter(|l| l.starts_with("llm_usage_requests_total{"))
        .count();
    assert_eq!(series, 4, "{text}");
}

#[tokio::test]
async fn asm_profile_uses_envoy_style_names_and_labels() {
    let (rec, handle) = prometheus();
    let layer = LlmUsageLayer::new()
        .recorder(rec)
        .metrics(MetricsConfig::asm("sleep", "default"));
    let mut svc = layer.layer(echo_model_service());
    call_model(&mut svc, "qwen-turbo").await;
    call_model(&mut svc, "qwen-turbo").await;
    let text = handle.render();
    assert!(
        text.lines().any(|l| l
            == "asm_llm_proxy_prompt_tokens{llmproxy_source_workload=\"sleep\",llmproxy_source_workload_namespace=\"default\",llmproxy_destination_service=\"llm.internal:8000\",llmproxy_model=\"qwen-turbo\"} 4"),
        "{text}"
    );
    let lbl = [("llmproxy_model", "qwen-turbo")];
    assert_eq!(
        prom_sum(&text, "asm_llm_proxy_completion_tokens", &lbl),
        Some(6.0)
    );
    assert_eq!(prom_sum(&text, "asm_llm_proxy_requests", &lbl), Some(2.0));
    assert!(!text.contains("gen_ai_"), "{text}");
}

#[tokio::test]
async fn custom_names_header_and_extension_labels() {
    #[derive(Clone)]
    struct Tenant(&'static str);
    impl std::fmt::Display for Tenant {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    let (rec, handle) = prometheus();
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .recorder(rec)
        .on_record(events.callback())
        .metrics(
            MetricsConfig::otel()
                .token_counter(TokenMetric::labelled("tokens", "kind"))
                .token_histogram(TokenMetric::Off)
                .requests_counter(Some("calls"))
                .label(Label::header("user_type", "user-type"))
                .label(Label::extension::<Tenant>("tenant")),
        );
    let svc = layer.layer(echo_model_service());
    let mut req = Request::post("/v1/chat/completions")
        .header("user-type", "subscriber")
        .body(Full::new(Bytes::from(r#"{"model":"gpt-4o"}"#)))
        .unwrap();
    req.extensions_mut().insert(Tenant("acme"));
    let res = svc.oneshot(req).await.unwrap();
    let _ = res.into_body().collect().await.unwrap();
    let text = handle.render();
    let lbl = [
        ("user_type", "subscriber"),
        ("tenant", "acme"),
        ("kind", "output"),
    ];
    assert_eq!(prom_sum(&text, "tokens", &lbl), Some(3.0), "{text}");
    assert_eq!(prom_sum(&text, "calls", &lbl[..2]), Some(1.0));
    assert!(!text.contains("gen_ai_client_token_usage"));
    assert_eq!(events.all()[0].label("tenant"), Some("acme"));
}

/// Every fixture of the corpus, streamed through the layer in irregular chunks, gives the
/// record its `case.json` expects, and its bytes unchanged.
#[tokio::test]
async fn every_fixture_gives_its_expected_record_through_the_layer() {
    let names = llm_usage_testkit::fixture_names();
    assert!(names.len() >= 40, "fixtures missing: {names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let fx = Fixture::load(name);
        let events = Events::default();
        let layer = LlmUsageLayer::new()
            .without_metrics()
            .on_record(events.callback());
        let res = layer
            .layer(fixture_service(&fx, Vec::new))
            .oneshot(fixture_request(&fx))
            .await
            .unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], &fx.response[..], "{name}: body changed");
        let evs = events.all();
        assert_eq!(evs.len(), 1, "{name}: one record");
        let r = &evs[0].record;
        let got = fx.as_expected(r);
        // `complete` is expected only where a fixture states it; otherwise complete unless
        // truncated.
        let want_complete = fx.case["expect"]["complete"]
            .as_bool()
            .unwrap_or(!name.contains("truncated"));
        if r.complete != want_complete {
            failures.push(format!("{name}: complete {}", r.complete));
        }
        if got != fx.expect() {
            failures.push(format!("{name}: got {got}, want {}", fx.expect()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Bodies whose `Data` is not one contiguous slice are observed segment by segment; past what
/// can be seen without consuming (64 segments), the record keeps what was known and is partial.
#[tokio::test]
async fn segmented_buffers_are_observed_or_marked_partial() {
    use bytes::Buf;
    let fx = Fixture::load("02-openai-chat-stream-usage");
    let run = |segments_in_second_frame: usize| {
        let fx = &fx;
        async move {
            let events = Events::default();
            let (head, tail) = fx.response.split_at(700);
            let body = Some(common::RopeBody(
                [
                    common::Rope::split(head, 5),
                    common::Rope::split(tail, segments_in_second_frame),
                ]
                .into(),
            ));
            let layer = LlmUsageLayer::new()
                .without_metrics()
                .on_record(events.callback());
            // The layer clones its service (budgets call it after their check).
            let body = std::sync::Arc::new(std::sync::Mutex::new(body));
            let svc = layer.layer(tower::service_fn(
                move |_req: Request<RequestBody<Full<Bytes>>>| {
                    let body = body.lock().unwrap().take().expect("called once");
                    let mut res = Response::new(body);
                    res.headers_mut()
                        .insert("content-type", "text/event-stream".parse().unwrap());
                    std::future::ready(Ok::<_, Infallible>(res))
                },
            ));
            let res = svc.oneshot(fixture_request(fx)).await.unwrap();
            let mut got = Vec::new();
            let mut body = res.into_body();
            while let Some(f) = body.frame().await {
                let mut d = f.unwrap().into_data().ok().unwrap();
                while d.has_remaining() {
                    let c = d.chunk().to_vec();
                    d.advance(c.len());
                    got.extend_from_slice(&c);
                }
            }
            assert_eq!(got, fx.response, "bytes unchanged");
            events.all().remove(0)
        }
    };
    let seen = run(60).await;
    assert!(seen.record.complete);
    assert_eq!(seen.record.input_tokens, Some(16));

    let gap = run(100).await;
    assert_eq!(gap.outcome, Outcome::Complete);
    assert!(!gap.record.complete, "a gap makes the record partial");
    assert_eq!(
        gap.record.response_model.as_deref(),
        Some("gpt-4o-2024-08-06")
    );
    assert_eq!(
        gap.record.input_tokens, None,
        "nothing is guessed past the gap"
    );
}

/// As client middleware the layer sees absolute URIs and no `host` header: the URI's authority
/// still reaches the core, so host-based provider detection works.
#[tokio::test]
async fn absolute_uri_authority_is_used_for_provider_detection() {
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .on_record(events.callback());
    let svc = layer.layer(echo_model_service());
    let req = Request::post("https://api.deepseek.com/chat/completions")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"deepseek-chat","messages":[]}"#,
        )))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let _ = res.into_body().collect().await.unwrap();
    let evs = events.all();
    assert_eq!(evs[0].record.provider, Some(Provider::DeepSeek));
    assert_eq!(evs[0].record.input_tokens, Some(2));
}

/// A response body fed by the test through a channel, frame by frame, when it chooses.
struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c))))
    }
}

/// Time to first token is taken at the first event with generated text, per dialect: the
/// events before it (Anthropic's `message_start` and `ping`, an OpenAI role-only chunk,
/// Cohere's `message-start` and `content-start`) arrive at once, the text only after the
/// test has waited 300 ms, so the figure is at least that (a lower bound: a loaded machine
/// only makes it later), and the first byte came before it.
#[tokio::test]
async fn time_to_first_token_waits_for_generated_text() {
    for (name, first_text) in [
        ("12-anthropic-messages-stream", &b"event: content_block_delta"[..]),
        ("02-openai-chat-stream-usage", b"data: {\"id\":\"chatcmpl-BxQ9Lm3QpT6yRw2ZaE8uNc5VhK1Jd\",\"object\":\"chat.completion.chunk\",\"created\":1753862531,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_07871e2ad8\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Bright\"}"),
        ("33-cohere-chat-stream", b"event: content-delta"),
    ] {
        let fx = Fixture::load(name);
        let split = fx
            .response
            .windows(first_text.len())
            .position(|w| w == first_text)
            .unwrap_or_else(|| panic!("{name}: no first text"));
        let events = Events::default();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(Some(rx)));
        let headers = fx.response_headers();
        let svc = tower::service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
            let body = ChannelBody(rx.lock().unwrap().take().expect("one call"));
            let mut res = Response::new(body);
            *res.headers_mut() = headers.clone();
            async move { Ok::<_, Infallible>(res) }
        });
        let layer = LlmUsageLayer::new()
            .without_metrics()
            .on_record(events.callback());
        let res = layer.layer(svc).oneshot(fixture_request(&fx)).await.unwrap();
        let mut body = res.into_body();
        tx.send(Bytes::copy_from_slice(&fx.response[..split])).unwrap();
        // Read what was sent (every event before the first text) ...
        let mut got = 0;
        while got < split {
            let frame = body.frame().await.unwrap().unwrap();
            got += frame.into_data().unwrap().len();
        }
        // ... then the text, 300 ms later.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        tx.send(Bytes::copy_from_slice(&fx.response[split..])).unwrap();
        drop(tx);
        while body.frame().await.is_some() {}
        let ev = &events.wait_for(1).await[0];
        let ttft = ev.time_to_first_token.expect("a first token");
        let ttfb = ev.time_to_first_byte.expect("a first byte");
        assert!(ttft >= std::time::Duration::from_millis(300), "{name}: {ttft:?}");
        assert!(ttfb < ttft, "{name}: {ttfb:?} {ttft:?}");
        assert!(ev.record.complete, "{name}");
    }
}

/// A stream without usage gets estimated figures, flagged in the record, and is counted
/// by the estimated-requests counter; a stream with usage is not.
#[tokio::test]
async fn estimated_records_are_flagged_and_counted() {
    let (rec, handle) = prometheus();
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .recorder(rec)
        .on_record(events.callback());
    for name in [
        "03-openai-chat-stream-no-usage",
        "02-openai-chat-stream-usage",
    ] {
        let fx = Fixture::load(name);
        let res = layer
            .layer(fixture_service(&fx, Vec::new))
            .oneshot(fixture_request(&fx))
            .await
            .unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], &fx.response[..], "{name}: body changed");
    }
    let evs = events.wait_for(2).await;
    assert!(evs[0].record.estimated);
    // With the `bpe` feature (on by default), OpenAI's encodings: `expect_bpe`.
    let fx = Fixture::load("03-openai-chat-stream-no-usage");
    let r = &evs[0].record;
    assert_eq!(r.input_tokens, fx.expect_u64("input_tokens"));
    assert_eq!(r.output_tokens, fx.expect_u64("output_tokens"));
    assert_eq!(r.total_tokens, fx.expect_u64("total_tokens"));
    assert!(!evs[1].record.estimated);
    let text = handle.render();
    assert_eq!(
        prom_sum(&text, "llm_usage_estimated_requests_total", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(prom_sum(&text, "llm_usage_requests_total", &[]), Some(2.0));
}

/// The OpenTelemetry `gen_ai.client.inference.usage.*` counters: one per token type, each
/// with `gen_ai_token_modality`, the known figures only (no cache-write counter for a
/// response that reports none: unknown is not zero).
#[tokio::test]
async fn inference_usage_counters_carry_each_known_figure_with_its_modality() {
    let (rec, handle) = prometheus();
    let layer = LlmUsageLayer::new().recorder(rec);
    let fx = Fixture::load("04-openai-chat-reasoning-cached");
    let res = layer
        .layer(fixture_service(&fx, Vec::new))
        .oneshot(fixture_request(&fx))
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], &fx.response[..]);
    let text = handle.render();
    let modality = [("gen_ai_token_modality", "unknown")];
    for (name, field) in [
        (
            "gen_ai_client_inference_usage_input_tokens_total",
            "input_tokens",
        ),
        (
            "gen_ai_client_inference_usage_output_tokens_total",
            "output_tokens",
        ),
        (
            "gen_ai_client_inference_usage_cache_read_input_tokens_total",
            "cached_input_tokens",
        ),
        (
            "gen_ai_client_inference_usage_reasoning_output_tokens_total",
            "reasoning_tokens",
        ),
    ] {
        let want = fx.expect_u64(field).map(|v| v as f64);
        assert!(want.is_some(), "{field}");
        assert_eq!(prom_sum(&text, name, &modality), want, "{name}\n{text}");
    }
    assert!(fx.expect_u64("cache_creation_input_tokens").is_none());
    assert!(
        !text.contains("gen_ai_client_inference_usage_cache_write_input_tokens_total{"),
        "{text}"
    );
    assert!(MetricsConfig::otel()
        .metric_names()
        .contains(&"gen_ai_client_inference_usage_input_tokens_total".to_string()));
    assert!(!MetricsConfig::asm("w", "ns")
        .metric_names()
        .iter()
        .any(|n| n.starts_with("gen_ai_client_inference")));
}

/// The parts of input and output (audio, image, the cache writes' lifetimes) reach the
/// metrics of both profiles: a token type of their own on the OpenTelemetry counter by
/// type, their own counter in the ASM profile; each equals the fixture's figure. They are
/// on neither the histogram nor the usage counters, whose series are sums of types: the
/// `gen_ai_client_token_usage` histogram carries `input` and `output` only, and the
/// subsets (cache reads and writes, reasoning) have their own
/// `gen_ai.client.inference.usage` counters.
#[tokio::test]
async fn parts_of_input_and_output_are_counted_in_both_profiles() {
    for (profile, config) in [
        ("otel", MetricsConfig::otel()),
        ("asm", MetricsConfig::asm("sleep", "default")),
    ] {
        let (rec, handle) = prometheus();
        let layer = LlmUsageLayer::new().metrics(config).recorder(rec);
        for name in PART_FIXTURES {
            let fx = Fixture::load(name);
            let res = layer
                .clone()
                .layer(fixture_service(&fx, Vec::new))
                .oneshot(fixture_request(&fx))
                .await
                .unwrap();
            res.into_body().collect().await.unwrap();
        }
        let text = handle.render();
        let want = |field: &str| -> f64 {
            PART_FIXTURES
                .iter()
                .filter_map(|n| Fixture::load(n).expect_u64(field))
                .sum::<u64>() as f64
        };
        for (field, part, asm) in PARTS {
            let got = if profile == "otel" {
                prom_sum(
                    &text,
                    "llm_usage_tokens_total",
                    &[("gen_ai_token_type", part)],
                )
            } else {
                prom_sum(&text, asm, &[])
            };
            assert_eq!(got, Some(want(field)), "{profile}: {field}\n{text}");
        }
        assert!(want("input_image_tokens") > 0.0 && want("cache_creation_1h_input_tokens") > 0.0);
        if profile != "otel" {
            continue;
        }
        assert!(!text
            .lines()
            .any(|l| l.starts_with("gen_ai_client")
                && l.contains("gen_ai_token_type=\"input_audio\"")));
        // Only `input` and `output` on the histogram: its sum over types counts each
        // token once.
        let types: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("gen_ai_client_token_usage_sum{"))
            .filter_map(|l| l.split("gen_ai_token_type=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(types, ["input", "output"].into(), "{text}");
        for (field, counter) in [
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cached_input_tokens", "cache_read_input_tokens"),
            ("cache_creation_input_tokens", "cache_write_input_tokens"),
        ] {
            let got = prom_sum(
                &text,
                &format!("gen_ai_client_inference_usage_{counter}_total"),
                &[("gen_ai_token_modality", "unknown")],
            );
            assert_eq!(got, Some(want(field)), "{field}\n{text}");
        }
    }
}
