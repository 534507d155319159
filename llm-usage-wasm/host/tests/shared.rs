//! Shared data with CAS across several VMs of one plugin, and local replies, as Envoy
//! implements them, through the probe module (`llm-usage-wasm/host/probe`): llm-usage-cost
//! token budgets kept in shared data, checked at the request headers, charged with a CAS
//! loop when the stream ends, and answered with `proxy_send_local_response` once spent.

mod common;

use llm_usage_cost::{Budgets, CasBudgetStore, KeyFacts};
use llm_usage_wasm_host::{Action, Host, HostOptions, Vm};
use std::sync::OnceLock;

/// The probe's configuration: one limit per `x-key`, counting total tokens.
fn config(tokens: u64, window_s: u64) -> String {
    format!(
        r#"{{"token_limits": [{{"name": "per-key", "key": "header:x-key", "tokens": {tokens}, "window_s": {window_s}, "count": "total"}}]}}"#
    )
}

fn probe_host() -> Host {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    let wasm = WASM.get_or_init(|| std::fs::read(common::probe_wasm_path()).unwrap());
    Host::new(wasm).expect("the probe loads")
}

fn workers(host: &Host, n: usize, config: &str) -> Vec<Vm> {
    (0..n)
        .map(|_| {
            host.start(HostOptions::with_config(config))
                .expect("the VM starts")
        })
        .collect()
}

