//! The `llm-usage` binary on every fixture, and its usage errors.

mod common;

use common::{bin, fixtures, scan_args};
use llm_usage_core::UsageRecord;
use serde_json::Value;
use std::process::Stdio;

const FIELDS: [&str; 23] = [
    "provider",
    "model",
    "request_model",
    "response_model",
    "stream",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "output_audio_tokens",
    "output_image_tokens",
    "cache_creation_5m_input_tokens",
    "cache_creation_1h_input_tokens",
    "web_search_requests",
    "web_fetch_requests",
    "service_tier",
    "operation",
    "complete",
    "estimated",
];

#[test]
fn every_fixture_through_the_binary() {
    let all = fixtures();
    assert!(all.len() >= 49);
    for dir in all {
        let mut args = scan_args(&dir);
        args.push(dir.join("response.bin").to_string_lossy().into_owned());
        let out = bin().args(&args).output().unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.lines().count(),
            1,
            "{name}: one JSON object on one line"
        );
        let got: Value = serde_json::from_str(&text).unwrap();
        // The printed record reads back into the same record.
        let back: UsageRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            got,
            "{name}: round trip"
        );
        let keys: Vec<&str> = got
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted_fields = FIELDS.to_vec();
        sorted_fields.sort();
        let mut sorted_keys = keys.clone();
        sorted_keys.sort();
        assert_eq!(
            sorted_keys, sorted_fields,
            "{name}: exactly the record's fields"
        );
        let case: Value =
            serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
        // The binary estimates with OpenAI's encodings: `expect_bpe` overrides what
        // differs from the character-count estimate of `expect`.
        let mut expect = case["expect"].as_object().unwrap().clone();
        if let Some(bpe) = case["expect_bpe"].as_object() {
            expect.extend(bpe.clone());
        }
        for (k, v) in &expect {
            assert_eq!(&got[k], v, "{name}: {k}");
        }
        let want = case["expect"]["complete"]
            .as_bool()
            .unwrap_or(!name.contains("truncated"));
        assert_eq!(got["complete"], Value::Bool(want), "{name}: complete");
    }
}

#[test]
fn estimator_chars_gives_the_character_count_estimate() {
    let dir = fixtures()
        .into_iter()
        .find(|d| d.ends_with("03-openai-chat-stream-no-usage"))
        .unwrap();
    let case: Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    for (estimator, key) in [("chars", "expect"), ("bpe", "expect_bpe")] {
        let mut args = scan_args(&dir);
        args.extend(["--estimator".into(), estimator.into()]);
        args.push(dir.join("response.bin").to_string_lossy().into_owned());
        let out = bin().args(&args).output().unwrap();
        assert!(out.status.success());
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        for f in ["input_tokens", "output_tokens", "total_tokens"] {
            assert_eq!(got[f], case[key][f], "--estimator {estimator}: {f}");
        }
        assert_eq!(got["estimated"], Value::Bool(true));
    }
    assert_ne!(
        case["expect"]["input_tokens"],
        case["expect_bpe"]["input_tokens"]
    );
    let out = bin()
        .args(["scan", "--estimator", "tiktoken", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--estimator"));
}

#[test]
fn response_from_stdin() {
    let dir = fixtures()
        .into_iter()
        .find(|d| d.ends_with("12-anthropic-messages-stream"))
        .unwrap();
    let mut child = bin()
        .args(scan_args(&dir))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let body = std::fs::read(dir.join("response.bin")).unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&body).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["output_tokens"], 31);
    assert_eq!(got["provider"], "anthropic");
}

