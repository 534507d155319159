//! Token budgets in the real release filter (issue 17): `token_limits` kept in proxy-wasm
//! shared data with CAS across several VMs of one plugin (Envoy's workers), checked at the
//! request headers, charged with the exchange's real usage when the stream ends (cut
//! streams included), and answered with `proxy_send_local_response` once spent, with the
//! host's shared data and local replies as Envoy implements them.

mod common;

use llm_usage_cost::{Budgets, CasBudgetStore, KeyFacts};
use llm_usage_wasm_host::replay::{self, Delivery, Outcome};
use llm_usage_wasm_host::{Action, Host, HostOptions, Vm};

/// One limit per `x-key`, counting total tokens.
fn config(tokens: u64, window_s: u64) -> String {
    format!(
        r#"{{"token_limits": [{{"name": "per-key", "key": "header:x-key", "tokens": {tokens}, "window_s": {window_s}, "count": "total"}}]}}"#
    )
}

/// The filter, compiled once per test.
fn filter_host() -> Host {
    Host::from_file(common::wasm_path()).expect("the filter loads")
}

fn workers(host: &Host, n: usize, config: &str) -> Vec<Vm> {
    (0..n)
        .map(|_| {
            host.start(HostOptions::with_config(config))
                .expect("the VM starts")
        })
        .collect()
}

/// Fixture 01 (an OpenAI chat completion: 27 + 8 = 35 total tokens).
const TOKENS: u64 = 35;

/// Replays fixture `case` with `x-key: key`.
fn exchange_with(vm: &mut Vm, case: &str, key: &str, method: &str, d: &Delivery) -> Outcome {
    let mut ex = replay::load_case(&common::fixtures().join(case), "api.example.com").unwrap();
    ex.method = method.to_owned();
    ex.request_headers
        .push(("x-key".to_owned(), key.to_owned()));
    replay::run(vm, &ex, d).unwrap()
}

fn exchange(vm: &mut Vm, key: &str) -> Outcome {
    exchange_with(
        vm,
        "01-openai-chat-basic",
        key,
        "POST",
        &Delivery::default(),
    )
}

/// The action the filter answered at the request headers.
fn head_action(vm: &Vm, out: &Outcome) -> Action {
    vm.stream(out.stream).unwrap().callbacks[0].1
}

