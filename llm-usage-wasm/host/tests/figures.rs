//! The figures of issue 16 through the real filter with non-zero values: an Anthropic
//! Messages response with a 5-minute / 1-hour cache-write split, server-side web search
//! and fetch, and a service tier; an OpenAI chat completion with audio in and out. Filter
//! state under the record's names, the `asm` per-part counters and web search and fetch
//! counters, and in `otel` the histogram of `input` and `output` with a counter per token
//! type.

mod common;

use common::{asm_stats, otel_stats, sleep_vm};
use llm_usage_wasm_host::replay::{self, Delivery, Exchange};

/// Anthropic's Messages JSON (its documented `usage` with `cache_creation` and
/// `server_tool_use`).
fn anthropic() -> Exchange {
    Exchange {
        name: "anthropic-web-search-cache-1h".into(),
        method: "POST".into(),
        path: "/v1/messages".into(),
        authority: "api.anthropic.com".into(),
        request_headers: vec![
            ("content-type".into(), "application/json".into()),
            ("anthropic-version".into(), "2023-06-01".into()),
        ],
        request_body: br#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Search the news."}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#.to_vec(),
        status: 200,
        response_headers: vec![("content-type".into(), "application/json".into())],
        response_body: br#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Here is the news."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":100,"cache_creation_input_tokens":300,"cache_read_input_tokens":1000,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":50,"server_tool_use":{"web_search_requests":2,"web_fetch_requests":1},"service_tier":"standard"}}"#.to_vec(),
        expect: None,
    }
}

