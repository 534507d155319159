//! Locating (and if needed building) the release `.wasm` artifact for the tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use llm_usage_wasm_host::replay::Exchange;
use llm_usage_wasm_host::{Host, HostOptions, StatsConfig, Vm};

/// The workspace root (two levels above this crate).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    workspace().join("testdata/fixtures")
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace().join(d)
            }
        }
        None => workspace().join("target"),
    }
}

fn wasm_target_installed() -> Result<(), String> {
    let out = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", "wasm32-wasip1"])
        .current_dir(workspace())
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || dir.is_empty() || !Path::new(&dir).is_dir() {
        return Err(format!(
            "the wasm32-wasip1 target is not installed for this toolchain ({}).\n\
             Install it with: rustup target add wasm32-wasip1",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The path of the release filter artifact, building it first (once per test binary)
/// unless `LLM_USAGE_WASM` names a file to use.
pub fn wasm_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("LLM_USAGE_WASM") {
            // Cargo runs test binaries from the package directory, so a relative path is
            // taken from the workspace root, where the user most likely typed it.
            let given = PathBuf::from(p);
            let p = if given.is_relative() {
                workspace().join(&given)
            } else {
                given.clone()
            };
            assert!(
                p.is_file(),
                "LLM_USAGE_WASM={} does not exist (looked for {})",
                given.display(),
                p.display()
            );
            return p;
        }
        if let Err(msg) = wasm_target_installed() {
            panic!("{msg}");
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let target = target_dir();
        let out = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "llm-usage-wasm",
                "--target",
                "wasm32-wasip1",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(workspace())
            .output()
            .expect("cannot run cargo to build the filter");
        assert!(
            out.status.success(),
            "building the filter failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = target.join("wasm32-wasip1/release/llm_usage_wasm.wasm");
        assert!(p.is_file(), "the build did not produce {}", p.display());
        p
    })
}

/// The compiled filter (compiled once per test binary).
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::from_file(wasm_path()).expect("the filter loads"))
}

/// A VM with the node metadata of ASM's guide (workload `sleep` in `default`).
pub fn sleep_vm(config: &str) -> Vm {
    sleep_vm_on(host(), config)
}

/// [`sleep_vm`] on a given host (engine).
pub fn sleep_vm_on(host: &Host, config: &str) -> Vm {
    host.start(
        HostOptions::with_config(config)
            .node_metadata("WORKLOAD_NAME", "sleep")
            .node_metadata("NAMESPACE", "default"),
    )
    .expect("the VM starts")
}

/// The ASM ConfigMap's stats_tags.
pub fn asm_stats() -> StatsConfig {
    StatsConfig::asm()
}

/// `stats_tags` for the `otel` profile's tags (pipe format).
pub fn otel_stats() -> StatsConfig {
    StatsConfig::parse(
        r#"{"stats_tags": [
            {"tag_name": "gen_ai_token_type", "regex": "(\\|gen_ai_token_type=([^|]*))"},
            {"tag_name": "gen_ai_token_modality", "regex": "(\\|gen_ai_token_modality=([^|]*))"},
            {"tag_name": "gen_ai_provider_name", "regex": "(\\|gen_ai_provider_name=([^|]*))"},
            {"tag_name": "gen_ai_request_model", "regex": "(\\|gen_ai_request_model=([^|]*))"},
            {"tag_name": "gen_ai_response_model", "regex": "(\\|gen_ai_response_model=([^|]*))"}]}"#,
    )
    .expect("valid stats_tags")
}

/// Whether the filter under test decodes `coding`: gzip and deflate in the default build;
/// zstd and br only in a filter built with `--features zstd` / `br`, which the tests are
/// told by `LLM_USAGE_WASM_FEATURES=zstd,br` (not in the default build: see the crate's
/// README).
pub fn decodes(coding: &str) -> bool {
    let built_with = |feature: &str| {
        std::env::var("LLM_USAGE_WASM_FEATURES")
            .is_ok_and(|f| f.split([',', ' ']).any(|f| f == feature))
    };
    match coding.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" | "deflate" | "identity" => true,
        "zstd" => built_with("zstd"),
        "br" => built_with("br"),
        _ => false,
    }
}

/// What the filter under test must report for `ex`: its `expect`, or, when the filter
/// does not decode its response's coding, unknown tokens and the request's model (the
/// core's rule for an undecodable body), and the operation, which the path gives.
pub fn expectation(ex: &mut Exchange) {
    let coding = ex
        .response_headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-encoding"))
        .map(|(_, v)| v.clone());
    if coding.as_deref().is_none_or(decodes) {
        return;
    }
    let request: serde_json::Value =
        serde_json::from_slice(&ex.request_body).unwrap_or(serde_json::Value::Null);
    let operation = ex.expect.as_ref().map(|e| e["operation"].clone());
    ex.expect = Some(serde_json::json!({ "model": request["model"], "operation": operation }));
}
