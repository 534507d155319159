//! Shared helpers of the deploy/ checks: where the files are, how to read them, and how a
//! test finds an external tool (`promtool`, `prometheus`).
//!
//! The checks run the ecosystem's own validators (Istio's CRD schemas, Envoy's protos,
//! promtool, a real Prometheus) rather than code of ours that could agree with our own
//! mistakes. A tool that is not installed must not turn a check into a silent pass in CI:
//! with `LLM_USAGE_REQUIRE_TOOLS=1` (set by `.ci/run`) a missing tool fails the test; without
//! it the test prints a `skipped:` line and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("deploy/tests has a parent")
        .to_path_buf()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    deploy_dir()
        .parent()
        .expect("deploy/ has a parent")
        .to_path_buf()
}

/// Reads a file under `deploy/`, panicking with its path when it cannot.
pub fn read(rel: &str) -> String {
    let p = deploy_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Every YAML document of a file under `deploy/`, as JSON values (empty documents dropped).
pub fn yaml_documents(rel: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    let text = read(rel);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            serde_json::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{rel}: not valid YAML: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Whether missing tools must fail the tests (`LLM_USAGE_REQUIRE_TOOLS=1`, as in CI).
pub fn tools_required() -> bool {
    std::env::var("LLM_USAGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// The path of an installed tool that answers `--version`, or `None` after printing a
/// `skipped:` line. Panics when the tool is missing and [`tools_required`].
pub fn tool(name: &str, install_hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    let works = found.as_ref().is_some_and(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if works {
        return found;
    }
    if tools_required() {
        panic!(
            "{name} is required (LLM_USAGE_REQUIRE_TOOLS=1) but not found on PATH: {install_hint}"
        );
    }
    eprintln!("skipped: {name} not found; {install_hint} (LLM_USAGE_REQUIRE_TOOLS=1 makes this a failure)");
    None
}