/// OpenAI's chat completion with audio (`prompt_tokens_details.audio_tokens`,
/// `completion_tokens_details.audio_tokens`).
fn openai_audio() -> Exchange {
    Exchange {
        name: "openai-audio".into(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        authority: "api.openai.com".into(),
        request_headers: vec![("content-type".into(), "application/json".into())],
        request_body: br#"{"model":"gpt-4o-audio-preview","modalities":["text","audio"],"audio":{"voice":"alloy","format":"wav"},"messages":[{"role":"user","content":"Say hi."}]}"#.to_vec(),
        status: 200,
        response_headers: vec![("content-type".into(), "application/json".into())],
        response_body: br#"{"id":"chatcmpl-AaBb","object":"chat.completion","created":1733000000,"model":"gpt-4o-audio-preview-2024-12-17","choices":[{"index":0,"message":{"role":"assistant","content":null,"audio":{"id":"audio_1","data":"UklGRg==","expires_at":1733003600,"transcript":"Hi!"}},"finish_reason":"stop"}],"usage":{"prompt_tokens":120,"completion_tokens":80,"total_tokens":200,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":100},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":60}},"service_tier":"default"}"#.to_vec(),
        expect: None,
    }
}

#[test]
fn new_figures_reach_filter_state_and_counters() {
    let mut vm = sleep_vm("");
    let out = replay::run(&mut vm, &anthropic(), &Delivery::default()).unwrap();
    let state = |k: &str| {
        out.filter_state
            .get(&format!("wasm.asm.llmproxy.{k}"))
            .map(String::as_str)
    };
    assert_eq!(state("request_prompt_tokens"), Some("1400"));
    assert_eq!(state("request_cache_creation_tokens"), Some("300"));
    assert_eq!(state("cache_creation_5m_input_tokens"), Some("100"));
    assert_eq!(state("cache_creation_1h_input_tokens"), Some("200"));
    assert_eq!(state("web_search_requests"), Some("2"));
    assert_eq!(state("web_fetch_requests"), Some("1"));
    assert_eq!(state("service_tier"), Some("standard"));
    assert_eq!(state("operation"), Some("chat"));
    // Not reported: unknown, never 0.
    assert_eq!(state("input_audio_tokens"), None);

    let out = replay::run(&mut vm, &openai_audio(), &Delivery::default()).unwrap();
    let state = |k: &str| {
        out.filter_state
            .get(&format!("wasm.asm.llmproxy.{k}"))
            .map(String::as_str)
    };
    assert_eq!(state("input_audio_tokens"), Some("100"));
    assert_eq!(state("output_audio_tokens"), Some("60"));
    assert_eq!(state("service_tier"), Some("default"));

    let prom = vm.prometheus(&asm_stats());
    let value = |metric: &str, model: &str| -> Option<u64> {
        prom.lines()
            .find(|l| l.starts_with(metric) && l.contains(&format!("llmproxy_model=\"{model}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    };
    let claude = "claude-sonnet-4-5-20250929";
    let gpt = "gpt-4o-audio-preview-2024-12-17";
    assert_eq!(
        value("asm_llm_proxy_cache_creation_5m_tokens{", claude),
        Some(100)
    );
    assert_eq!(
        value("asm_llm_proxy_cache_creation_1h_tokens{", claude),
        Some(200)
    );
    assert_eq!(value("asm_llm_proxy_web_search_requests{", claude), Some(2));
    assert_eq!(value("asm_llm_proxy_web_fetch_requests{", claude), Some(1));
    // The OpenAI exchange carried neither: no series, never 0.
    assert_eq!(value("asm_llm_proxy_web_fetch_requests{", gpt), None);
    assert_eq!(value("asm_llm_proxy_input_audio_tokens{", gpt), Some(100));
    assert_eq!(value("asm_llm_proxy_output_audio_tokens{", gpt), Some(60));
    // The parents still count every token once.
    assert_eq!(value("asm_llm_proxy_prompt_tokens{", gpt), Some(120));
    assert_eq!(value("asm_llm_proxy_input_image_tokens{", gpt), None);
}

/// `otel`: the `gen_ai_client_token_usage` histogram carries `input` and `output` only
/// (a sum over its types counts each token once); every token type, subsets included, has
/// its `gen_ai.client.inference.usage.*` counter with `gen_ai_token_modality`; the parts
/// (audio, the cache writes' lifetimes) are on neither.
#[test]
fn otel_histogram_has_input_and_output_and_each_type_its_counter() {
    let mut vm = sleep_vm(r#"{"profile": "otel"}"#);
    replay::run(&mut vm, &anthropic(), &Delivery::default()).unwrap();
    replay::run(&mut vm, &openai_audio(), &Delivery::default()).unwrap();
    // A reasoning model with a cache read.
    let o4 = replay::load_case(
        &common::fixtures().join("04-openai-chat-reasoning-cached"),
        "api.openai.com",
    )
    .unwrap();
    replay::run(&mut vm, &o4, &Delivery::default()).unwrap();
    let stats = vm.stats();
    let dims = |model: &str| {
        let (provider, request) = match model {
            m if m.starts_with("claude") => ("anthropic", "claude-sonnet-4-5"),
            m if m.starts_with("gpt") => ("openai", "gpt-4o-audio-preview"),
            _ => ("openai", "o4-mini"),
        };
        format!(
            "gen_ai_provider_name={provider}|gen_ai_request_model={request}|gen_ai_response_model={model}"
        )
    };
    let recorded = |ty: &str, model: &str| {
        stats
            .histogram(&format!(
                "gen_ai_client_token_usage|gen_ai_token_type={ty}|{}",
                dims(model)
            ))
            .map(<[u64]>::to_vec)
    };
    let counted = |counter: &str, model: &str| {
        stats.counter(&format!(
            "gen_ai_client_inference_usage_{counter}|gen_ai_token_modality=unknown|{}",
            dims(model)
        ))
    };
    let claude = "claude-sonnet-4-5-20250929";
    let gpt = "gpt-4o-audio-preview-2024-12-17";
    let o4 = "o4-mini-2025-04-16";
    assert_eq!(recorded("input", claude), Some(vec![1400]));
    assert_eq!(recorded("output", claude), Some(vec![50]));
    assert_eq!(recorded("input", gpt), Some(vec![120]));
    assert_eq!(recorded("output", o4), Some(vec![1412]));
    for ty in [
        "input_cache_read",
        "input_cache_write",
        "reasoning",
        "input_cache_write_5m",
        "input_cache_write_1h",
        "input_audio",
        "output_audio",
    ] {
        for model in [claude, gpt, o4] {
            assert_eq!(recorded(ty, model), None, "{ty} on the histogram ({model})");
        }
    }
    // Each counter with its value (unknown figures add nothing, known zeros add 0).
    for (counter, model, want) in [
        ("input_tokens", claude, Some(1400)),
        ("output_tokens", claude, Some(50)),
        ("cache_read_input_tokens", claude, Some(1000)),
        ("cache_write_input_tokens", claude, Some(300)),
        ("reasoning_output_tokens", claude, None),
        ("input_tokens", gpt, Some(120)),
        ("output_tokens", gpt, Some(80)),
        ("cache_read_input_tokens", gpt, Some(0)),
        ("reasoning_output_tokens", gpt, Some(0)),
        ("input_tokens", o4, Some(2317)),
        ("output_tokens", o4, Some(1412)),
        ("cache_read_input_tokens", o4, Some(2176)),
        ("cache_write_input_tokens", o4, None),
        ("reasoning_output_tokens", o4, Some(1152)),
    ] {
        assert_eq!(counted(counter, model), want, "{counter} ({model})");
    }
    // The parts have no counter in `otel` by default (their parents count them).
    let text = vm.prometheus(&otel_stats());
    assert!(
        !text.contains("audio_tokens") && !text.contains("input_audio"),
        "{text}"
    );
    assert!(!text.contains("_5m") && !text.contains("_1h"), "{text}");
    assert!(text.contains(
        "gen_ai_client_inference_usage_reasoning_output_tokens{gen_ai_token_modality=\"unknown\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"o4-mini\",gen_ai_response_model=\"o4-mini-2025-04-16\"} 1152"
    ), "{text}");
    let prom = vm.prometheus(&asm_stats());
    assert!(
        prom.contains("llm_usage_web_search_requests"),
        "its own counter: {prom}"
    );
    let fetched =
        |name: &str, model: &str| {
            stats.counter(&format!(
            "{name}|gen_ai_provider_name={}|gen_ai_request_model={}|gen_ai_response_model={model}",
            if model.starts_with("claude") { "anthropic" } else { "openai" },
            if model.starts_with("claude") { "claude-sonnet-4-5" } else { "gpt-4o-audio-preview" },
        ))
        };
    assert_eq!(fetched("llm_usage_web_fetch_requests", claude), Some(1));
    assert_eq!(fetched("llm_usage_web_search_requests", claude), Some(2));
    assert_eq!(fetched("llm_usage_web_fetch_requests", gpt), None);
}

/// Fixture 60 (Anthropic Messages with one server-side web fetch and two searches)
/// through the real filter: the web fetch counter of each profile carries its figure.
#[test]
fn web_fetch_requests_have_their_own_counter_in_both_profiles() {
    let ex = replay::load_case(
        &common::fixtures().join("60-anthropic-web-fetch-cache-split-json"),
        "api.anthropic.com",
    )
    .unwrap();
    let want = ex.expect.as_ref().unwrap()["web_fetch_requests"].as_u64();
    assert_eq!(want, Some(1));
    let model = "claude-opus-4-5-20251101";

    let mut vm = sleep_vm("");
    replay::run(&mut vm, &ex, &Delivery::default()).unwrap();
    let prom = vm.prometheus(&asm_stats());
    let counted = prom
        .lines()
        .find(|l| {
            l.starts_with("asm_llm_proxy_web_fetch_requests{")
                && l.contains(&format!("llmproxy_model=\"{model}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap());
    assert_eq!(counted, want, "{prom}");

    let mut vm = sleep_vm(r#"{"profile": "otel"}"#);
    replay::run(&mut vm, &ex, &Delivery::default()).unwrap();
    let request_model = serde_json::from_slice::<serde_json::Value>(&ex.request_body).unwrap()
        ["model"]
        .as_str()
        .unwrap()
        .to_owned();
    let name = |metric: &str| {
        format!("{metric}|gen_ai_provider_name=anthropic|gen_ai_request_model={request_model}|gen_ai_response_model={model}")
    };
    assert_eq!(
        vm.stats().counter(&name("llm_usage_web_fetch_requests")),
        want
    );
    assert_eq!(
        vm.stats().counter(&name("llm_usage_web_search_requests")),
        Some(2)
    );
}