/// One exchange: headers with `x-key` (and `x-charge`), a small JSON body each way, the
/// end of the stream. Returns the stream id and the request-headers action.
fn exchange(vm: &mut Vm, key: &str, charge: u64, method: &str) -> (u32, Action) {
    let id = vm.new_stream();
    let charge = charge.to_string();
    let a = vm
        .request_headers(
            id,
            &[
                (":method", method),
                (":path", "/v1/chat/completions"),
                (":authority", "api.openai.com"),
                ("x-key", key),
                ("x-charge", &charge),
            ],
            false,
        )
        .unwrap();
    vm.request_body(id, br#"{"model":"gpt-4o"}"#, true).unwrap();
    vm.response_headers(
        id,
        &[(":status", "200"), ("content-type", "application/json")],
        false,
    )
    .unwrap();
    vm.response_body(id, br#"{"usage":{}}"#, true).unwrap();
    vm.complete(id).unwrap();
    (id, a)
}

/// The counter of `key`'s bucket in a window, as the probe stores it.
fn counter(host: &Host, key: &str, window: u64) -> u64 {
    let b = Budgets::from_json(
        r#"[{"name": "per-key", "key": "header:x-key", "tokens": 1, "window_s": 60}]"#,
    )
    .unwrap();
    let headers: &[(&str, &[u8])] = &[("x-key", key.as_bytes())];
    let bucket = &b.buckets(&KeyFacts {
        headers,
        ..Default::default()
    })[0];
    host.shared_data()
        .get(
            "",
            CasBudgetStore::<()>::key(&bucket.name, window).as_bytes(),
        )
        .map(|(v, _)| String::from_utf8(v).unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// The VMs' clock (2026-01-01T00:00:00Z) in 60 s windows.
const WINDOW: u64 = 1_767_225_600 / 60;

#[test]
fn four_workers_share_one_budget_and_answer_429_exactly_when_spent() {
    let host = probe_host();
    let mut vms = workers(&host, 4, &config(10, 60));
    let mut passed = 0;
    for i in 0..16 {
        let vm = &mut vms[i % 4];
        let (id, action) = exchange(vm, "team-a", 1, "POST");
        let s = vm.stream(id).unwrap();
        match vm.local_response(id) {
            None => {
                passed += 1;
                assert_eq!(action, Action::Continue);
                assert!(s.upstream_request_headers.is_some());
                assert_eq!(s.forwarded_response, br#"{"usage":{}}"#);
            }
            Some(reply) => {
                assert_eq!(action, Action::Pause);
                assert_eq!(reply.status, 429);
                // Never reached the upstream: no request went up, nothing more of the
                // request or any upstream response reached the filter.
                assert!(s.upstream_request_headers.is_none());
                assert!(s.forwarded_request.is_empty());
                let names: Vec<&str> = s.callbacks.iter().map(|(c, _)| *c).collect();
                assert_eq!(
                    names,
                    [
                        "on_request_headers",
                        "on_response_headers",
                        "on_response_body",
                        "on_log",
                        "on_done",
                        "on_delete"
                    ],
                    "the local reply goes through the filter's encode path"
                );
                // Envoy's local-reply headers: :status, the filter's (lower-cased), the
                // body's content-length; no text/plain since the filter named a type.
                let h = s.downstream_response_headers.as_ref().unwrap();
                let get = |n: &str| {
                    h.iter()
                        .filter(|(k, _)| k == n.as_bytes())
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .collect::<Vec<_>>()
                };
                assert_eq!(get(":status"), ["429"]);
                assert_eq!(get("content-type"), ["application/json"]);
                // 2026-01-01T00:00:00Z starts a 60 s window.
                assert_eq!(get("retry-after"), ["60"]);
                assert_eq!(get("x-ratelimit-limit-tokens"), ["10"]);
                assert_eq!(get("content-length"), [reply.body.len().to_string()]);
                assert_eq!(s.forwarded_response, reply.body);
                assert_eq!(reply.details, "token_budget_exhausted");
                assert!(String::from_utf8_lossy(&reply.body).contains("rate_limit_exceeded"));
            }
        }
    }
    assert_eq!(passed, 10, "exactly the budget passes, across four workers");
    assert_eq!(
        counter(&host, "team-a", WINDOW),
        10,
        "every passed exchange charged"
    );
    // Another key has its own budget.
    assert!(exchange(&mut vms[0], "team-b", 1, "POST").1 == Action::Continue);
}

#[test]
fn a_concurrent_burst_on_four_threads_loses_no_update() {
    let host = probe_host();
    let vms = workers(&host, 4, &config(1_000_000_000, 60));
    // The key exists before the burst: cpp-host has no create-if-absent, so two workers
    // creating the same key at once can both write (see the host's shared module).
    let mut vms: Vec<Vm> = vms;
    exchange(&mut vms[0], "burst", 1, "POST");
    let per_worker = 300u64;
    std::thread::scope(|s| {
        for (w, vm) in vms.iter_mut().enumerate() {
            s.spawn(move || {
                for i in 0..per_worker {
                    let (id, a) = exchange(vm, "burst", 1 + (i + w as u64) % 5, "POST");
                    assert_eq!(a, Action::Continue);
                    assert!(vm.local_response(id).is_none());
                }
            });
        }
    });
    let charged: u64 = (0..4u64)
        .map(|w| (0..per_worker).map(|i| 1 + (i + w) % 5).sum::<u64>())
        .sum();
    assert_eq!(counter(&host, "burst", WINDOW), 1 + charged);
}

#[test]
fn the_window_rolls_over() {
    let host = probe_host();
    let mut vms = workers(&host, 1, &config(3, 60));
    let vm = &mut vms[0];
    for _ in 0..3 {
        assert_eq!(exchange(vm, "k", 1, "POST").1, Action::Continue);
    }
    assert_eq!(exchange(vm, "k", 1, "POST").1, Action::Pause);
    vm.advance_ms(59_000);
    assert_eq!(exchange(vm, "k", 1, "POST").1, Action::Pause, "same window");
    vm.advance_ms(1_000);
    assert_eq!(
        exchange(vm, "k", 1, "POST").1,
        Action::Continue,
        "next window"
    );
    assert_eq!(counter(&host, "k", WINDOW + 1), 1);
}

#[test]
fn a_cut_stream_is_charged_when_it_ends() {
    let host = probe_host();
    let mut vms = workers(&host, 1, &config(100, 60));
    let vm = &mut vms[0];
    let id = vm.new_stream();
    vm.request_headers(
        id,
        &[
            (":method", "POST"),
            (":path", "/v1/messages"),
            (":authority", "x"),
            ("x-key", "cut"),
            ("x-charge", "7"),
        ],
        true,
    )
    .unwrap();
    vm.response_headers(
        id,
        &[(":status", "200"), ("content-type", "text/event-stream")],
        false,
    )
    .unwrap();
    vm.response_body(id, b"event: message_start\ndata: {", false)
        .unwrap();
    // The upstream connection drops: no end of stream, straight to the access log.
    vm.complete(id).unwrap();
    assert_eq!(counter(&host, "cut", WINDOW), 7);
}

#[test]
fn a_host_that_refuses_shared_data_fails_open_and_logs_once() {
    let host = probe_host();
    let mut opts = HostOptions::with_config(config(1, 60));
    opts.fail_calls = vec!["proxy_get_shared_data".into()];
    let mut vm = host.start(opts).unwrap();
    for _ in 0..5 {
        let (id, a) = exchange(&mut vm, "k", 1, "POST");
        assert_eq!(a, Action::Continue);
        assert!(vm.local_response(id).is_none());
    }
    let warnings = vm
        .logs()
        .iter()
        .filter(|l| l.message.contains("failing open"))
        .count();
    assert_eq!(warnings, 1);
    assert_eq!(vm.state().refused.get("proxy_get_shared_data"), Some(&10));
}

#[test]
fn vm_ids_separate_shared_data_and_head_replies_carry_no_body() {
    let host = probe_host();
    let mut a = host.start(HostOptions::with_config(config(1, 60))).unwrap();
    let mut opts = HostOptions::with_config(config(1, 60));
    opts.vm_id = "other".into();
    let mut b = host.start(opts).unwrap();
    assert_eq!(exchange(&mut a, "k", 1, "POST").1, Action::Continue);
    assert_eq!(
        exchange(&mut b, "k", 1, "POST").1,
        Action::Continue,
        "its own budget"
    );
    let (id, act) = exchange(&mut a, "k", 1, "HEAD");
    assert_eq!(act, Action::Pause);
    let s = a.stream(id).unwrap();
    let h = s.downstream_response_headers.as_ref().unwrap();
    assert!(h
        .iter()
        .all(|(k, _)| k != b"content-length" && k != b"content-type"));
    assert!(s.forwarded_response.is_empty());
    assert!(s.response_headers_only);
}

#[test]
fn replay_deals_exchanges_to_workers_and_prints_local_replies() {
    let dir = std::env::temp_dir().join(format!("llm-usage-host-workers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("probe.conf");
    // One budget for the upstream authority: three exchanges pass, then 429.
    std::fs::write(
        &config,
        r#"{"token_limits": [{"name": "all", "key": "all", "tokens": 3, "window_s": 60}]}"#,
    )
    .unwrap();
    let fixtures = common::fixtures();
    let cases: Vec<String> = [
        "01-openai-chat-basic",
        "02-openai-chat-stream-usage",
        "11-anthropic-messages-basic",
        "12-anthropic-messages-stream",
        "16-gemini-generate-content",
        "30-ollama-chat",
    ]
    .iter()
    .map(|c| fixtures.join(c).to_string_lossy().into_owned())
    .collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llm-usage-wasm-host"))
        .args(["replay", "--wasm"])
        .arg(common::probe_wasm_path())
        .arg("--config")
        .arg(&config)
        .args(["--workers", "4", "--authority", "api.example.com"])
        .args(&cases)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["worker"], i % 4, "dealt in turn");
        if i < 3 {
            assert_eq!(l["local_reply"], serde_json::Value::Null, "{l}");
        } else {
            assert_eq!(l["local_reply"]["status"], 429, "{l}");
            let body: serde_json::Value =
                serde_json::from_str(l["local_reply"]["body"].as_str().unwrap()).unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with("Token budget \"all\" exhausted: 3 of 3 tokens"),
                "{message}"
            );
            assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            let headers = l["local_reply"]["headers"].as_array().unwrap();
            assert!(headers.contains(&serde_json::json!(["x-ratelimit-remaining-tokens", "0"])));
            assert!(headers.iter().any(|h| h[0] == "retry-after"));
        }
    }
}

#[test]
fn hostile_keys_reach_shared_data_only_as_hashes() {
    let host = probe_host();
    let mut vms = workers(&host, 2, &config(2, 60));
    let huge = "k".repeat(1 << 20);
    for (i, key) in [huge.as_str(), "sk|per-key|0|1\nx", "sk|per-key|0|1\ny"]
        .iter()
        .enumerate()
    {
        let vm = &mut vms[i % 2];
        let (id, a) = exchange(vm, key, 1, "POST");
        assert_eq!(a, Action::Continue, "key {i}");
        assert!(vm.local_response(id).is_none());
    }
    // Two different keys with `|` and newlines: two counters; the 1 MiB key: a third.
    let keys = host.shared_data().snapshot("");
    assert_eq!(keys.len(), 3);
    for (k, v) in &keys {
        let k = String::from_utf8(k.clone()).unwrap();
        assert!(
            k.len() < 80 && !k.contains("sk|") && !k.contains('\n'),
            "{k:?}"
        );
        assert_eq!(v, b"1");
    }
    assert_eq!(counter(&host, &huge, WINDOW), 1);
}
