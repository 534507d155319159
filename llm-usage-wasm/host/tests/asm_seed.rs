//! The seed scenario of Alibaba Cloud Service Mesh's LLM observability guide, run through
//! the real release `.wasm`: workload `sleep` in namespace `default` calls
//! `dashscope.aliyuncs.com` twice, once as an ordinary user (model `qwen-1.8b-chat`) and once
//! with `user-type: subscriber` (model `qwen-turbo`). The Prometheus text must hold the
//! guide's lines, and the access-log filter state must match each exchange.

mod common;

use std::collections::BTreeMap;

use common::{asm_stats, sleep_vm};
use llm_usage_wasm_host::replay::{self, Delivery, Exchange};
use llm_usage_wasm_host::Vm;

const REQUEST: &str = r#"{"messages":[{"role":"user","content":"Please introduce yourself"}]}"#;

fn exchange(subscriber: bool, response: &str) -> Exchange {
    let mut request_headers = vec![("content-type".to_string(), "application/json".to_string())];
    if subscriber {
        request_headers.push(("user-type".to_string(), "subscriber".to_string()));
    }
    Exchange {
        name: if subscriber { "subscriber" } else { "default" }.into(),
        method: "POST".into(),
        path: "/compatible-mode/v1/chat/completions".into(),
        authority: "dashscope.aliyuncs.com".into(),
        request_headers,
        request_body: REQUEST.as_bytes().to_vec(),
        status: 200,
        response_headers: vec![("content-type".into(), "application/json".into())],
        response_body: response.as_bytes().to_vec(),
        expect: None,
    }
}

