//! deploy/envoy/envoy.yaml against Envoy's API: the bootstrap is read into
//! `envoy.config.bootstrap.v3.Bootstrap` built from Envoy's own protos (data-plane-api,
//! xds, protoc-gen-validate, vendored in deploy/schemas/envoy) with protox, by
//! prost-reflect's protobuf-JSON reader, which rejects unknown fields and wrong enum values
//! and reads every `typed_config` `Any` as the message its `@type` names. Envoy parses its
//! YAML bootstrap the same way (YAML → JSON → proto). The filter's configuration string is
//! run through the real `.wasm`.
//!
//! Not checked: protoc-gen-validate rules (`(validate.rules)`: ranges, required fields,
//! string patterns), which Envoy enforces after parsing, and whatever needs a running
//! Envoy (DNS, TLS, the module loading in V8).

use std::sync::OnceLock;

use llm_usage_deploy_tests::{deploy_dir, yaml_documents};
use llm_usage_wasm_host::HostOptions;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage};
use serde_json::{json, Value};

#[path = "../../../llm-usage-wasm/host/tests/common/mod.rs"]
mod common;

/// Envoy's types: the bootstrap and every extension the file names in a `typed_config`.
fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut compiler = protox::Compiler::new([deploy_dir().join("schemas/envoy")])
            .expect("include path");
        compiler.include_imports(true);
        compiler
            .open_files([
                "envoy/config/bootstrap/v3/bootstrap.proto",
                "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
                "envoy/extensions/filters/http/wasm/v3/wasm.proto",
                "envoy/extensions/filters/http/router/v3/router.proto",
                "envoy/extensions/access_loggers/stream/v3/stream.proto",
                "envoy/extensions/transport_sockets/tls/v3/tls.proto",
            ])
            .unwrap_or_else(|e| panic!("Envoy's protos compile: {e:?}"));
        compiler.descriptor_pool()
    })
}

/// Reads `value` as an Envoy bootstrap, the way Envoy's loader does.
fn bootstrap(value: &Value) -> Result<DynamicMessage, String> {
    let desc = pool()
        .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
        .expect("Bootstrap in the pool");
    DynamicMessage::deserialize(desc, value.clone()).map_err(|e| e.to_string())
}

fn envoy_yaml() -> Value {
    yaml_documents("envoy/envoy.yaml").remove(0)
}

/// The wasm filter's `typed_config` in the first listener.
fn wasm_filter(v: &mut Value) -> &mut Value {
    let filters = &mut v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    filters
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .expect("the wasm filter")
}

#[test]
fn bootstrap_is_valid_envoy_config() {
    let v = envoy_yaml();
    let msg = bootstrap(&v).unwrap_or_else(|e| panic!("envoy.yaml is not a valid Bootstrap: {e}"));
    // Nothing was dropped on the way: the message written back as JSON is the file.
    let back = serde_json::to_value(&msg).unwrap();
    let listeners = back["staticResources"]["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2);
    let hcm = &listeners[0]["filterChains"][0]["filters"][0]["typedConfig"];
    assert_eq!(
        hcm["@type"],
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    let wasm = &hcm["httpFilters"][0]["typedConfig"]["config"];
    assert_eq!(wasm["failurePolicy"], "FAIL_OPEN");
    assert_eq!(wasm["vmConfig"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(
        wasm["configuration"]["@type"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    assert_eq!(
        back["admin"]["address"]["socketAddress"]["portValue"],
        15000
    );
    assert_eq!(
        listeners[1]["address"]["socketAddress"]["portValue"], 15090,
        "stats on the Istio sidecar's port"
    );
    assert_eq!(
        msg.descriptor().full_name(),
        "envoy.config.bootstrap.v3.Bootstrap"
    );
}

#[test]
fn misspelt_fields_and_bad_values_are_rejected() {
    // Top level.
    let mut v = envoy_yaml();
    let stats = v.as_object_mut().unwrap().remove("stats_config").unwrap();
    v["stats_confg"] = stats;
    let e = bootstrap(&v).unwrap_err();
    assert!(e.contains("stats_confg"), "{e}");

    // Inside the HTTP connection manager (an Any).
    let mut v = envoy_yaml();
    let hcm = &mut v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let p = hcm.as_object_mut().unwrap().remove("stat_prefix").unwrap();
    hcm["stat_prefx"] = p;
    let e = bootstrap(&v).unwrap_err();
    assert!(e.contains("stat_prefx"), "{e}");

    // Inside the wasm filter (an Any in an Any), and a wrong enum value.
    let mut v = envoy_yaml();
    wasm_filter(&mut v)["typed_config"]["config"]["fail_opn"] = json!(true);
    let e = bootstrap(&v).unwrap_err();
    assert!(e.contains("fail_opn"), "{e}");
    let mut v = envoy_yaml();
    wasm_filter(&mut v)["typed_config"]["config"]["failure_policy"] = json!("FAIL_OPN");
    assert!(bootstrap(&v).is_err());

    // An extension type Envoy does not have.
    let mut v = envoy_yaml();
    wasm_filter(&mut v)["typed_config"]["@type"] =
        json!("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasmm");
    assert!(bootstrap(&v).is_err());

    // A type mismatch: a port as text.
    let mut v = envoy_yaml();
    v["admin"]["address"]["socket_address"]["port_value"] = json!("fifteen thousand");
    assert!(bootstrap(&v).is_err());
}

#[test]
fn the_real_filter_accepts_the_configuration() {
    let mut v = envoy_yaml();
    let config = wasm_filter(&mut v)["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let vm = common::host().start(HostOptions::with_config(config.clone()));
    assert!(vm.is_ok(), "{:?}", vm.err());
    let typo = config.replace("max_distinct", "max_distinc");
    assert!(common::host()
        .start(HostOptions::with_config(typo))
        .is_err());
}

#[test]
fn access_log_prints_the_three_filter_state_fields() {
    let mut v = envoy_yaml();
    let hcm = &mut v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let fmt = &hcm["access_log"][0]["typed_config"]["log_format"]["json_format"];
    for key in [
        "request_model",
        "request_prompt_tokens",
        "request_completion_tokens",
    ] {
        assert_eq!(
            fmt[key],
            format!("%FILTER_STATE(wasm.asm.llmproxy.{key}:PLAIN)%")
        );
    }
}

/// The same five tags in the plain-Envoy bootstrap and the Istio ConfigMap, and the
/// ConfigMap's fragment is itself valid bootstrap JSON.
#[test]
fn stats_tags_match_the_istio_configmap() {
    let envoy_tags = envoy_yaml()["stats_config"]["stats_tags"].clone();
    let cm = yaml_documents("istio/10-bootstrap-configmap.yaml").remove(0);
    let fragment = cm["data"]["custom_bootstrap.json"].as_str().unwrap();
    let istio: Value = serde_json::from_str(&format!("{{{fragment}}}")).unwrap();
    bootstrap(&istio).unwrap_or_else(|e| panic!("the ConfigMap fragment: {e}"));
    assert_eq!(envoy_tags, istio["stats_config"]["stats_tags"]);
    let names: Vec<&str> = envoy_tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag_name"].as_str().unwrap())
        .collect();
    for dim in [
        "llmproxy_source_workload",
        "llmproxy_source_workload_namespace",
        "llmproxy_destination_service",
        "llmproxy_model",
    ] {
        assert!(names.contains(&dim), "{dim} missing");
    }
}
