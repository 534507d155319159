//! deploy/istio: every custom resource validates against the `openAPIV3Schema` of its
//! version in Istio's published CRDs (deploy/schemas/istio), with Kubernetes' strict field
//! validation (what `kubectl apply` does by default since 1.27: an unknown field is an
//! error, not silently pruned); the plugin configuration is accepted by the real filter;
//! the ConfigMap's stats_tags turn the real filter's stat names into the labels the
//! Prometheus rules use.
//!
//! Not checked here: the CRDs' `x-kubernetes-validations` CEL rules (the API server
//! evaluates them; none applies to the fields these manifests set beyond the selector's
//! non-empty, wildcard-free labels, which the test checks by hand).

use std::collections::BTreeSet;

use llm_usage_deploy_tests::{read, yaml_documents};
use llm_usage_wasm_host::replay::{self, Delivery};
use llm_usage_wasm_host::{HostError, HostOptions, StatsConfig};
use serde_json::{json, Value};

#[path = "../../../llm-usage-wasm/host/tests/common/mod.rs"]
mod common;

/// The CRD of `group`/`kind` among the vendored ones.
fn crd(api_version: &str, kind: &str) -> Option<(Value, String)> {
    let (group, version) = api_version.split_once('/')?;
    for file in [
        "schemas/istio/wasmplugins.extensions.istio.io.yaml",
        "schemas/istio/telemetries.telemetry.istio.io.yaml",
    ] {
        let doc = yaml_documents(file).remove(0);
        if doc["spec"]["group"] == group && doc["spec"]["names"]["kind"] == kind {
            return Some((doc, version.to_owned()));
        }
    }
    None
}

/// Kubernetes' strict field validation as JSON Schema: an object schema that lists its
/// properties and does not preserve unknown fields admits no other property.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !preserve
            {
                map.insert("additionalProperties".into(), json!(false));
            }
            for v in map.values_mut() {
                strict(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

/// The validator for one CRD version, with the object's own apiVersion/kind/metadata.
fn validator(crd: &Value, version: &str) -> jsonschema::Validator {
    let v = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version)
        .unwrap_or_else(|| panic!("the CRD has no version {version}"));
    assert_eq!(v["served"], true, "{version} is served");
    let mut schema = v["schema"]["openAPIV3Schema"].clone();
    // Every object carries these; Kubernetes checks ObjectMeta itself. The fields a
    // manifest may set here: name, namespace, labels, annotations.
    let props = schema["properties"].as_object_mut().unwrap();
    props.insert("apiVersion".into(), json!({"type": "string"}));
    props.insert("kind".into(), json!({"type": "string"}));
    props.insert(
        "metadata".into(),
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253},
                "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        }),
    );
    strict(&mut schema);
    jsonschema::validator_for(&schema).expect("the CRD schema compiles")
}

