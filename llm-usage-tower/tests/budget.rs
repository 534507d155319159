//! Token budgets through the async stores: the in-memory store and a real `redis-server`
//! started on a loopback port by the test (and stopped by a Drop guard), including a
//! server restart mid-test (fail open, then recover).
//!
//! Without `redis-server` on the PATH the Redis tests print a skip line, unless
//! `LLM_USAGE_REQUIRE_TOOLS=1` (CI), where they fail with a clear message.

use llm_usage_core::{Provider, UsageRecord};
use llm_usage_cost::{Budgets, Decision, KeyFacts};
use llm_usage_tower::budget::{self, AsyncBudgetStore, MemoryStore, RedisStore};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
