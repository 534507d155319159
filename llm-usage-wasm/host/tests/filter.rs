//! The real release filter in the Envoy-like host: every fixture, chunkings, resets,
//! lifecycle, labels, profiles and configuration errors.

mod common;

use std::path::PathBuf;

use common::{asm_stats, fixtures, host, sleep_vm};
use llm_usage_wasm_host::replay::{self, check_expect, Delivery, Exchange};
use llm_usage_wasm_host::{Action, HostError, HostOptions, NodePaths, StatsConfig};

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("testdata/fixtures exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 40,
        "expected the fixture set, found {}",
        dirs.len()
    );
    dirs
}

fn load(name: &str) -> Exchange {
    let mut ex = replay::load_case(&fixtures().join(name), "api.example.com").unwrap();
    common::expectation(&mut ex);
    ex
}

/// Replays every fixture with `delivery` and checks tokens, model, Continue and bytes.
fn replay_all(delivery: &Delivery, only_small: Option<usize>) -> usize {
    replay_all_on(host(), delivery, only_small)
}

fn replay_all_on(
    host: &llm_usage_wasm_host::Host,
    delivery: &Delivery,
    only_small: Option<usize>,
) -> usize {
    let mut vm = common::sleep_vm_on(host, "");
    let mut bad = Vec::new();
    let mut ran = 0;
    for dir in cases() {
        let mut ex = replay::load_case(&dir, "api.example.com").unwrap();
        common::expectation(&mut ex);
        if only_small.is_some_and(|max| ex.request_body.len() + ex.response_body.len() > max) {
            continue;
        }
        ran += 1;
        let out = replay::run(&mut vm, &ex, delivery).unwrap();
        let expect = ex.expect.as_ref().expect("case.json has expect");
        let mismatches = check_expect(&out.filter_state, expect, "asm.llmproxy");
        if !mismatches.is_empty() {
            bad.push(format!("{}: {}", ex.name, mismatches.join("; ")));
        }
        if !out.all_continue {
            bad.push(format!("{}: a callback did not answer Continue", ex.name));
        }
        if !out.forwarded_unchanged {
            bad.push(format!(
                "{}: forwarded bytes differ from received bytes",
                ex.name
            ));
        }
    }
    assert!(vm.failure().is_none(), "the VM failed: {:?}", vm.failure());
    assert!(
        bad.is_empty(),
        "{} of {ran} exchanges wrong:\n{}",
        bad.len(),
        bad.join("\n")
    );
    ran
}

#[test]
fn every_fixture_gives_its_expected_tokens() {
    assert!(replay_all(&Delivery::default(), None) >= 40);
}

#[test]
fn every_fixture_in_fixed_chunks_with_an_empty_final_chunk() {
    let d = Delivery {
        chunk_size: 64,
        jitter: false,
        empty_final_chunk: true,
        ..Delivery::default()
    };
    replay_all(&d, None);
}

#[test]
fn every_fixture_ending_in_trailers() {
    let d = Delivery {
        chunk_size: 333,
        response_trailers: true,
        ..Delivery::default()
    };
    replay_all(&d, None);
}

#[test]
fn small_fixtures_one_byte_at_a_time() {
    let d = Delivery {
        chunk_size: 1,
        jitter: false,
        ..Delivery::default()
    };
    assert!(replay_all(&d, Some(3_000)) >= 5);
}