/// The counter of `key`'s bucket in a window, as `llm-usage-cost` names it.
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
    let host = filter_host();
    // Ten exchanges' worth: the eleventh and later find the budget spent.
    let mut vms = workers(&host, 4, &config(10 * TOKENS, 60));
    let mut passed = 0;
    for i in 0..16 {
        let vm = &mut vms[i % 4];
        let out = exchange(vm, "team-a");
        let s = vm.stream(out.stream).unwrap();
        match &out.local_response {
            None => {
                passed += 1;
                assert_eq!(head_action(vm, &out), Action::Continue);
                assert!(out.forwarded_unchanged && out.all_continue);
                assert_eq!(
                    out.filter_state
                        .get("wasm.asm.llmproxy.request_total_tokens")
                        .map(String::as_str),
                    Some("35")
                );
            }
            Some(reply) => {
                assert_eq!(head_action(vm, &out), Action::Pause);
                assert_eq!(reply.status, 429);
                // Never reached the upstream, and nothing of it is reported as an exchange.
                assert!(s.upstream_request_headers.is_none());
                assert!(s.forwarded_request.is_empty());
                assert_eq!(
                    out.filter_state.get("wasm.asm.llmproxy.budget_exceeded"),
                    Some(&"per-key".to_owned())
                );
                assert!(!out
                    .filter_state
                    .contains_key("wasm.asm.llmproxy.request_total_tokens"));
                let h = s.downstream_response_headers.as_ref().unwrap();
                let get = |n: &str| {
                    h.iter()
                        .filter(|(k, _)| k == n.as_bytes())
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .collect::<Vec<_>>()
                };
                assert_eq!(get(":status"), ["429"]);
                assert_eq!(get("content-type"), ["application/json"]);
                assert_eq!(get("x-ratelimit-limit-tokens"), ["350"]);
                assert_eq!(get("x-ratelimit-remaining-tokens"), ["0"]);
                // 2026-01-01T00:00:00Z starts a 60 s window; a few seconds of replay since.
                let retry: u64 = get("retry-after")[0].parse().unwrap();
                assert!((50..=60).contains(&retry), "{retry}");
                assert_eq!(s.forwarded_response, reply.body);
                assert_eq!(reply.details, "llm_usage_token_budget_exhausted");
                let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
                assert_eq!(
                    body["error"]["code"], "rate_limit_exceeded",
                    "OpenAI's shape"
                );
            }
        }
    }
    assert_eq!(passed, 10, "exactly the budget passes, across four workers");
    assert_eq!(
        counter(&host, "team-a", WINDOW),
        10 * TOKENS,
        "every passed exchange charged its real total"
    );
    let rejected: u64 = vms
        .iter()
        .map(|vm| {
            vm.stats()
                .counter("asm_llm_proxy_budget_rejected_requests|llmproxy_source_workload=unknown|llmproxy_source_workload_namespace=unknown|llmproxy_destination_service=api.example.com|llmproxy_model=unknown|llmproxy_budget_limit=per-key")
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(rejected, 6);
    // Another key has its own budget.
    assert!(exchange(&mut vms[0], "team-b").local_response.is_none());
}

#[test]
fn a_concurrent_burst_on_four_threads_loses_no_update() {
    let host = filter_host();
    let mut vms = workers(&host, 4, &config(1_000_000_000, 60));
    // The key exists before the burst: cpp-host has no create-if-absent, so two workers
    // creating the same key at once can both write (see the host's shared module).
    exchange(&mut vms[0], "burst");
    let per_worker = 25u64;
    std::thread::scope(|s| {
        for vm in vms.iter_mut() {
            s.spawn(move || {
                for _ in 0..per_worker {
                    let out = exchange(vm, "burst");
                    assert!(out.local_response.is_none() && out.all_continue);
                }
            });
        }
    });
    assert_eq!(
        counter(&host, "burst", WINDOW),
        (1 + 4 * per_worker) * TOKENS
    );
}

#[test]
fn the_window_rolls_over() {
    let host = filter_host();
    let mut vms = workers(&host, 1, &config(3 * TOKENS, 60));
    let vm = &mut vms[0];
    for _ in 0..3 {
        assert!(exchange(vm, "k").local_response.is_none());
    }
    assert!(exchange(vm, "k").local_response.is_some());
    // Each replay takes about 0.12 s of the VM's clock (upstream 120 ms, chunks): 58.5 s
    // into the window, then past its end.
    vm.advance_ms(58_000);
    assert!(exchange(vm, "k").local_response.is_some(), "same window");
    vm.advance_ms(2_000);
    let out = exchange(vm, "k");
    assert!(out.local_response.is_none(), "next window");
    assert_eq!(counter(&host, "k", WINDOW + 1), TOKENS);
}

#[test]
fn a_cut_stream_is_charged_with_what_it_carried() {
    let host = filter_host();
    let mut vms = workers(&host, 1, &config(1_000_000, 60));
    let vm = &mut vms[0];
    // An Anthropic stream cut after `message_start` and a text delta: its input is
    // reported, its output estimated from the text seen.
    let case = "12-anthropic-messages-stream";
    let mut ex = replay::load_case(&common::fixtures().join(case), "api.example.com").unwrap();
    let d = Delivery {
        reset: true,
        ..Delivery::default()
    };
    // Keep the stream up to its second text delta.
    let text = String::from_utf8(ex.response_body.clone()).unwrap();
    let end = text
        .match_indices("event: content_block_delta")
        .nth(1)
        .unwrap()
        .0;
    ex.response_body.truncate(end);
    ex.request_headers
        .push(("x-key".to_owned(), "cut".to_owned()));
    let out = replay::run(vm, &ex, &d).unwrap();
    let state = |k: &str| {
        out.filter_state
            .get(&format!("wasm.asm.llmproxy.{k}"))
            .cloned()
    };
    assert_eq!(state("complete").as_deref(), Some("false"));
    let total: u64 = state("request_total_tokens").unwrap().parse().unwrap();
    assert!(total > 0);
    assert_eq!(
        counter(&host, "cut", WINDOW),
        total,
        "charged what the record holds"
    );
}

#[test]
fn a_host_that_refuses_shared_data_fails_open_and_logs_once() {
    let host = filter_host();
    let mut opts = HostOptions::with_config(config(1, 60));
    opts.fail_calls = vec!["proxy_get_shared_data".into()];
    let mut vm = host.start(opts).unwrap();
    for _ in 0..5 {
        let out = exchange(&mut vm, "k");
        assert!(out.local_response.is_none() && out.all_continue && out.forwarded_unchanged);
    }
    let warnings = vm
        .logs()
        .iter()
        .filter(|l| l.message.contains("fail open"))
        .count();
    assert_eq!(warnings, 1);
    // Each exchange: one failed read at the check, one at the charge.
    assert_eq!(vm.state().refused.get("proxy_get_shared_data"), Some(&10));
    assert_eq!(
        vm.stats().counter("asm_llm_proxy_budget_store_errors"),
        Some(10)
    );
}

#[test]
fn vm_ids_separate_shared_data_and_head_replies_carry_no_body() {
    let host = filter_host();
    let mut a = host.start(HostOptions::with_config(config(1, 60))).unwrap();
    let mut opts = HostOptions::with_config(config(1, 60));
    opts.vm_id = "other".into();
    let mut b = host.start(opts).unwrap();
    assert!(exchange(&mut a, "k").local_response.is_none());
    assert!(
        exchange(&mut b, "k").local_response.is_none(),
        "its own budget"
    );
    let out = exchange_with(
        &mut a,
        "01-openai-chat-basic",
        "k",
        "HEAD",
        &Delivery::default(),
    );
    assert_eq!(head_action(&a, &out), Action::Pause);
    let s = a.stream(out.stream).unwrap();
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
    let config = dir.join("filter.conf");
    // One budget for all traffic: the first exchange (35 tokens) spends it, then 429s
    // shaped like each provider's own error.
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
        .arg(common::wasm_path())
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
        if i == 0 {
            assert_eq!(l["local_reply"], serde_json::Value::Null, "{l}");
            continue;
        }
        assert_eq!(l["local_reply"]["status"], 429, "{l}");
        let body: serde_json::Value =
            serde_json::from_str(l["local_reply"]["body"].as_str().unwrap()).unwrap();
        let headers = l["local_reply"]["headers"].as_array().unwrap();
        assert!(headers.contains(&serde_json::json!(["x-ratelimit-remaining-tokens", "0"])));
        assert!(headers.iter().any(|h| h[0] == "retry-after"));
        // The provider's own error shape, detected from the request.
        let message = match cases[i].rsplit('/').next().unwrap() {
            c if c.contains("anthropic") => {
                assert_eq!(body["type"], "error", "{body}");
                assert_eq!(body["error"]["type"], "rate_limit_error");
                body["error"]["message"].clone()
            }
            c if c.contains("gemini") => {
                assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED", "{body}");
                assert_eq!(body["error"]["code"], 429);
                body["error"]["message"].clone()
            }
            _ => {
                assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
                body["error"]["message"].clone()
            }
        };
        let message = message.as_str().unwrap();
        assert!(
            message.starts_with("Token budget \"all\" exhausted: 35 of 3 tokens"),
            "{message}"
        );
    }
}

#[test]
fn hostile_keys_reach_shared_data_only_as_hashes() {
    let host = filter_host();
    let mut vms = workers(&host, 2, &config(2 * TOKENS, 60));
    let huge = "k".repeat(1 << 20);
    for (i, key) in [huge.as_str(), "sk|per-key|0|1\nx", "sk|per-key|0|1\ny"]
        .iter()
        .enumerate()
    {
        let vm = &mut vms[i % 2];
        let out = exchange(vm, key);
        assert!(out.local_response.is_none() && out.all_continue, "key {i}");
        // Nothing of a key reaches a log.
        assert!(vm.logs().iter().all(|l| !l.message.contains("sk|")));
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
        assert_eq!(v, TOKENS.to_string().as_bytes());
    }
    assert_eq!(counter(&host, &huge, WINDOW), TOKENS);
}
