//! `promtool check rules` and `promtool test rules` on deploy/prometheus, and a check that
//! every recording rule and alert has a unit test.

use std::collections::BTreeSet;
use std::process::Command;

use llm_usage_deploy_tests::{deploy_dir, tool, yaml_documents};

const HINT: &str = "install prometheus (apt-get install -y prometheus) for promtool";

#[test]
fn rules_pass_promtool_check() {
    let Some(promtool) = tool("promtool", HINT) else {
        return;
    };
    let out = Command::new(promtool)
        .args(["check", "rules", "prometheus/llm-usage.rules.yaml"])
        .current_dir(deploy_dir())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check rules:\n{text}");
    let rules: usize = yaml_documents("prometheus/llm-usage.rules.yaml")[0]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    assert!(
        text.contains(&format!("SUCCESS: {rules} rules found")),
        "promtool saw another number of rules than the file has ({rules}):\n{text}"
    );
}

fn test_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(deploy_dir().join("prometheus/tests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".test.yaml"))
        .map(|n| format!("prometheus/tests/{n}"))
        .collect();
    files.sort();
    files
}

#[test]
fn rule_unit_tests_pass() {
    let Some(promtool) = tool("promtool", HINT) else {
        return;
    };
    let files = test_files();
    assert!(files.len() >= 2, "{files:?}");
    let out = Command::new(promtool)
        .args(["test", "rules"])
        .args(&files)
        .current_dir(deploy_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The harness can fail: one expected value changed makes promtool report the difference.
#[test]
fn a_wrong_expectation_fails_promtool() {
    let Some(promtool) = tool("promtool", HINT) else {
        return;
    };
    let src = deploy_dir().join("prometheus/tests/recording.test.yaml");
    let text = std::fs::read_to_string(&src).unwrap();
    let needle = "token_type=\"output\"}'\n            value: 2\n";
    assert!(text.contains(needle));
    let broken = text.replacen(needle, &needle.replace("value: 2", "value: 3"), 1);
    // Next to the original, so that its relative rule_files path still resolves.
    let path = deploy_dir().join("prometheus/tests/.broken-copy.yaml");
    std::fs::write(&path, broken).unwrap();
    let out = Command::new(promtool)
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(!out.status.success());
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("FAILED"), "{report}");
    assert!(report.contains("llm_usage:tokens:rate5m"), "{report}");
}

/// Every alert has a test where it fires and every recorded series a test that evaluates it.
#[test]
fn every_rule_has_a_unit_test() {
    let rules = &yaml_documents("prometheus/llm-usage.rules.yaml")[0];
    let mut records = BTreeSet::new();
    let mut alerts = BTreeSet::new();
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            if let Some(n) = r["record"].as_str() {
                records.insert(n.to_owned());
            }
            if let Some(n) = r["alert"].as_str() {
                alerts.insert(n.to_owned());
            }
        }
    }
    let mut tested_records = BTreeSet::new();
    let mut firing_alerts = BTreeSet::new();
    for f in test_files() {
        for t in yaml_documents(&f)[0]["tests"].as_array().unwrap() {
            for e in t["promql_expr_test"].as_array().into_iter().flatten() {
                let expr = e["expr"].as_str().unwrap();
                if e["exp_samples"].as_array().is_some_and(|s| !s.is_empty()) {
                    tested_records.insert(expr.to_owned());
                }
            }
            for a in t["alert_rule_test"].as_array().into_iter().flatten() {
                if a["exp_alerts"].as_array().is_some_and(|s| !s.is_empty()) {
                    firing_alerts.insert(a["alertname"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    assert_eq!(records, tested_records, "recording rules without a test");
    assert_eq!(
        alerts, firing_alerts,
        "alerts without a test where they fire"
    );
}