#[test]
fn a_reset_stream_is_finalised_in_on_log() {
    // No end-of-stream ever reaches the filter: Envoy goes straight to the access log.
    let mut vm = sleep_vm("");
    let ex = load("12-anthropic-messages-stream");
    let d = Delivery {
        reset: true,
        ..Delivery::default()
    };
    let out = replay::run(&mut vm, &ex, &d).unwrap();
    let fs = &out.filter_state;
    assert!(
        check_expect(fs, ex.expect.as_ref().unwrap(), "asm.llmproxy").is_empty(),
        "{fs:?}"
    );
    assert_eq!(fs["wasm.asm.llmproxy.complete"], "false");
    let cut = load("49-anthropic-stream-truncated");
    let out = replay::run(&mut vm, &cut, &d).unwrap();
    assert!(check_expect(
        &out.filter_state,
        cut.expect.as_ref().unwrap(),
        "asm.llmproxy"
    )
    .is_empty());
    assert_eq!(out.filter_state["wasm.asm.llmproxy.complete"], "false");
    // Counted exactly once each.
    let text = vm.prometheus(&asm_stats());
    let requests: u64 = text
        .lines()
        .filter(|l| l.starts_with("asm_llm_proxy_requests{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(requests, 2, "{text}");
}

#[test]
fn callbacks_run_in_envoy_order_and_all_continue() {
    let mut vm = sleep_vm("");
    let ex = load("02-openai-chat-stream-usage");
    let d = Delivery {
        chunk_size: 200,
        jitter: false,
        ..Delivery::default()
    };
    let out = replay::run(&mut vm, &ex, &d).unwrap();
    let s = vm.stream(out.stream).unwrap();
    let names: Vec<&str> = s.callbacks.iter().map(|(n, _)| *n).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert_eq!(names[0], "on_request_headers");
    assert!(pos("on_request_body") < pos("on_response_headers"));
    assert!(pos("on_response_headers") < pos("on_response_body"));
    assert_eq!(
        &names[names.len() - 3..],
        ["on_log", "on_done", "on_delete"]
    );
    assert!(s
        .callbacks
        .iter()
        .all(|(_, a)| matches!(a, Action::Continue | Action::None)));
    assert!(!s.modified && !s.stalled && s.local_response.is_none());
}

#[test]
fn filter_state_keys_are_single_path_elements() {
    let mut vm = sleep_vm("");
    let out = replay::run(
        &mut vm,
        &load("11-anthropic-messages-basic"),
        &Delivery::default(),
    )
    .unwrap();
    for key in out.filter_state.keys() {
        assert!(key.starts_with("wasm.asm.llmproxy."), "{key}");
        assert!(
            !key.contains('\0'),
            "{key:?}: the property path must be one element"
        );
    }
    for key in [
        "request_model",
        "request_prompt_tokens",
        "request_completion_tokens",
        "provider",
        "model",
    ] {
        assert!(
            out.filter_state
                .contains_key(&format!("wasm.asm.llmproxy.{key}")),
            "{key}"
        );
    }
    assert_eq!(out.filter_state["wasm.asm.llmproxy.provider"], "anthropic");
}

/// On the host clock: the response 200 ms after the request, in 100-byte chunks 10 ms
/// apart.
fn timed_delivery() -> Delivery {
    Delivery {
        chunk_size: 100,
        jitter: false,
        upstream_ms: 200,
        chunk_interval_ms: 10,
        ..Delivery::default()
    }
}

/// A millisecond figure of the filter state (`wasm.asm.llmproxy.<key>`).
fn state_ms(state: &std::collections::BTreeMap<String, String>, key: &str) -> f64 {
    state[&format!("wasm.asm.llmproxy.{key}")].parse().unwrap()
}

/// Time to first token is the time of the chunk that completes the first event with
/// generated text, on the host's simulated clock: 100-byte chunks 10 ms apart, so the
/// chunk index of that event's end gives the figure exactly, per dialect. (Anthropic's
/// `message_start`, an OpenAI role-only chunk and Cohere's `message-start` /
/// `content-start` come earlier and do not count.)
#[test]
fn time_to_first_token_is_the_first_event_with_text() {
    for (name, first_text) in [
        ("12-anthropic-messages-stream", &b"text_delta"[..]),
        ("02-openai-chat-stream-usage", b"\"content\":\"Bright"),
        ("33-cohere-chat-stream", b"content-delta"),
        ("09-openai-responses-stream", b"response.output_text.delta"),
    ] {
        let mut vm = sleep_vm("");
        let ex = load(name);
        let out = replay::run(&mut vm, &ex, &timed_delivery()).unwrap();
        let ms = |k: &str| state_ms(&out.filter_state, k);
        let body = &ex.response_body;
        let at = body
            .windows(first_text.len())
            .position(|w| w == first_text)
            .unwrap();
        // The end of that event: its blank line.
        let end = at + body[at..].windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        let chunk = (end - 1) / 100;
        assert_eq!(
            ms("time_to_first_token_ms"),
            ms("time_to_first_byte_ms") + 10.0 * chunk as f64,
            "{name}: first text ends at byte {end}, chunk {chunk}"
        );
        assert!(
            chunk > 0,
            "{name}: the first text is not in the first chunk"
        );
    }
}

#[test]
fn latency_is_measured_on_the_host_clock() {
    let mut vm = sleep_vm("");
    let ex = load("02-openai-chat-stream-usage");
    let out = replay::run(&mut vm, &ex, &timed_delivery()).unwrap();
    let ms = |k: &str| state_ms(&out.filter_state, k);
    assert_eq!(ms("time_to_first_byte_ms"), 200.0);
    let ttft = ms("time_to_first_token_ms");
    let duration = ms("request_duration_ms");
    assert!(ttft >= 200.0 && ttft < duration, "{ttft} {duration}");
    let output: f64 = out.filter_state["wasm.asm.llmproxy.request_completion_tokens"]
        .parse()
        .unwrap();
    let tpot = ms("time_per_output_token_ms");
    assert!(
        (tpot - (duration - ttft) / (output - 1.0)).abs() < 0.01,
        "{tpot}"
    );
    let h = vm.prometheus(&asm_stats());
    assert!(
        h.contains("# TYPE asm_llm_proxy_time_to_first_token_ms histogram"),
        "{h}"
    );
    assert!(
        h.contains("asm_llm_proxy_request_duration_ms_count{"),
        "{h}"
    );
}

fn chat(model: &str) -> Exchange {
    let body = format!(
        r#"{{"model":"{model}","choices":[],"usage":{{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}}}"#
    );
    Exchange {
        name: model.into(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        authority: "api.openai.com".into(),
        request_headers: vec![
            ("content-type".into(), "application/json".into()),
            ("user-type".into(), "pro|x=y".into()),
        ],
        request_body: br#"{"messages":[]}"#.to_vec(),
        status: 200,
        response_headers: vec![("content-type".into(), "application/json".into())],
        response_body: body.into_bytes(),
        expect: None,
    }
}

#[test]
fn hostile_model_names_cannot_forge_tags_or_grow_stats() {
    let mut vm = sleep_vm(
        r#"{"models": {"max_distinct": 2}, "extra_dimensions": [{"tag": "llmproxy_user_type", "from": "header:user-type"}]}"#,
    );
    for m in [
        "gpt-4o",
        "evil|llmproxy_model=forged",
        "third-model",
        "fourth-model",
        "gpt-4o",
    ] {
        replay::run(&mut vm, &chat(m), &Delivery::default()).unwrap();
    }
    let mut stats = asm_stats();
    stats.stats_tags.extend(
        StatsConfig::parse(r#"{"stats_tags":[{"tag_name":"llmproxy_user_type","regex":"(\\|llmproxy_user_type=([^|]*))"}]}"#)
            .unwrap()
            .stats_tags,
    );
    let text = vm.prometheus(&stats);
    let prompt: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("asm_llm_proxy_prompt_tokens{"))
        .collect();
    assert!(!text.contains(r#"llmproxy_model="forged""#), "{text}");
    assert!(
        prompt
            .iter()
            .any(|l| l.contains(r#"llmproxy_model="gpt-4o""#) && l.ends_with(" 10")),
        "{text}"
    );
    assert!(
        prompt
            .iter()
            .any(|l| l.contains(r#"llmproxy_model="evil_llmproxy_model_forged""#)),
        "{text}"
    );
    // The cap is 2: the third and fourth model share `other`.
    assert!(
        prompt
            .iter()
            .any(|l| l.contains(r#"llmproxy_model="other""#) && l.ends_with(" 10")),
        "{text}"
    );
    assert_eq!(prompt.len(), 3, "{text}");
    assert!(
        prompt
            .iter()
            .all(|l| l.contains(r#"llmproxy_user_type="pro_x_y""#)),
        "{text}"
    );
    // Every series has exactly the configured labels.
    assert!(
        prompt.iter().all(|l| l.matches("=\"").count() == 5),
        "{text}"
    );
}

#[test]
fn metric_definitions_are_memoised() {
    let mut vm = sleep_vm("");
    for _ in 0..5 {
        replay::run(&mut vm, &chat("gpt-4o"), &Delivery::default()).unwrap();
    }
    let defined = vm.calls("proxy_define_metric");
    assert!(defined > 0);
    assert_eq!(
        defined as usize,
        vm.stats().metrics.len(),
        "one definition per stat name"
    );
    let text = vm.prometheus(&asm_stats());
    assert!(
        text.lines()
            .any(|l| l.starts_with("asm_llm_proxy_requests{") && l.ends_with(" 5")),
        "{text}"
    );
}

/// A chat completion of `model` for a client of `user_type`, with its own token figures.
fn chat_of(model: &str, user_type: &str, prompt: u64, completion: u64) -> Exchange {
    let body = format!(
        r#"{{"model":"{model}","choices":[],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}}}}}"#,
        prompt + completion
    );
    let mut ex = chat(model);
    ex.request_headers[1].1 = user_type.into();
    ex.response_body = body.into_bytes();
    ex
}

/// The label a limiter admitting the first `max` distinct values gives `value`.
fn limited(seen: &mut Vec<String>, max: usize, value: &str) -> String {
    if seen.iter().any(|s| s == value) {
        return value.into();
    }
    if seen.len() < max {
        seen.push(value.into());
        return value.into();
    }
    "other".into()
}

#[test]
fn repeat_exchanges_with_interleaved_label_sets_count_on_their_own_series() {
    // Two models and two user types, interleaved, then values past both caps: each
    // exchange's figures land on its own label set's series, every time, whether the
    // set was seen before (metric ids kept per label set) or not.
    let mut vm = sleep_vm(
        r#"{"models": {"max_distinct": 2}, "max_label_values": 2,
            "extra_dimensions": [{"tag": "llmproxy_user_type", "from": "header:user-type"}]}"#,
    );
    let sequence = [
        ("gpt-4o", "a"),
        ("claude-sonnet-4", "b"),
        ("gpt-4o", "a"),
        ("gpt-4o", "b"),
        ("claude-sonnet-4", "a"),
        ("third-model", "a"),
        ("gpt-4o", "c"),
        ("fourth-model", "d"),
        ("claude-sonnet-4", "b"),
        ("third-model", "c"),
        ("gpt-4o", "a"),
    ];
    let (mut models, mut users) = (Vec::new(), Vec::new());
    // (requests, prompt, completion) per series.
    let mut expected: std::collections::BTreeMap<(String, String), [u64; 3]> =
        std::collections::BTreeMap::new();
    for (n, (model, user)) in sequence.iter().enumerate() {
        let (prompt, completion) = (10 + n as u64, 100 * (n as u64 + 1));
        replay::run(
            &mut vm,
            &chat_of(model, user, prompt, completion),
            &Delivery::default(),
        )
        .unwrap();
        let key = (limited(&mut models, 2, model), limited(&mut users, 2, user));
        let e = expected.entry(key).or_default();
        e[0] += 1;
        e[1] += prompt;
        e[2] += completion;
    }
    assert_eq!(expected.len(), 7, "{expected:?}");
    let stats = vm.stats();
    for (metric, i) in [
        ("asm_llm_proxy_requests", 0),
        ("asm_llm_proxy_prompt_tokens", 1),
        ("asm_llm_proxy_completion_tokens", 2),
    ] {
        for ((model, user), e) in &expected {
            let name = format!(
                "{metric}|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default\
                 |llmproxy_destination_service=api.openai.com|llmproxy_model={model}|llmproxy_user_type={user}"
            );
            assert_eq!(stats.counter(&name), Some(e[i]), "{name}\n{stats:?}");
        }
        let series = stats
            .metrics
            .keys()
            .filter(|k| k.starts_with(&format!("wasmcustom.{metric}|")))
            .count();
        assert_eq!(series, expected.len(), "{metric}\n{stats:?}");
    }
    // One definition per stat name, however often a label set repeats.
    assert_eq!(
        vm.calls("proxy_define_metric") as usize,
        stats.metrics.len()
    );
}

#[test]
fn label_sets_past_the_kept_ones_still_count_on_their_own_series() {
    // 1,100 label sets (44 models × 25 user types, under both caps of 100): more than the
    // 1,024 whose metric ids the filter keeps. Each set, kept or not, counts on its own
    // series, in two passes.
    let mut vm = sleep_vm(
        r#"{"extra_dimensions": [{"tag": "llmproxy_user_type", "from": "header:user-type"}]}"#,
    );
    let (models, users) = (44, 25);
    for _ in 0..2 {
        for m in 0..models {
            for u in 0..users {
                let ex = chat_of(&format!("m{m}"), &format!("u{u}"), 1 + u, 1);
                replay::run(&mut vm, &ex, &Delivery::default()).unwrap();
            }
        }
    }
    let stats = vm.stats();
    for m in 0..models {
        for u in 0..users {
            let series = |metric: &str| {
                format!(
                    "{metric}|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default\
                     |llmproxy_destination_service=api.openai.com|llmproxy_model=m{m}|llmproxy_user_type=u{u}"
                )
            };
            assert_eq!(stats.counter(&series("asm_llm_proxy_requests")), Some(2));
            assert_eq!(
                stats.counter(&series("asm_llm_proxy_prompt_tokens")),
                Some(2 * (1 + u))
            );
        }
    }
    let requests = stats
        .metrics
        .keys()
        .filter(|k| k.starts_with("wasmcustom.asm_llm_proxy_requests|"))
        .count();
    assert_eq!(requests as u64, models * users);
    assert_eq!(
        vm.calls("proxy_define_metric") as usize,
        stats.metrics.len()
    );
}

#[test]
fn interleaved_models_report_as_if_each_ran_alone_in_otel() {
    // `otel`: per-type counters with a modality tag and the token-type histogram, both
    // with a leading tag ahead of the dimensions. Models interleaved in one VM give the
    // same stats as each model's exchanges in a VM of its own (no cap is reached).
    let config = r#"{"profile": "otel"}"#;
    let models = ["gpt-4o", "o4-mini", "gpt-4o-mini"];
    let mut together = sleep_vm(config);
    let mut alone: Vec<_> = models.iter().map(|_| sleep_vm(config)).collect();
    for n in 0..12u64 {
        let m = (n as usize * 5 + n as usize / 4) % models.len();
        let ex = chat_of(models[m], "a", 3 + n, 40 + 7 * n);
        replay::run(&mut together, &ex, &Delivery::default()).unwrap();
        replay::run(&mut alone[m], &ex, &Delivery::default()).unwrap();
    }
    let mut merged = llm_usage_wasm_host::Stats::default();
    for vm in &alone {
        merged.merge(vm.stats());
    }
    assert_eq!(together.stats().metrics, merged.metrics);
    assert!(
        together.stats().metrics.keys().any(
            |k| k.starts_with("wasmcustom.gen_ai_client_token_usage|gen_ai_token_type=output|")
        ),
        "{:?}",
        together.stats()
    );
    assert_eq!(
        together.calls("proxy_define_metric") as usize,
        together.stats().metrics.len()
    );
}

#[test]
fn istio_tag_format_with_extra_stat_tags() {
    let mut vm = sleep_vm(
        r#"{"tag_format": "istio", "dimensions": [{"tag": "llm_model", "from": "model"}, {"tag": "llm_provider", "from": "provider"}],
            "metrics": {"prompt_tokens": "llm_prompt_tokens_total", "completion_tokens": "llm_completion_tokens_total"}}"#,
    );
    replay::run(
        &mut vm,
        &load("11-anthropic-messages-basic"),
        &Delivery::default(),
    )
    .unwrap();
    let name = vm
        .stats()
        .metrics
        .keys()
        .find(|k| k.ends_with("llm_prompt_tokens_total"))
        .unwrap()
        .clone();
    assert!(name.starts_with("wasmcustom.llm_model=.="), "{name}");
    let text = vm.prometheus(&StatsConfig::istio_extra_stat_tags(&[
        "llm_model",
        "llm_provider",
    ]));
    let expect = load("11-anthropic-messages-basic").expect.unwrap();
    let line = format!(
        "llm_prompt_tokens_total{{llm_model=\"{}\",llm_provider=\"anthropic\"}} {}",
        expect["model"].as_str().unwrap(),
        expect["input_tokens"]
    );
    assert!(text.lines().any(|l| l == line), "{line}\n{text}");
}

#[test]
fn otel_profile_names_labels_and_buckets() {
    let mut vm = sleep_vm(r#"{"profile": "otel"}"#);
    let ex = load("04-openai-chat-reasoning-cached");
    replay::run(&mut vm, &ex, &Delivery::default()).unwrap();
    let stats = StatsConfig::parse(
        r#"{"stats_config": {
          "stats_tags": [
            {"tag_name": "gen_ai_token_type", "regex": "(\\|gen_ai_token_type=([^|]*))"},
            {"tag_name": "gen_ai_provider_name", "regex": "(\\|gen_ai_provider_name=([^|]*))"},
            {"tag_name": "gen_ai_request_model", "regex": "(\\|gen_ai_request_model=([^|]*))"},
            {"tag_name": "gen_ai_response_model", "regex": "(\\|gen_ai_response_model=([^|]*))"}
          ],
          "histogram_bucket_settings": [
            {"match": {"prefix": "wasmcustom.gen_ai_client_token_usage"},
             "buckets": [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]}
          ]}}"#,
    )
    .unwrap();
    let text = vm.prometheus(&stats);
    let e = ex.expect.unwrap();
    let labels = |t: &str| {
        format!(
            "gen_ai_token_type=\"{t}\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"o4-mini\",gen_ai_response_model=\"{}\"",
            e["model"].as_str().unwrap()
        )
    };
    for (t, field) in [("input", "input_tokens"), ("output", "output_tokens")] {
        let line = format!(
            "gen_ai_client_token_usage_sum{{{}}} {}",
            labels(t),
            e[field]
        );
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
    // The subsets are not token types of the histogram (their own counters: figures.rs).
    for t in ["input_cache_read", "reasoning"] {
        assert!(
            !text.contains(&format!("gen_ai_token_type=\"{t}\"")),
            "{t}\n{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "gen_ai_client_token_usage_bucket{{{},le=\"4096\"}} 1",
            labels("input")
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "gen_ai_client_token_usage_bucket{{{},le=\"1024\"}} 0",
            labels("input")
        )),
        "{text}"
    );
    // One name, one unit: the filter records integer milliseconds, under names that say so.
    for h in [
        "gen_ai_server_request_duration_milliseconds",
        "gen_ai_server_time_to_first_token_milliseconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {h} histogram")),
            "{h}\n{text}"
        );
    }
    assert!(!text.contains("_seconds"), "{text}");
    assert!(!text.contains("asm_llm_proxy"), "{text}");
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let err = host()
        .start(HostOptions::with_config(r#"{"profil": "asm"}"#))
        .err()
        .expect("refused");
    match err {
        HostError::ConfigureFailed(logs) => {
            assert!(
                logs.iter().any(|l| l.contains("unknown field `profil`")),
                "{logs:?}"
            )
        }
        other => panic!("{other}"),
    }
    let err = host()
        .start(HostOptions::with_config("{not json"))
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("invalid llm-usage plugin configuration"),
        "{err}"
    );
}

#[test]
fn legacy_node_paths_are_a_fallback() {
    let mut opts = HostOptions::default()
        .node_metadata("WORKLOAD_NAME", "old-envoy")
        .node_metadata("NAMESPACE", "ns1");
    opts.node_paths = NodePaths::Legacy;
    let mut vm = host().start(opts).unwrap();
    replay::run(&mut vm, &chat("gpt-4o"), &Delivery::default()).unwrap();
    let text = vm.prometheus(&asm_stats());
    assert!(
        text.contains(
            r#"llmproxy_source_workload="old-envoy",llmproxy_source_workload_namespace="ns1""#
        ),
        "{text}"
    );
}

#[test]
fn non_llm_traffic_is_left_alone() {
    let mut vm = sleep_vm("");
    let id = vm.new_stream();
    vm.request_headers(
        id,
        &[
            (":method", "GET"),
            (":path", "/healthz"),
            (":authority", "svc.local"),
        ],
        true,
    )
    .unwrap();
    vm.response_headers(
        id,
        &[(":status", "200"), ("content-type", "text/plain")],
        false,
    )
    .unwrap();
    vm.response_body(id, b"ok", true).unwrap();
    vm.complete(id).unwrap();
    assert!(vm.filter_state(id).is_empty(), "{:?}", vm.filter_state(id));
    assert!(vm.stats().metrics.is_empty());
    assert_eq!(vm.stream(id).unwrap().forwarded_response, b"ok");
}

#[test]
fn max_body_bytes_limits_inspection() {
    let mut vm = sleep_vm(r#"{"max_body_bytes": 16}"#);
    let out = replay::run(&mut vm, &load("01-openai-chat-basic"), &Delivery::default()).unwrap();
    assert!(out.forwarded_unchanged && out.all_continue);
    assert!(
        !out.filter_state
            .contains_key("wasm.asm.llmproxy.request_prompt_tokens"),
        "{:?}",
        out.filter_state
    );
}

#[test]
fn the_module_imports_only_what_envoy_provides() {
    let imports = host().imports();
    assert!(
        imports
            .iter()
            .all(|i| i.starts_with("env.proxy_") || i.starts_with("wasi_snapshot_preview1.")),
        "{imports:?}"
    );
    for needed in [
        "env.proxy_set_property",
        "env.proxy_define_metric",
        "env.proxy_get_property",
    ] {
        assert!(
            imports.iter().any(|i| i == needed),
            "{needed} not in {imports:?}"
        );
    }
}

#[test]
fn host_failures_never_stop_traffic_and_are_logged_once() {
    let failing = [
        "proxy_set_property",
        "proxy_define_metric",
        "proxy_get_header_map_pairs",
        "proxy_get_buffer_bytes",
        "proxy_get_property",
    ];
    let mut opts = HostOptions::default().node_metadata("WORKLOAD_NAME", "sleep");
    opts.fail_calls = failing.iter().map(|s| s.to_string()).collect();
    let mut vm = host()
        .start(opts)
        .expect("starts even when host calls fail");
    for name in [
        "01-openai-chat-basic",
        "12-anthropic-messages-stream",
        "48-anthropic-gzip-sse",
    ] {
        let out = replay::run(&mut vm, &load(name), &Delivery::default()).unwrap();
        assert!(out.all_continue && out.forwarded_unchanged, "{name}");
        assert!(out.filter_state.is_empty());
    }
    assert!(vm.failure().is_none());
    let warnings: Vec<&str> = vm
        .logs()
        .iter()
        .filter(|l| l.level == 3)
        .map(|l| l.message.as_str())
        .collect();
    for call in ["set_property", "get_header_map_pairs", "get_buffer_bytes"] {
        let n = warnings
            .iter()
            .filter(|m| m.starts_with(&format!("llm-usage: {call} failed")))
            .count();
        assert!(n <= 1, "{call} logged {n} times: {warnings:?}");
    }
    assert!(
        warnings
            .iter()
            .any(|m| m.starts_with("llm-usage: get_header_map_pairs failed")),
        "{warnings:?}"
    );
}

#[cfg(feature = "wasmtime")]
#[test]
fn every_fixture_on_wasmtime() {
    let host = llm_usage_wasm_host::Host::from_file_with(
        common::wasm_path(),
        llm_usage_wasm_host::EngineKind::Wasmtime,
    )
    .expect("wasmtime compiles the filter");
    assert!(replay_all_on(&host, &Delivery::default(), None) >= 40);
    let d = Delivery {
        chunk_size: 1,
        jitter: false,
        ..Delivery::default()
    };
    replay_all_on(&host, &d, Some(3_000));
}

/// A stream without usage: the record estimates input and output from the text, filter
/// state says `estimated`, and the estimated-requests counter counts it (and only it).
#[test]
fn estimated_records_are_flagged_and_counted() {
    let mut vm = sleep_vm("");
    for name in [
        "03-openai-chat-stream-no-usage",
        "02-openai-chat-stream-usage",
    ] {
        let ex = load(name);
        let out = replay::run(&mut vm, &ex, &Delivery::default()).unwrap();
        let estimated = name.contains("no-usage");
        assert_eq!(
            out.filter_state["wasm.asm.llmproxy.estimated"],
            estimated.to_string(),
            "{name}"
        );
        if estimated {
            assert!(out
                .filter_state
                .contains_key("wasm.asm.llmproxy.request_completion_tokens"));
        }
    }
    let text = vm.prometheus(&asm_stats());
    let count = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("asm_llm_proxy_estimated_requests"), 1.0, "{text}");
    assert_eq!(count("asm_llm_proxy_requests"), 2.0, "{text}");
}