#[test]
fn provider_override() {
    // An Anthropic stream behind a gateway path nobody could recognise.
    let dir = fixtures()
        .into_iter()
        .find(|d| d.ends_with("12-anthropic-messages-stream"))
        .unwrap();
    let body = dir.join("response.bin");
    let run = |extra: &[&str]| -> Value {
        let out = bin()
            .args([
                "scan",
                "--path",
                "/gateway/llm",
                "--header",
                "content-type: text/event-stream",
            ])
            .args(extra)
            .arg(&body)
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let detected = run(&[]);
    assert_eq!(
        detected["provider"],
        Value::Null,
        "nothing recognised, nothing proven"
    );
    assert_eq!(detected["input_tokens"], Value::Null);
    let forced = run(&["--provider", "anthropic"]);
    assert_eq!(forced["provider"], "anthropic");
    assert_eq!(forced["input_tokens"], 25);
    assert_eq!(forced["output_tokens"], 31);
}

#[test]
fn usage_errors_exit_2_and_name_the_bad_argument() {
    // (arguments, what the error must name)
    for (args, named) in [
        (
            vec!["scan", "/definitely/not/here.bin"],
            "/definitely/not/here.bin",
        ),
        (vec!["scan", "--request", "/nope.json", "-"], "--request"),
        (vec!["scan", "--status", "abc"], "--status"),
        (vec!["scan", "--status", "42"], "--status"),
        (vec!["scan", "--header", "no-colon"], "--header"),
        (vec!["scan", "--request-header", ": x"], "--request-header"),
        (vec!["scan", "--provider", "nonesuch"], "--provider"),
        (vec!["scan", "--estimator", "tiktoken"], "--estimator"),
        (
            vec!["scan", "--prices", "/nope/prices.json", "-"],
            "--prices",
        ),
        (vec!["scan", "--bogus"], "--bogus"),
        (vec!["scan", "--path"], "--path"),
        (vec!["scan", "-", "-"], "'-'"),
        (vec!["report"], "<PATH>"),
        (vec!["report", "--colour", "x"], "--colour"),
        (vec!["demo", "extra"], "extra"),
        (vec!["frobnicate"], "frobnicate"),
    ] {
        let out = bin().args(&args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?} must name {named}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // No command at all: the help, on stderr, exit 2.
    let out = bin().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Commands:"));
}

#[test]
fn help_for_every_subcommand() {
    let top = bin().arg("--help").output().unwrap();
    assert!(top.status.success());
    let text = String::from_utf8(top.stdout).unwrap();
    for sub in ["scan", "report", "demo"] {
        assert!(text.contains(&format!("  {sub} ")), "{sub} in: {text}");
    }
    let flags: [(&str, &[&str]); 3] = [
        (
            "scan",
            &[
                "--method",
                "--path",
                "--request",
                "--request-header",
                "--status",
                "--header",
                "--provider",
                "--estimator",
                "--prices",
                "--pretty",
                "RESPONSE_FILE",
                "one JSON record per line",
            ],
        ),
        ("report", &["--prices", "--json", "<PATH>..."]),
        ("demo", &["no network"]),
    ];
    for (sub, flags) in flags {
        // `SUB --help` and `help SUB` print the same text.
        let a = bin().args([sub, "--help"]).output().unwrap();
        let b = bin().args(["help", sub]).output().unwrap();
        assert!(a.status.success() && b.status.success(), "{sub}");
        assert_eq!(a.stdout, b.stdout, "{sub}");
        let text = String::from_utf8(a.stdout).unwrap();
        assert!(
            text.contains(&format!("Usage: llm-usage {sub}")),
            "{sub}: {text}"
        );
        for f in flags {
            assert!(text.contains(f), "{sub} --help lacks {f}: {text}");
        }
    }
}

#[test]
fn version() {
    for flag in ["--version", "-V"] {
        let out = bin().arg(flag).output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("llm-usage {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn several_response_files_give_one_record_per_line_in_order() {
    let dir = fixtures()
        .into_iter()
        .find(|d| d.ends_with("01-openai-chat-basic"))
        .unwrap();
    let body = std::fs::read_to_string(dir.join("response.bin")).unwrap();
    // Two other bodies of the same exchange, with other figures.
    let variant = |input: u64| {
        body.replace(
            "\"prompt_tokens\": 27",
            &format!("\"prompt_tokens\": {input}"),
        )
        .replace(
            "\"total_tokens\": 35",
            &format!("\"total_tokens\": {}", input + 8),
        )
    };
    let second =
        std::env::temp_dir().join(format!("llm-usage-cli-{}-second.json", std::process::id()));
    std::fs::write(&second, variant(100)).unwrap();
    let mut child = bin()
        .args(scan_args(&dir))
        .arg(dir.join("response.bin"))
        .arg(&second)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(variant(500).as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    std::fs::remove_file(&second).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let inputs: Vec<&Value> = records.iter().map(|r| &r["input_tokens"]).collect();
    assert_eq!(inputs, [27, 100, 500]);
    let totals: Vec<&Value> = records.iter().map(|r| &r["total_tokens"]).collect();
    assert_eq!(totals, [35, 108, 508]);
    assert!(records
        .iter()
        .all(|r| r["model"] == "gpt-4o-mini-2024-07-18"));
}

#[test]
fn a_missing_file_among_several_prints_nothing() {
    let dir = fixtures()
        .into_iter()
        .find(|d| d.ends_with("01-openai-chat-basic"))
        .unwrap();
    let out = bin()
        .args(scan_args(&dir))
        .arg(dir.join("response.bin"))
        .arg("/definitely/not/here.bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/definitely/not/here.bin"));
}

#[test]
fn demo_prints_records_and_totals() {
    let out = bin().arg("demo").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let records: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.len() >= 3);
    assert!(records.iter().any(|r| r["provider"] == "openai"));
    assert!(records.iter().any(|r| r["provider"] == "anthropic"));
    assert!(records.iter().any(|r| r["stream"] == true));
    assert!(text.contains("Token totals per model:"));
    assert!(text
        .lines()
        .any(|l| l.starts_with("gpt-4o-2024-08-06") && l.split_whitespace().nth(5) == Some("22")));
}