fn completion(model: Option<&str>, prompt: u64, completion: u64) -> String {
    let model = model
        .map(|m| format!(r#""model":"{m}","#))
        .unwrap_or_default();
    format!(
        r#"{{"id":"chatcmpl-5f1c","object":"chat.completion","created":1719000000,{model}"choices":[{{"index":0,"message":{{"role":"assistant","content":"I am a large language model created by Alibaba Cloud."}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}}}}}"#,
        prompt + completion
    )
}

/// Formats the guide's access-log fields from filter state, as Envoy's
/// `%FILTER_STATE(wasm.asm.llmproxy.<key>:PLAIN)%` operators would.
fn access_log(fs: &BTreeMap<String, String>) -> String {
    let field = |k: &str| {
        fs.get(&format!("wasm.asm.llmproxy.{k}"))
            .cloned()
            .unwrap_or_else(|| "-".into())
    };
    format!(
        r#"{{"request_model": "{}", "request_prompt_tokens": "{}", "request_completion_tokens": "{}"}}"#,
        field("request_model"),
        field("request_prompt_tokens"),
        field("request_completion_tokens")
    )
}

fn run_seed(vm: &mut Vm, first: &str, second: &str) -> (String, String) {
    let d = Delivery::default();
    let a = replay::run(vm, &exchange(false, first), &d).unwrap();
    let b = replay::run(vm, &exchange(true, second), &d).unwrap();
    for o in [&a, &b] {
        assert!(o.all_continue, "the filter must never pause traffic");
        assert!(
            o.forwarded_unchanged,
            "the bytes forwarded must equal the bytes received"
        );
    }
    (access_log(&a.filter_state), access_log(&b.filter_state))
}

const LINES: [&str; 4] = [
    r#"asm_llm_proxy_prompt_tokens{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="qwen-1.8b-chat"} 3"#,
    r#"asm_llm_proxy_completion_tokens{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="qwen-1.8b-chat"} 55"#,
    r#"asm_llm_proxy_prompt_tokens{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="qwen-turbo"} 11"#,
    r#"asm_llm_proxy_completion_tokens{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="qwen-turbo"} 90"#,
];

fn assert_seed_metrics(text: &str) {
    for line in LINES {
        assert!(
            text.lines().any(|l| l == line),
            "missing line\n  {line}\nin\n{text}"
        );
    }
    // Exactly these two series per counter: nothing else leaked into the token counters.
    for name in [
        "asm_llm_proxy_prompt_tokens{",
        "asm_llm_proxy_completion_tokens{",
    ] {
        assert_eq!(
            text.lines().filter(|l| l.starts_with(name)).count(),
            2,
            "{text}"
        );
    }
    assert!(text.contains("# TYPE asm_llm_proxy_prompt_tokens counter\n"));
    assert!(text.contains("# TYPE asm_llm_proxy_completion_tokens counter\n"));
    // The stat names never reach Prometheus untagged or with the namespace.
    assert!(!text.contains("wasmcustom"), "{text}");
    assert!(!text.contains('|'), "{text}");
}

#[test]
fn asm_seed_scenario_model_from_the_response() {
    let mut vm = sleep_vm("");
    let (first, second) = run_seed(
        &mut vm,
        &completion(Some("qwen-1.8b-chat"), 3, 55),
        &completion(Some("qwen-turbo"), 11, 90),
    );
    // The guide's access-log lines (its JSON access log prints these three fields).
    assert_eq!(
        first,
        r#"{"request_model": "qwen-1.8b-chat", "request_prompt_tokens": "3", "request_completion_tokens": "55"}"#
    );
    assert_eq!(
        second,
        r#"{"request_model": "qwen-turbo", "request_prompt_tokens": "11", "request_completion_tokens": "90"}"#
    );
    assert_seed_metrics(&vm.prometheus(&asm_stats()));
}

#[test]
fn asm_seed_scenario_model_from_configuration() {
    // ASM's routing picks the model; an observer that sees responses without a model name
    // learns it from configuration: a default and a per-header rule.
    let config = r#"{
        "default_model": "qwen-1.8b-chat",
        "model_rules": [{"header": "user-type", "equals": "subscriber", "model": "qwen-turbo"}]
    }"#;
    let mut vm = sleep_vm(config);
    let (first, second) = run_seed(&mut vm, &completion(None, 3, 55), &completion(None, 11, 90));
    assert_eq!(
        first,
        r#"{"request_model": "qwen-1.8b-chat", "request_prompt_tokens": "3", "request_completion_tokens": "55"}"#
    );
    assert_eq!(
        second,
        r#"{"request_model": "qwen-turbo", "request_prompt_tokens": "11", "request_completion_tokens": "90"}"#
    );
    assert_seed_metrics(&vm.prometheus(&asm_stats()));
    let fs = vm.filter_state(3);
    assert_eq!(fs["wasm.asm.llmproxy.model_source"], "config");
    assert_eq!(fs["wasm.asm.llmproxy.model"], "qwen-turbo");
}

#[test]
fn request_model_is_set_before_the_response_for_istio_stats() {
    // Istio's stats plugin reads filter_state['wasm.asm.llmproxy.request_model'] at the end of
    // the stream; with a configured model it is known as soon as the request is in.
    let mut vm = sleep_vm(r#"{"default_model": "qwen-1.8b-chat"}"#);
    let id = vm.new_stream();
    vm.request_headers(
        id,
        &[
            (":method", "POST"),
            (":path", "/compatible-mode/v1/chat/completions"),
            (":authority", "dashscope.aliyuncs.com"),
        ],
        false,
    )
    .unwrap();
    vm.request_body(id, REQUEST.as_bytes(), true).unwrap();
    assert_eq!(
        vm.filter_state(id)["wasm.asm.llmproxy.request_model"],
        "qwen-1.8b-chat"
    );
}

#[test]
fn asm_guide_curl_to_the_bare_host_with_a_route_override() {
    // The guide's curl posts to `http://dashscope.aliyuncs.com` (path `/`): nothing in the
    // path says which API it is, so a route tells the filter the provider family.
    let config = r#"{"routes": [{"authority": "dashscope.aliyuncs.com", "provider": "openai"}]}"#;
    let mut vm = sleep_vm(config);
    let d = Delivery::default();
    for (subscriber, model, p, c) in [
        (false, "qwen-1.8b-chat", 3, 55),
        (true, "qwen-turbo", 11, 90),
    ] {
        let mut ex = exchange(subscriber, &completion(Some(model), p, c));
        ex.path = "/".into();
        let out = replay::run(&mut vm, &ex, &d).unwrap();
        assert_eq!(out.filter_state["wasm.asm.llmproxy.provider"], "openai");
        assert_eq!(
            out.filter_state["wasm.asm.llmproxy.request_prompt_tokens"],
            p.to_string()
        );
    }
    assert_seed_metrics(&vm.prometheus(&asm_stats()));
}
