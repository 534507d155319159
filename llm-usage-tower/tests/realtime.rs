//! Realtime sessions (`testdata/realtime`) over real loopback WebSockets through the
//! `gateway` example: a raw TCP client does the upgrade and sends the recorded client
//! frames, a raw TCP upstream answers `101` with the recorded head and replays the recorded
//! server frames; the gateway proxies the upgrade and copies the bytes through
//! `realtime::Session::server_io`. Also [`Observed`] alone over an in-memory pipe, one
//! byte at a time.

mod common;

#[path = "../examples/gateway.rs"]
mod gateway;

use std::net::SocketAddr;
#[cfg(feature = "http2")]
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{irregular_chunks, Events, HANG};
use http::Uri;
use llm_usage_testkit::{prom_sum, realtime_sessions, RealtimeSession};
use llm_usage_tower::realtime::Session;
use llm_usage_tower::{LlmUsageLayer, Outcome, UsageEvent, UsageRecord};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Service, ServiceExt};

fn load(prefix: &str) -> RealtimeSession {
    realtime_sessions()
        .into_iter()
        .find(|r| r.name.starts_with(prefix))
        .unwrap()
}

/// Reads an HTTP head (up to its blank line) byte by byte, so that nothing after it is
/// taken from the stream.
async fn read_head(s: &mut (impl AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = s.read(&mut b).await.unwrap();
        assert_eq!(
            n,
            1,
            "the head ended early: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Writes `data` in irregular chunks (1..=40 bytes), yielding between them so that they
/// leave as separate segments.
async fn write_chunked(s: &mut (impl AsyncWriteExt + Unpin), data: &[u8], seed: u64) {
    for (i, c) in irregular_chunks(data, seed, 40).into_iter().enumerate() {
        s.write_all(&c).await.unwrap();
        s.flush().await.unwrap();
        if i % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// What the upstream saw: the request head and every client byte.
struct Seen {
    head: String,
    client: Vec<u8>,
}

/// A one-connection upstream: answers the upgrade with the recorded `101` head, reads the
/// client's frames to their end, then replays the server's frames (all of them, or the
/// first `cut` bytes and then closes the connection).
async fn spawn_upstream(
    r: &RealtimeSession,
    cut: Option<usize>,
) -> (SocketAddr, tokio::sync::oneshot::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut answer = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (k, v) in r.case["response_headers"].as_object().unwrap() {
        answer.push_str(&format!("{k}: {}\r\n", v.as_str().unwrap()));
    }
    answer.push_str("\r\n");
    let server = r.server[..cut.unwrap_or(r.server.len())].to_vec();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let head = read_head(&mut s).await;
        s.write_all(answer.as_bytes()).await.unwrap();
        let mut client = Vec::new();
        s.read_to_end(&mut client).await.unwrap();
        write_chunked(&mut s, &server, 7).await;
        if cut.is_none() {
            s.shutdown().await.unwrap();
        }
        drop(s);
        let _ = tx.send(Seen { head, client });
    });
    (addr, rx)
}

/// The gateway example's app on loopback in front of `upstream`, with `layer`.
async fn spawn_gateway(
    upstream: SocketAddr,
    layer: LlmUsageLayer,
) -> (SocketAddr, PrometheusHandle) {
    let metrics = layer.metrics_config().cloned().unwrap_or_default();
    let recorder = gateway::prometheus_recorder(&metrics);
    let handle = recorder.handle();
    let layer = layer.recorder(recorder);
    let upstream: Uri = format!("http://{upstream}").parse().unwrap();
    let app = gateway::app(Some(upstream), layer, handle.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, handle)
}

/// What the client saw: the response head and every server byte.
struct Played {
    head: String,
    server: Vec<u8>,
    upstream: Seen,
    events: Vec<UsageEvent>,
    metrics: String,
}

/// Plays `r` through the gateway: the client upgrades, sends its frames and reads the
/// server's to their end. Waits for the session's last record (`realtime_response` none).
async fn play(r: &RealtimeSession, cut: Option<usize>) -> Played {
    let events = Events::default();
    play_with(r, cut, LlmUsageLayer::new(), &events, true).await
}

/// [`play`] with `layer` (its callback set to `events`); `records`: whether to wait for the
/// session's last record.
async fn play_with(
    r: &RealtimeSession,
    cut: Option<usize>,
    layer: LlmUsageLayer,
    events: &Events,
    records: bool,
) -> Played {
    let (up, seen) = spawn_upstream(r, cut).await;
    let (gw, prometheus) = spawn_gateway(up, layer.on_record(events.callback())).await;
    let mut s = TcpStream::connect(gw).await.unwrap();
    let mut req = format!("GET {} HTTP/1.1\r\n", r.case["path"].as_str().unwrap());
    for (k, v) in r.case["request_headers"].as_object().unwrap() {
        req.push_str(&format!("{k}: {}\r\n", v.as_str().unwrap()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    write_chunked(&mut s, &r.client, 3).await;
    s.shutdown().await.unwrap();
    let mut server = Vec::new();
    s.read_to_end(&mut server).await.unwrap();
    let upstream = seen.await.unwrap();
    let deadline = Instant::now() + HANG;
    let events = loop {
        let all = events.all();
        if !records || all.iter().any(|e| e.realtime_response.is_none()) {
            break all;
        }
        assert!(Instant::now() < deadline, "{}: no last record", r.name);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    Played {
        head,
        server,
        upstream,
        events,
        metrics: prometheus.render(),
    }
}

/// Checks every figure `want` names (null: unknown) against `rec`.
fn check(rec: &UsageRecord, want: &Value, ctx: &str) {
    for (k, v) in want.as_object().unwrap() {
        let have = match k.as_str() {
            "model" => rec.model.clone().map(Value::from),
            "stream" => rec.stream.map(Value::from),
            "complete" => Some(Value::from(rec.complete)),
            "input_tokens" => rec.input_tokens.map(Value::from),
            "output_tokens" => rec.output_tokens.map(Value::from),
            "total_tokens" => rec.total_tokens.map(Value::from),
            "cached_input_tokens" => rec.cached_input_tokens.map(Value::from),
            "input_audio_tokens" => rec.input_audio_tokens.map(Value::from),
            "input_image_tokens" => rec.input_image_tokens.map(Value::from),
            "output_audio_tokens" => rec.output_audio_tokens.map(Value::from),
            "reasoning_tokens" => rec.reasoning_tokens.map(Value::from),
            other => panic!("{ctx}: no check for {other}"),
        };
        assert_eq!(have.unwrap_or(Value::Null), *v, "{ctx}: {k} in {rec:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_of_a_proxied_session_is_one_record() {
    for r in realtime_sessions() {
        let p = play(&r, None).await;
        let ctx = r.name.as_str();
        assert!(p.head.starts_with("HTTP/1.1 101 "), "{ctx}: {}", p.head);
        let head = p.head.to_ascii_lowercase();
        assert!(head.contains("\r\nupgrade: websocket\r\n"), "{ctx}: {head}");
        if let Some(ext) = r.case["response_headers"]["sec-websocket-extensions"].as_str() {
            assert!(
                head.contains(&format!("sec-websocket-extensions: {ext}")),
                "{ctx}"
            );
        }
        let up_head = p.upstream.head.to_ascii_lowercase();
        assert!(
            up_head.contains("\r\nupgrade: websocket\r\n"),
            "{ctx}: {up_head}"
        );
        // Byte for byte, both ways.
        assert_eq!(p.server, r.server, "{ctx}: server frames");
        assert_eq!(p.upstream.client, r.client, "{ctx}: client frames");

        let want = r.case["expect_records"].as_array().unwrap();
        let (closed, last): (Vec<_>, Vec<_>) =
            p.events.iter().partition(|e| e.realtime_response.is_some());
        assert_eq!(closed.len(), want.len(), "{ctx}: {:?}", p.events);
        for (i, (ev, w)) in closed.iter().zip(want).enumerate() {
            assert_eq!(ev.realtime_response, Some(i as u64 + 1), "{ctx}");
            assert_eq!(ev.outcome, Outcome::Complete, "{ctx}");
            assert_eq!(ev.status.map(|s| s.as_u16()), Some(101), "{ctx}");
            assert_eq!(ev.time_to_first_token, None, "{ctx}");
            check(&ev.record, w, &format!("{ctx}: response {}", i + 1));
        }
        let [last] = last[..] else {
            panic!("{ctx}: one last record: {:?}", p.events)
        };
        // The server's side ended cleanly; what no response.done covered is partial.
        assert_eq!(last.outcome, Outcome::Complete, "{ctx}");
        check(
            &last.record,
            &r.case["expect_rest"],
            &format!("{ctx}: rest"),
        );
        assert_eq!(last.request_body_bytes, r.client.len() as u64, "{ctx}");
        assert_eq!(last.response_body_bytes, r.server.len() as u64, "{ctx}");

        // Metrics: each response's tokens once, the session as one request.
        let sum = |k: &str| -> Option<f64> {
            let s: u64 = want.iter().filter_map(|w| w[k].as_u64()).sum();
            (!want.is_empty()).then_some(s as f64)
        };
        for (ty, field) in [
            ("input", "input_tokens"),
            ("output", "output_tokens"),
            ("input_cache_read", "cached_input_tokens"),
        ] {
            let l = [("gen_ai_token_type", ty)];
            let expected = match sum(field) {
                Some(0.0) if want.iter().all(|w| w[field].is_null()) => None,
                s => s,
            };
            assert_eq!(
                prom_sum(&p.metrics, "llm_usage_tokens_total", &l),
                expected,
                "{ctx}: {ty}\n{}",
                p.metrics
            );
        }
        assert_eq!(
            prom_sum(&p.metrics, "llm_usage_requests_total", &[]),
            Some(1.0),
            "{ctx}\n{}",
            p.metrics
        );
        assert_eq!(
            prom_sum(
                &p.metrics,
                "gen_ai_server_request_duration_seconds_count",
                &[]
            ),
            Some(1.0),
            "{ctx}\n{}",
            p.metrics
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unobserved_upgrade_is_proxied_unchanged() {
    let r = load("02-");
    let events = Events::default();
    let layer =
        LlmUsageLayer::new().filter(|p: &http::request::Parts| p.uri.path() != "/v1/realtime");
    let p = play_with(&r, None, layer, &events, false).await;
    assert!(p.head.starts_with("HTTP/1.1 101 "), "{}", p.head);
    assert_eq!(p.server, r.server);
    assert_eq!(p.upstream.client, r.client);
    assert!(events.all().is_empty());
}

/// The position of the `n`th (from 0) occurrence of `needle` in `hay`.
fn nth(hay: &[u8], needle: &[u8], n: usize) -> usize {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .nth(n)
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_session_reports_what_closed_and_a_partial_rest() {
    for prefix in ["01-", "05-"] {
        let r = load(prefix);
        let ctx = r.name.as_str();
        // In the middle of the second response's closing message.
        let closing: &[u8] = if prefix == "05-" {
            b"turnComplete"
        } else {
            b"response.done"
        };
        let cut = nth(&r.server, closing, 1) + 3;
        let p = play(&r, Some(cut)).await;
        assert_eq!(
            p.server,
            r.server[..cut],
            "{ctx}: what came passed unchanged"
        );
        assert_eq!(p.upstream.client, r.client, "{ctx}");
        let want = &r.case["expect_records"][0];
        let (closed, last): (Vec<_>, Vec<_>) =
            p.events.iter().partition(|e| e.realtime_response.is_some());
        assert_eq!(closed.len(), 1, "{ctx}: {:?}", p.events);
        check(&closed[0].record, want, ctx);
        let [last] = last[..] else {
            panic!("{ctx}: one last record: {:?}", p.events)
        };
        assert!(!last.record.complete, "{ctx}: {:?}", last.record);
        assert_eq!(last.record.model, want["model"].as_str().map(str::to_owned));
        // The cut response's figures never arrived: unknown, not 0.
        assert_eq!(last.record.output_tokens, None, "{ctx}");
    }
}

/// A service answering a WebSocket upgrade request with the recorded `101` head, behind
/// the layer; returns the session the layer put in the response.
async fn upgraded_session(r: &RealtimeSession, events: &Events) -> Session {
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .on_record(events.callback());
    upgraded_session_with(r, layer).await.expect("upgraded")
}

/// [`upgraded_session`] behind `layer`: `None` when the layer answered itself (a spent
/// budget's `429`).
async fn upgraded_session_with(r: &RealtimeSession, layer: LlmUsageLayer) -> Option<Session> {
    let case = r.case.clone();
    let svc = tower::service_fn(
        move |_req: http::Request<llm_usage_tower::RequestBody<String>>| {
            let case = case.clone();
            async move {
                let mut res = http::Response::builder().status(101);
                for (k, v) in case["response_headers"].as_object().unwrap() {
                    res = res.header(k.as_str(), v.as_str().unwrap());
                }
                Ok::<_, std::convert::Infallible>(res.body(String::new()).unwrap())
            }
        },
    );
    let mut svc = tower::Layer::layer(&layer, svc);
    let mut req = http::Request::get(r.case["path"].as_str().unwrap());
    for (k, v) in r.case["request_headers"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    let req = req.body(String::new()).unwrap();
    assert!(req.extensions().get::<Session>().is_none());
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    if res.status() == 429 {
        return None;
    }
    assert_eq!(res.status(), 101);
    Some(res.extensions().get::<Session>().cloned().unwrap())
}

/// Plays `r` through an IO of `session` (a client's), whole, to the server's end of file.
async fn play_io(r: &RealtimeSession, session: Session) {
    let (near, mut far) = tokio::io::duplex(1 << 16);
    let mut io = session.client_io(near);
    far.write_all(&r.server).await.unwrap();
    far.shutdown().await.unwrap();
    io.write_all(&r.client).await.unwrap();
    let mut read = Vec::new();
    io.read_to_end(&mut read).await.unwrap();
    assert_eq!(read, r.server);
}

#[tokio::test]
async fn each_closed_response_is_priced_and_charged() {
    let r = load("01-");
    let table = llm_usage_tower::llm_usage_cost::PriceTable::from_json(
        r#"{"currency": "USD", "per_tokens": 1000000,
            "models": {"gpt-realtime*": {"input": 4.0, "cached_input": 0.4, "output": 16.0}}}"#,
    )
    .unwrap();
    // Room for the first session's first response only: 253 tokens of 300.
    let budgets = llm_usage_tower::llm_usage_cost::Budgets::from_json(
        r#"[{"name": "all", "key": "all", "tokens": 300, "window_s": 3600}]"#,
    )
    .unwrap();
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .on_record(events.callback())
        .prices(table.clone())
        .budgets(budgets, llm_usage_tower::budget::MemoryStore::new());
    let session = upgraded_session_with(&r, layer.clone()).await.unwrap();
    play_io(&r, session).await;
    let evs = events.all();
    assert_eq!(evs.len(), 3, "{evs:?}");
    for ev in &evs[..2] {
        let cost = ev.cost().expect("a priced response");
        assert_eq!(Some(cost), table.price(&ev.record).amount());
        assert_eq!(ev.currency.as_deref(), Some("USD"));
    }
    // 132 in (64 cached), 121 out: (68 × 4 + 64 × 0.4 + 121 × 16) / 10⁶ USD.
    assert_eq!(evs[0].cost().unwrap().to_string(), "0.0022336");
    // The rest carries no tokens: no cost, never 0.
    assert_eq!(evs[2].cost(), None);
    // Both responses were charged (253 + 1387 tokens): the next session is refused.
    assert!(upgraded_session_with(&r, layer).await.is_none());
}

#[tokio::test]
async fn observed_io_split_at_every_byte() {
    for r in realtime_sessions() {
        let ctx = r.name.as_str();
        // A client's IO this time: it writes the client's frames, reads the server's.
        let events = Events::default();
        let session = upgraded_session(&r, &events).await;
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let mut io = session.clone().client_io(near);
        // A second IO of the same session is not observed (no byte counted twice).
        let (other, _keep) = tokio::io::duplex(1 << 16);
        let mut second = session.client_io(other);
        second.write_all(&r.client).await.unwrap();
        let server = r.server.clone();
        let feeder = tokio::spawn(async move {
            for b in server.chunks(1) {
                far.write_all(b).await.unwrap();
            }
            let mut got = Vec::new();
            far.shutdown().await.unwrap();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        for b in r.client.chunks(1) {
            io.write_all(b).await.unwrap();
        }
        io.shutdown().await.unwrap();
        let mut read = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            let n = io.read(&mut byte).await.unwrap();
            if n == 0 {
                break;
            }
            read.extend_from_slice(&byte[..n]);
        }
        assert_eq!(read, r.server, "{ctx}");
        assert_eq!(feeder.await.unwrap(), r.client, "{ctx}");
        // The server's end of file ended the session.
        let evs = events.all();
        let want = r.case["expect_records"].as_array().unwrap();
        assert_eq!(evs.len(), want.len() + 1, "{ctx}: {evs:?}");
        for (ev, w) in evs.iter().zip(want) {
            check(&ev.record, w, ctx);
        }
        let last = evs.last().unwrap();
        assert_eq!(last.realtime_response, None, "{ctx}");
        assert_eq!(last.outcome, Outcome::Complete, "{ctx}");
        check(&last.record, &r.case["expect_rest"], ctx);
        drop(io);
        drop(second);
        assert_eq!(events.len(), want.len() + 1, "{ctx}: reported once");
    }
}

#[tokio::test]
async fn a_session_nobody_observes_ends_when_its_handles_go() {
    let r = load("01-");
    let events = Events::default();
    let session = upgraded_session(&r, &events).await;
    assert_eq!(events.len(), 0);
    drop(session);
    let evs = events.all();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].outcome, Outcome::Dropped);
    assert!(!evs[0].record.complete);
    assert_eq!(evs[0].record.output_tokens, None);
}

#[tokio::test]
async fn an_upgrade_refused_is_an_ordinary_exchange() {
    let events = Events::default();
    let svc = tower::service_fn(|req: http::Request<llm_usage_tower::RequestBody<String>>| {
        // The handler may hold the session; the answer decides.
        let held = req.extensions().get::<Session>().cloned();
        async move {
            assert!(held.is_some());
            let body = r#"{"error":{"type":"invalid_request_error","message":"no"}}"#;
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(400)
                    .header("content-type", "application/json")
                    .body(body.to_owned())
                    .unwrap(),
            )
        }
    });
    let mut svc = tower::Layer::layer(
        &LlmUsageLayer::new()
            .without_metrics()
            .on_record(events.callback()),
        svc,
    );
    let req = http::Request::get("/v1/realtime?model=gpt-realtime")
        .header("host", "api.openai.com")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .body(String::new())
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert!(res.extensions().get::<Session>().is_none());
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(body.starts_with(b"{\"error\""));
    let evs = events.all();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].status.map(|s| s.as_u16()), Some(400));
    assert_eq!(evs[0].realtime_response, None);
}

/// HTTP/2 WebSockets (RFC 8441) with hyper: extended CONNECT with `:protocol: websocket`,
/// answered `200`, the session in the stream's DATA frames.
#[cfg(feature = "http2")]
mod http2 {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use llm_usage_tower::RequestBody;

    /// An HTTP/2 server (extended CONNECT enabled) with the layer, whose handler accepts
    /// the WebSocket, reads the client's frames to their end, then writes the server's
    /// through `Session::server_io`. Answers the client bytes it read.
    async fn spawn_server(
        r: &RealtimeSession,
        events: &Events,
    ) -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        let server = r.server.clone();
        let ext = r.case["response_headers"]["sec-websocket-extensions"]
            .as_str()
            .map(str::to_owned);
        let handler = tower::service_fn(
            move |mut req: http::Request<RequestBody<hyper::body::Incoming>>| {
                let session = req.extensions_mut().remove::<Session>();
                let on = hyper::upgrade::on(&mut req);
                let (server, tx, ext) = (server.clone(), tx.clone(), ext.clone());
                async move {
                    assert_eq!(req.method(), http::Method::CONNECT);
                    let session = session.expect("the layer saw an HTTP/2 WebSocket");
                    tokio::spawn(async move {
                        let io = TokioIo::new(on.await.unwrap());
                        let mut io = session.server_io(io);
                        let mut client = Vec::new();
                        io.read_to_end(&mut client).await.unwrap();
                        write_chunked(&mut io, &server, 11).await;
                        io.shutdown().await.unwrap();
                        let _ = tx.lock().unwrap().take().unwrap().send(client);
                    });
                    let mut res = http::Response::builder().status(200);
                    if let Some(e) = ext {
                        res = res.header("sec-websocket-extensions", e);
                    }
                    Ok::<_, std::convert::Infallible>(res.body(Empty::<Bytes>::new()).unwrap())
                }
            },
        );
        let svc = tower::Layer::layer(
            &LlmUsageLayer::new()
                .without_metrics()
                .on_record(events.callback()),
            handler,
        );
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper::service::service_fn(move |req| {
                let mut svc = svc.clone();
                async move { svc.ready().await?.call(req).await }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .enable_connect_protocol()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
        (addr, rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_http2_websocket_is_a_session_like_an_upgrade() {
        for r in realtime_sessions() {
            let ctx = r.name.as_str();
            let events = Events::default();
            let (addr, seen) = spawn_server(&r, &events).await;
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let host = r.case["request_headers"]["host"].as_str().unwrap();
            let mut req = http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(format!(
                    "https://{host}{}",
                    r.case["path"].as_str().unwrap()
                ))
                .header("sec-websocket-version", "13")
                .extension(hyper::ext::Protocol::from_static("websocket"));
            if let Some(e) = r.case["request_headers"]["sec-websocket-extensions"].as_str() {
                req = req.header("sec-websocket-extensions", e);
            }
            let req = req.body(Empty::<Bytes>::new()).unwrap();
            sender.ready().await.unwrap();
            let res = sender.send_request(req).await.unwrap();
            assert_eq!(res.status(), 200, "{ctx}");
            let mut io = TokioIo::new(hyper::upgrade::on(res).await.unwrap());
            write_chunked(&mut io, &r.client, 5).await;
            io.shutdown().await.unwrap();
            let mut server = Vec::new();
            io.read_to_end(&mut server).await.unwrap();
            assert_eq!(server, r.server, "{ctx}: server frames");
            assert_eq!(seen.await.unwrap(), r.client, "{ctx}: client frames");

            let want = r.case["expect_records"].as_array().unwrap();
            let evs = events.wait_for(want.len() + 1).await;
            for (i, (ev, w)) in evs.iter().zip(want).enumerate() {
                assert_eq!(ev.realtime_response, Some(i as u64 + 1), "{ctx}");
                assert_eq!(ev.method, http::Method::CONNECT, "{ctx}");
                assert_eq!(ev.status.map(|s| s.as_u16()), Some(200), "{ctx}");
                check(&ev.record, w, &format!("{ctx}: response {}", i + 1));
            }
            let last = &evs[want.len()];
            assert_eq!(last.realtime_response, None, "{ctx}");
            assert_eq!(last.outcome, Outcome::Complete, "{ctx}");
            check(
                &last.record,
                &r.case["expect_rest"],
                &format!("{ctx}: rest"),
            );
        }
    }
}
