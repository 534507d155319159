//! deploy/grafana/llm-usage.json without Grafana: the structure Grafana's dashboard model
//! needs (unique panel ids, panels on the 24-column grid without overlap, every query on
//! the `$datasource` variable, only the dashboard's own variables used, a profile variable
//! offering both metric profiles). Whether each query returns data is the Prometheus
//! integration test's job (tests/prometheus.rs).

use std::collections::BTreeSet;

use llm_usage_deploy_tests::read;
use serde_json::Value;

fn dashboard() -> Value {
    serde_json::from_str(&read("grafana/llm-usage.json")).expect("valid JSON")
}

#[test]
fn panels_are_well_formed_and_do_not_overlap() {
    let d = dashboard();
    assert_eq!(d["uid"], "llm-usage");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id {}",
            p["id"]
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{} is off the grid", p["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "{} overlaps another panel",
                    p["title"]
                );
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().unwrap()));
            assert_eq!(t["datasource"]["uid"], "${datasource}");
            let expr = t["expr"].as_str().unwrap();
            let rest = expr
                .replace("$__rate_interval", "")
                .replace("$profile", "")
                .replace("$model", "");
            assert!(
                !rest.contains('$'),
                "{}: unknown variable in {expr}",
                p["title"]
            );
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{expr}"
            );
        }
    }
}

#[test]
fn variables_pick_the_profile_and_the_model() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["datasource", "profile", "model"]);
    let profile = &vars[1];
    assert_eq!(profile["query"], "otel,asm");
    assert_eq!(profile["allValue"], "otel|asm");
    // Every recorded-series query filters on the profile.
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            if expr.contains("llm_usage:") {
                assert!(expr.contains(r#"profile=~"$profile""#), "{expr}");
            }
        }
    }
}