fn errors(doc: &Value) -> Vec<String> {
    let (crd, version) = crd(
        doc["apiVersion"].as_str().unwrap(),
        doc["kind"].as_str().unwrap(),
    )
    .expect("a vendored CRD");
    validator(&crd, &version)
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<String> =
        std::fs::read_dir(llm_usage_deploy_tests::deploy_dir().join("istio"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|f| {
            let rel = format!("istio/{f}");
            yaml_documents(&rel)
                .into_iter()
                .map(move |d| (rel.clone(), d))
        })
        .collect()
}

fn manifest(kind: &str) -> Value {
    manifests()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/istio"))
}

#[test]
fn every_custom_resource_validates_against_istios_crd() {
    let mut validated = BTreeSet::new();
    for (file, doc) in manifests() {
        let Some(kind) = doc["kind"].as_str() else {
            // The Deployment patch has no apiVersion/kind (checked below).
            assert!(file.ends_with("sidecar-annotation.yaml"), "{file}: no kind");
            continue;
        };
        if doc["apiVersion"] == "v1" {
            assert_eq!(kind, "ConfigMap", "{file}");
            continue;
        }
        let errs = errors(&doc);
        assert!(
            errs.is_empty(),
            "{file}: {kind} does not validate:\n{}",
            errs.join("\n")
        );
        validated.insert(kind.to_owned());
    }
    assert_eq!(
        validated,
        BTreeSet::from(["Telemetry".to_owned(), "WasmPlugin".to_owned()])
    );
}

#[test]
fn misspelt_or_wrong_fields_fail_validation() {
    let wasm = manifest("WasmPlugin");
    let mut bad = wasm.clone();
    let spec = bad["spec"].as_object_mut().unwrap();
    let v = spec.remove("failStrategy").unwrap();
    spec.insert("failStratgy".into(), v);
    let errs = errors(&bad);
    assert!(errs.iter().any(|e| e.contains("failStratgy")), "{errs:?}");

    let mut bad = wasm.clone();
    bad["spec"]["phase"] = json!("STAT");
    assert!(!errors(&bad).is_empty());
    let mut bad = wasm.clone();
    bad["spec"]["sha256"] = json!("sha256:0000");
    assert!(!errors(&bad).is_empty());
    let mut bad = wasm;
    bad["spec"]["match"][0]["mode"] = json!("OUTBOUND");
    assert!(!errors(&bad).is_empty());

    let telemetry = manifest("Telemetry");
    let mut bad = telemetry.clone();
    let ov = bad["spec"]["metrics"][0]["overrides"][0]
        .as_object_mut()
        .unwrap();
    let v = ov.remove("tagOverrides").unwrap();
    ov.insert("tagOverride".into(), v);
    let errs = errors(&bad);
    assert!(errs.iter().any(|e| e.contains("tagOverride")), "{errs:?}");
    let mut bad = telemetry;
    bad["spec"]["metrics"][0]["overrides"][0]["match"]["metric"] = json!("REQUESTS_TOTAL");
    assert!(!errors(&bad).is_empty());
}

#[test]
fn wasmplugin_is_fail_open_in_the_stats_phase() {
    let spec = &manifest("WasmPlugin")["spec"];
    assert_eq!(spec["failStrategy"], "FAIL_OPEN");
    assert_eq!(spec["phase"], "STATS");
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"));
    // The selector's CEL rules: label keys non-empty, no wildcard in keys or values.
    for (k, v) in spec["selector"]["matchLabels"].as_object().unwrap() {
        assert!(!k.is_empty() && !k.contains('*') && !v.as_str().unwrap().contains('*'));
    }
}

fn plugin_config() -> String {
    manifest("WasmPlugin")["spec"]["pluginConfig"].to_string()
}

#[test]
fn the_real_filter_accepts_the_plugin_config_and_refuses_a_typo() {
    let vm = common::host().start(HostOptions::with_config(plugin_config()));
    assert!(vm.is_ok(), "{:?}", vm.err());
    let typo = plugin_config().replace("default_model", "defualt_model");
    match common::host().start(HostOptions::with_config(typo)) {
        Err(HostError::ConfigureFailed(logs)) => {
            assert!(logs.iter().any(|l| l.contains("defualt_model")), "{logs:?}")
        }
        other => panic!("a misspelt field was accepted: {:?}", other.err()),
    }
}

/// The ConfigMap's stats_tags on the real filter's metrics for a DashScope stream (fixture
/// 29: qwen-max, 31 input tokens): the labels the rules and dashboard read.
#[test]
fn configmap_stats_tags_label_the_filters_metrics() {
    let cm = manifest("ConfigMap");
    let fragment = cm["data"]["custom_bootstrap.json"].as_str().unwrap();
    // The fragment is a member list, merged into Istio's bootstrap JSON object.
    let bootstrap: Value =
        serde_json::from_str(&format!("{{{fragment}}}")).expect("valid JSON members");
    let tags: Vec<&str> = bootstrap["stats_config"]["stats_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "llmproxy_source_workload",
            "llmproxy_source_workload_namespace",
            "llmproxy_destination_service",
            "llmproxy_model",
            "llmproxy_inject_skip_reason"
        ]
    );
    let stats = StatsConfig::parse(fragment).expect("the host reads the fragment");

    let mut vm = common::sleep_vm(&plugin_config());
    let dir = common::fixtures().join("29-dashscope-compatible-stream");
    let ex = replay::load_case(&dir, "dashscope.aliyuncs.com").unwrap();
    let out = replay::run(&mut vm, &ex, &Delivery::default()).unwrap();
    let text = vm.prometheus(&stats);
    let prompt = text
        .lines()
        .find(|l| l.starts_with("asm_llm_proxy_prompt_tokens{"))
        .unwrap_or_else(|| panic!("no prompt tokens in:\n{text}"));
    assert!(
        prompt.contains(r#"llmproxy_source_workload="sleep""#),
        "{prompt}"
    );
    assert!(
        prompt.contains(r#"llmproxy_source_workload_namespace="default""#),
        "{prompt}"
    );
    assert!(
        prompt.contains(r#"llmproxy_destination_service="dashscope.aliyuncs.com""#),
        "{prompt}"
    );
    assert!(prompt.contains(r#"llmproxy_model="qwen-max""#), "{prompt}");
    assert!(prompt.ends_with("} 31"), "{prompt}");
    // No tag left in a metric name.
    assert!(!text.contains('|'), "{text}");

    // The Telemetry resource reads the key the filter sets.
    let prefix = manifest("WasmPlugin")["spec"]["pluginConfig"]["property_prefix"]
        .as_str()
        .unwrap_or("asm.llmproxy")
        .to_owned();
    let key = format!("wasm.{prefix}.request_model");
    let telemetry = manifest("Telemetry");
    for o in telemetry["spec"]["metrics"][0]["overrides"]
        .as_array()
        .unwrap()
    {
        assert_eq!(
            o["tagOverrides"]["model"]["value"],
            format!("filter_state['{key}']")
        );
    }
    assert!(
        out.filter_state.contains_key(&key),
        "{:?}",
        out.filter_state
    );
}

#[test]
fn the_annotation_names_the_configmap() {
    let patch = &yaml_documents("istio/40-sidecar-annotation.yaml")[0];
    let cm = manifest("ConfigMap");
    assert_eq!(
        patch["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/bootstrapOverride"],
        cm["metadata"]["name"]
    );
    assert!(read("istio/README.md").contains("kubectl"));
}
