//! Token budgets through the async stores: the in-memory store and a real `redis-server`
//! started on a loopback port by the test (and stopped by a Drop guard), including a
//! server restart mid-test (fail open, then recover).
//!
//! The layer's own budgets (`LlmUsageLayer::budgets`) run the same stores on fixture
//! traffic: the local `429`, 200 concurrent requests, a Redis restart, a cut stream.
//!
//! Without `redis-server` on the PATH the Redis tests print a skip line, unless
//! `LLM_USAGE_REQUIRE_TOOLS=1` (CI), where they fail with a clear message.

mod common;

use bytes::Bytes;
use common::{irregular_chunks, Events, Fixture, FixtureExt, FramesBody};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use llm_usage_core::{Provider, UsageRecord};
use llm_usage_cost::{Budgets, Decision, KeyFacts};
use llm_usage_testkit::prom_sum;
use llm_usage_tower::budget::{self, AsyncBudgetStore, MemoryStore, RedisStore};
use llm_usage_tower::{LlmUsageLayer, RequestBody};
use std::convert::Infallible;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, ServiceExt};

/// A redis-server child on 127.0.0.1:`port`, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// `None` (after printing a skip line) when redis-server is not installed and tools
    /// are not required.
    fn start(port: Option<u16>) -> Option<RedisServer> {
        let port = port.unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("LLM_USAGE_REQUIRE_TOOLS").as_deref() == Ok("1") {
                    panic!(
                        "redis-server is required (LLM_USAGE_REQUIRE_TOOLS=1) but could not be \
                         started: {e}; install it with `apt-get install -y redis-server`"
                    );
                }
                eprintln!("skip: redis-server not found ({e}); the Redis budget tests did not run");
                return None;
            }
        };
        let server = RedisServer { child, port };
        // Ready when it answers a PING.
        for _ in 0..200 {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return Some(server);
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server on port {port} never answered PING");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LIMITS: &str = r#"[{"name": "per-key", "key": "header:x-api-key", "tokens": 1000,
    "window_s": 3600, "count": "total"}]"#;

fn rec(total: u64) -> UsageRecord {
    let mut r = UsageRecord::default();
    r.provider = Some(Provider::Anthropic);
    r.input_tokens = Some(total / 2);
    r.output_tokens = Some(total - total / 2);
    r
}

/// A fixed instant in the middle of a 3600 s window, so no test straddles a boundary.
const NOW: u64 = 1_800_001_800;

/// Sequential: exactly the requests under budget pass, then 429 (Anthropic-shaped).
async fn exact_budget(store: &dyn AsyncBudgetStore) {
    let b = Budgets::from_json(LIMITS).unwrap();
    let headers: &[(&str, &[u8])] = &[("x-api-key", b"sk-ant-sequential")];
    let facts = KeyFacts {
        headers,
        ..Default::default()
    };
    let mut passed = 0;
    for _ in 0..20 {
        match budget::check(&b, store, &facts, Some(Provider::Anthropic), NOW).await {
            Decision::Allow {
                buckets,
                store_errors,
            } => {
                assert_eq!(store_errors, 0);
                passed += 1;
                assert_eq!(
                    budget::charge(&b, store, &buckets, &rec(300), None, NOW).await,
                    0
                );
            }
            Decision::Deny { reply, .. } => {
                assert_eq!(reply.status, 429);
                assert!(reply.body.contains("rate_limit_error"), "{}", reply.body);
                assert!(reply
                    .headers
                    .contains(&("x-ratelimit-remaining-tokens", "0".into())));
            }
        }
    }
    // 0, 300, 600, 900 used before each: four pass, the fifth sees 1200 ≥ 1000.
    assert_eq!(passed, 4);
}

/// 200 concurrent requests, each checked and charged: the counter equals the sum charged.
async fn concurrent_no_lost_update(store: Arc<dyn AsyncBudgetStore>, key: &'static [u8]) -> u64 {
    let b = Arc::new(
        Budgets::from_json(
            r#"[{"name":"burst","key":"header:x-api-key","tokens":1000000000,"window_s":3600}]"#,
        )
        .unwrap(),
    );
    let charged = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let (b, store, charged) = (b.clone(), store.clone(), charged.clone());
        tasks.push(tokio::spawn(async move {
            let headers: &[(&str, &[u8])] = &[("x-api-key", key)];
            let facts = KeyFacts {
                headers,
                ..Default::default()
            };
            match budget::check(&b, &*store, &facts, None, NOW).await {
                Decision::Allow {
                    buckets,
                    store_errors,
                } => {
                    assert_eq!(store_errors, 0);
                    let amount = 10 + i;
                    assert_eq!(
                        budget::charge(&b, &*store, &buckets, &rec(amount), None, NOW).await,
                        0
                    );
                    charged.fetch_add(amount, Ordering::Relaxed);
                }
                d => panic!("{d:?}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let headers: &[(&str, &[u8])] = &[("x-api-key", key)];
    let bucket = &b.buckets(&KeyFacts {
        headers,
        ..Default::default()
    })[0];
    let used = store.used(&bucket.name, NOW / 3600).await.unwrap();
    assert_eq!(used, charged.load(Ordering::Relaxed));
    // Σ (10 + i) for i < 200.
    assert_eq!(used, 2000 + 19_900);
    used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_budgets() {
    let store = Arc::new(MemoryStore::new());
    exact_budget(&*store).await;
    concurrent_no_lost_update(store, b"sk-burst").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_budgets_shared_by_replicas() {
    let Some(server) = RedisServer::start(None) else {
        return;
    };
    let store = RedisStore::new(&server.url()).unwrap().prefix("t1:");
    exact_budget(&store).await;
    concurrent_no_lost_update(
        Arc::new(RedisStore::new(&server.url()).unwrap().prefix("t2:")),
        b"sk-burst",
    )
    .await;
    // Two replicas (two stores, two connections) share one budget.
    let b = Budgets::from_json(LIMITS).unwrap();
    let a = RedisStore::new(&server.url()).unwrap().prefix("t3:");
    let c = RedisStore::new(&server.url()).unwrap().prefix("t3:");
    let headers: &[(&str, &[u8])] = &[("x-api-key", b"shared")];
    let facts = KeyFacts {
        headers,
        ..Default::default()
    };
    let Decision::Allow { buckets, .. } = budget::check(&b, &a, &facts, None, NOW).await else {
        panic!()
    };
    budget::charge(&b, &a, &buckets, &rec(1000), None, NOW).await;
    assert!(
        matches!(
            budget::check(&b, &c, &facts, None, NOW).await,
            Decision::Deny { .. }
        ),
        "the other replica sees the spent budget"
    );
    // The counter expires with its window (plus one window of grace), set by the script.
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("t3:{}|{}", buckets[0].name, NOW / 3600);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, 1800 + 3600, "{key}");
    // The raw key never reaches Redis.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter()
            .all(|k| !k.contains("shared") && !k.contains("sk-")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_test_fails_open_then_recovers() {
    let Some(server) = RedisServer::start(None) else {
        return;
    };
    let b =
        Budgets::from_json(r#"[{"name":"r","key":"all","tokens":100,"window_s":3600}]"#).unwrap();
    let store = RedisStore::new(&server.url())
        .unwrap()
        .timeout(Duration::from_millis(300));
    let facts = KeyFacts::default();
    let Decision::Allow {
        buckets,
        store_errors: 0,
    } = budget::check(&b, &store, &facts, None, NOW).await
    else {
        panic!()
    };
    budget::charge(&b, &store, &buckets, &rec(150), None, NOW).await;
    assert!(matches!(
        budget::check(&b, &store, &facts, None, NOW).await,
        Decision::Deny { .. }
    ));

    // Down: every request passes (fail open), errors are counted, nothing panics or stalls.
    let port = server.stop();
    for _ in 0..5 {
        match budget::check(&b, &store, &facts, None, NOW).await {
            Decision::Allow {
                buckets,
                store_errors,
            } => {
                assert_eq!(store_errors, 1);
                assert_eq!(
                    budget::charge(&b, &store, &buckets, &rec(10), None, NOW).await,
                    1
                );
            }
            d => panic!("must fail open while Redis is down: {d:?}"),
        }
    }

    // Back on the same port (empty: no persistence): the store reconnects and limits again.
    let server = RedisServer::start(Some(port)).expect("redis-server restarts");
    let mut recovered = false;
    for _ in 0..20 {
        if let Decision::Allow {
            store_errors: 0,
            buckets,
        } = budget::check(&b, &store, &facts, None, NOW).await
        {
            assert_eq!(
                budget::charge(&b, &store, &buckets, &rec(150), None, NOW).await,
                0
            );
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the store reconnects once Redis is back");
    assert!(matches!(
        budget::check(&b, &store, &facts, None, NOW).await,
        Decision::Deny { .. }
    ));
    drop(server);
}

// ---- The layer's budgets, on fixture traffic ----

/// A provider answering with a fixture's response in irregular chunks, cut (a body error)
/// after `cut_at` bytes if given; it counts its calls.
fn provider(
    fx: &Fixture,
    calls: Arc<AtomicUsize>,
    cut_at: Option<usize>,
) -> impl tower::Service<
    Request<RequestBody<Full<Bytes>>>,
    Response = Response<FramesBody>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let status = fx.status();
    let headers = fx.response_headers();
    let bytes = &fx.response[..cut_at.unwrap_or(fx.response.len())];
    let chunks = irregular_chunks(bytes, 5, 97);
    tower::service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let headers = headers.clone();
        let mut frames: Vec<_> = chunks.iter().cloned().map(|c| Ok(Frame::data(c))).collect();
        if cut_at.is_some() {
            frames.push(Err(std::io::Error::other("upstream reset")));
        }
        async move {
            let _ = req.into_body().collect().await.expect("request body");
            let mut res = Response::new(FramesBody::new(frames));
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            *res.headers_mut() = headers;
            Ok::<_, Infallible>(res)
        }
    })
}

fn request(fx: &Fixture, api_key: &str) -> Request<Full<Bytes>> {
    let mut req = common::fixture_request(fx);
    req.headers_mut()
        .insert("x-api-key", api_key.parse().unwrap());
    req
}

/// Sends one request through `layer` to the fixture provider and reads the whole response.
async fn send(
    layer: &LlmUsageLayer,
    fx: &Fixture,
    calls: &Arc<AtomicUsize>,
    key: &str,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let res = layer
        .clone()
        .layer(provider(fx, calls.clone(), None))
        .oneshot(request(fx, key))
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

fn bucket(b: &Budgets, key: &[u8]) -> String {
    let headers: &[(&str, &[u8])] = &[("x-api-key", key)];
    b.buckets(&KeyFacts {
        headers,
        ..Default::default()
    })[0]
        .name
        .clone()
}

/// 01-openai-chat-basic reports 35 total tokens: with a budget of 105, three requests pass
/// unchanged (0, 35, 70 used before each), the fourth and later are answered by the layer
/// with an OpenAI-shaped 429, the provider is never called for them, and another key
/// still passes.
#[tokio::test]
async fn layer_answers_429_exactly_once_the_budget_is_spent() {
    let fx = Fixture::load("01-openai-chat-basic");
    let limits =
        r#"[{"name": "per-key", "key": "header:x-api-key", "tokens": 105, "window_s": 3600}]"#;
    let budgets = Budgets::from_json(limits).unwrap();
    let store = Arc::new(MemoryStore::new());
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .recorder(recorder)
        .on_record(events.callback())
        .budgets(budgets.clone(), store.clone())
        .budget_clock(|| NOW);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (status, headers, body) = send(&layer, &fx, &calls, "sk-one").await;
        statuses.push(status.as_u16());
        if i < 3 {
            assert_eq!(&body[..], &fx.response[..], "passes unchanged");
            assert!(headers.get("retry-after").is_none());
        } else {
            assert_eq!(headers["retry-after"], "1800");
            assert_eq!(headers["x-ratelimit-limit-tokens"], "105");
            assert_eq!(headers["x-ratelimit-remaining-tokens"], "0");
            assert_eq!(headers["content-type"], "application/json");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("105 of 105"),
                "{v}"
            );
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "denied requests never reach the provider"
    );
    assert_eq!(events.len(), 3, "a denied request is no exchange");
    assert_eq!(
        llm_usage_cost::BudgetStore::used(&*store, &bucket(&budgets, b"sk-one"), NOW / 3600),
        Ok(105)
    );
    let (status, _, _) = send(&layer, &fx, &calls, "sk-two").await;
    assert_eq!(status, StatusCode::OK, "another key has its own budget");
    let text = handle.render();
    assert_eq!(
        prom_sum(
            &text,
            "llm_usage_budget_rejected_requests_total",
            &[("budget_limit", "per-key")]
        ),
        Some(3.0),
        "{text}"
    );
    // The next window starts afresh.
    let next = layer.clone().budget_clock(|| NOW + 3600);
    assert_eq!(send(&next, &fx, &calls, "sk-one").await.0, StatusCode::OK);
}

/// 200 requests at once through the layer: every one charged, none lost.
async fn layer_concurrent(store: Arc<dyn AsyncBudgetStore>) {
    let fx = Arc::new(Fixture::load("01-openai-chat-basic"));
    let limits =
        r#"[{"name": "burst", "key": "header:x-api-key", "tokens": 1000000, "window_s": 3600}]"#;
    let budgets = Budgets::from_json(limits).unwrap();
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .budgets(budgets.clone(), store.clone())
        .budget_clock(|| NOW);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (layer, fx, calls) = (layer.clone(), fx.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let (status, _, body) = send(&layer, &fx, &calls, "sk-burst").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&body[..], &fx.response[..]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 200);
    // Charges that wait for their store run on the runtime: poll until they are all in
    // (the deadline only turns a hang into a failure).
    let name = bucket(&budgets, b"sk-burst");
    let deadline = std::time::Instant::now() + common::HANG;
    loop {
        let used = store.used(&name, NOW / 3600).await.unwrap();
        assert!(used <= 200 * 35, "{used}");
        if used == 200 * 35 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "charged {used} of {}",
            200 * 35
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn layer_200_concurrent_requests_memory_store() {
    layer_concurrent(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn layer_200_concurrent_requests_redis_store() {
    let Some(server) = RedisServer::start(None) else {
        return;
    };
    layer_concurrent(Arc::new(
        RedisStore::new(&server.url()).unwrap().prefix("layer:"),
    ))
    .await;
}

/// A stream cut after its first text delta is charged with what was seen: the input of
/// `message_start` and the output estimated from the text so far, not the full 56.
#[tokio::test]
async fn layer_charges_a_cut_stream_partially() {
    let fx = Fixture::load("12-anthropic-messages-stream");
    let cut = fx.response.windows(4).position(|w| w == b"\"The").unwrap() + 200;
    let limits =
        r#"[{"name": "per-key", "key": "header:x-api-key", "tokens": 1000, "window_s": 3600}]"#;
    let budgets = Budgets::from_json(limits).unwrap();
    let store = Arc::new(MemoryStore::new());
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .on_record(events.callback())
        .budgets(budgets.clone(), store.clone())
        .budget_clock(|| NOW);
    let calls = Arc::new(AtomicUsize::new(0));
    let res = layer
        .clone()
        .layer(provider(&fx, calls.clone(), Some(cut)))
        .oneshot(request(&fx, "sk-cut"))
        .await
        .unwrap();
    assert!(
        res.into_body().collect().await.is_err(),
        "the cut reaches the client"
    );
    let ev = events.all().pop().unwrap();
    assert!(!ev.record.complete);
    assert_eq!(ev.record.input_tokens, Some(25));
    let out = ev
        .record
        .output_tokens
        .expect("output estimated from the text seen");
    assert!(ev.record.estimated);
    assert!((1..31).contains(&out), "{out}");
    let used = llm_usage_cost::BudgetStore::used(&*store, &bucket(&budgets, b"sk-cut"), NOW / 3600)
        .unwrap();
    assert_eq!(used, ev.record.total_tokens.unwrap_or(25 + out));
    assert!(used < 56, "{used}");
}

/// Redis stopped under the layer: requests pass (fail open) and nothing panics; restarted,
/// the layer limits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_fails_open_while_redis_is_down_then_recovers() {
    let Some(server) = RedisServer::start(None) else {
        return;
    };
    let fx = Fixture::load("01-openai-chat-basic");
    let limits =
        r#"[{"name": "per-key", "key": "header:x-api-key", "tokens": 35, "window_s": 3600}]"#;
    let budgets = Budgets::from_json(limits).unwrap();
    let store = Arc::new(
        RedisStore::new(&server.url())
            .unwrap()
            .timeout(Duration::from_millis(300)),
    );
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .budgets(budgets.clone(), store.clone())
        .budget_clock(|| NOW);
    let calls = Arc::new(AtomicUsize::new(0));
    let name = bucket(&budgets, b"sk-r");
    let wait_used = |want: u64| {
        let (store, name) = (store.clone(), name.clone());
        async move {
            let deadline = std::time::Instant::now() + common::HANG;
            while store.used(&name, NOW / 3600).await != Ok(want) {
                assert!(std::time::Instant::now() < deadline, "never charged {want}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(send(&layer, &fx, &calls, "sk-r").await.0, StatusCode::OK);
    wait_used(35).await;
    assert_eq!(
        send(&layer, &fx, &calls, "sk-r").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    let port = server.stop();
    for _ in 0..3 {
        let (status, _, body) = send(&layer, &fx, &calls, "sk-r").await;
        assert_eq!(status, StatusCode::OK, "fail open while Redis is down");
        assert_eq!(&body[..], &fx.response[..]);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    let server = RedisServer::start(Some(port)).expect("redis-server restarts");
    // Empty after the restart: the first request passes once the store reconnects, and
    // its charge spends the budget again.
    let deadline = std::time::Instant::now() + common::HANG;
    loop {
        let (status, _, _) = send(&layer, &fx, &calls, "sk-r").await;
        assert_eq!(status, StatusCode::OK);
        if store.used(&name, NOW / 3600).await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never reconnected");
    }
    // Every request that passed since the reconnection is charged (35 each).
    let deadline = std::time::Instant::now() + common::HANG;
    while store.used(&name, NOW / 3600).await.unwrap_or(0) < 35 {
        assert!(
            std::time::Instant::now() < deadline,
            "never charged after the restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        send(&layer, &fx, &calls, "sk-r").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    drop(server);
}

/// A `cost_micros` limit charges each exchange's cost (13-anthropic-messages-cache: 0.004815
/// USD with the example table, 4815 micro-units): with a budget of 9630, two pass and the
/// third is denied.
#[tokio::test]
async fn layer_charges_cost_micros_limits_with_the_price_table() {
    let fx = Fixture::load("13-anthropic-messages-cache");
    let table = std::fs::read_to_string(llm_usage_testkit::example_prices()).unwrap();
    let limits = r#"[{"name": "spend", "key": "header:x-api-key", "tokens": 9630, "window_s": 86400, "count": "cost_micros"}]"#;
    let budgets = Budgets::from_json(limits).unwrap();
    let store = Arc::new(MemoryStore::new());
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .prices(llm_usage_cost::PriceTable::from_json(&table).unwrap())
        .budgets(budgets.clone(), store.clone())
        .budget_clock(|| NOW);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(&layer, &fx, &calls, "sk-spend").await.0.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(
        llm_usage_cost::BudgetStore::used(&*store, &bucket(&budgets, b"sk-spend"), NOW / 86400),
        Ok(9630)
    );
}
