//! What the binary's tests share: the binary, the fixture folders, and the `scan`
//! arguments a fixture's `case.json` gives.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `llm-usage` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-usage"))
}

/// Every fixture folder (those with a `case.json`), sorted.
pub fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    v.sort();
    v
}

/// `scan` with the fixture's method, path, status, request body and headers; the
/// response file(s) are the caller's to add.
pub fn scan_args(dir: &Path) -> Vec<String> {
    let case: Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let mut args = vec![
        "scan".to_owned(),
        "--method".into(),
        case["method"].as_str().unwrap().into(),
        "--path".into(),
        case["path"].as_str().unwrap().into(),
        "--status".into(),
        case["response_status"].to_string(),
    ];
    if dir.join("request.json").exists() {
        args.push("--request".into());
        args.push(dir.join("request.json").to_string_lossy().into_owned());
    }
    for (flag, key) in [
        ("--request-header", "request_headers"),
        ("--header", "response_headers"),
    ] {
        if let Some(m) = case[key].as_object() {
            for (k, v) in m {
                args.push(flag.into());
                args.push(format!("{k}: {}", v.as_str().unwrap()));
            }
        }
    }
    args
}
