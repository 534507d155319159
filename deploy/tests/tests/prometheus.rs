//! A real Prometheus (Debian's `prometheus` server) scraping three instances of the tower
//! gateway example (profile `otel` in seconds, `otel` in milliseconds as the wasm filter
//! records, and `asm`) in front of a mock LLM provider run by this
//! test, all on loopback. After a bounded burst of traffic, Prometheus' HTTP API must show
//! the tokens per model the provider reported, every recording rule of
//! deploy/prometheus must return data and every rule be healthy, and every query of every
//! panel of the Grafana dashboard must return a finite value. `promtool check metrics` reads
//! the gateways' `/metrics` and the real filter's Prometheus text (the proxy-wasm host).
//!
//! Nothing waits a fixed time: each check polls with a bounded number of tries. Every
//! process started here is stopped by a guard, also when an assertion fails.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use llm_usage_deploy_tests::{read, repo_root, tool, yaml_documents};
use llm_usage_wasm_host::replay::{self, Delivery};
use llm_usage_wasm_host::StatsConfig;
use serde_json::{json, Value};

#[path = "../../../llm-usage-wasm/host/tests/common/mod.rs"]
mod common;

const HINT: &str = "install prometheus (apt-get install -y prometheus)";

/// A child process killed and reaped when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child, log }
    }

    /// The end of its output, for failure messages.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} ({}), last lines:\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 exchange (the server closes the connection after the response): status
/// and body. `None` when nothing listens yet.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, resp[split + 4..].to_vec()))
}

/// Polls `f` up to `tries` times, `pause` apart, until it returns `Some`.
fn poll<T>(tries: u32, pause: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for i in 0..tries {
        if let Some(v) = f() {
            return Some(v);
        }
        if i + 1 < tries {
            std::thread::sleep(pause);
        }
    }
    None
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query; the result vector (`Err` with Prometheus' error for a bad query).
fn query(port: u16, promql: &str) -> Result<Vec<Value>, String> {
    let (status, body) = http(
        port,
        "GET",
        &format!("/api/v1/query?query={}", urlencode(promql)),
        &[],
        b"",
    )
    .ok_or("Prometheus did not answer")?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("{status}: {e}"))?;
    if v["status"] != "success" {
        return Err(format!("{promql}: {}", v["error"]));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn finite(sample: &Value) -> bool {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .is_some_and(f64::is_finite)
}

// ---------------------------------------------------------------- the mock provider

/// Token totals the provider reported, per (gateway profile, model, kind), where kind is
/// `input` (all input, cached included: the normalised figure) or `output`. The profile is
/// the `x-test-profile` request header the test sends, which the gateway passes on.
type Key = (String, String, &'static str);
type Reported = Arc<Mutex<BTreeMap<Key, u64>>>;

#[derive(Clone)]
struct Mock {
    reported: Reported,
    counter: Arc<Mutex<u64>>,
}

impl Mock {
    fn next(&self) -> u64 {
        let mut c = self.counter.lock().unwrap();
        *c += 1;
        *c
    }
    fn report(&self, headers: &HeaderMap, model: &str, input: u64, output: u64) {
        let profile = headers
            .get("x-test-profile")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let mut r = self.reported.lock().unwrap();
        *r.entry((profile.clone(), model.to_owned(), "input"))
            .or_default() += input;
        *r.entry((profile, model.to_owned(), "output")).or_default() += output;
    }
}

fn response(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

fn error_status(headers: &HeaderMap) -> Option<StatusCode> {
    headers
        .get("x-mock-status")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
}

const WORDS: [&str; 6] = ["A mutex", " lets", " one", " thread", " in", " at a time."];

async fn openai(State(m): State<Mock>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = req["model"].as_str().unwrap_or("unknown").to_owned();
    if let Some(status) = error_status(&headers) {
        let err = json!({"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limit_exceeded"}});
        return response(status, "application/json", err.to_string());
    }
    let i = m.next();
    let (prompt, completion, cached) = (40 + 3 * i, 8 + i % 5, i % 4);
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                       "prompt_tokens_details": {"cached_tokens": cached}, "completion_tokens_details": {"reasoning_tokens": 0}});
    if req["stream"] != true {
        m.report(&headers, &model, prompt, completion);
        let body = json!({"id": format!("chatcmpl-{i}"), "object": "chat.completion", "created": 1_765_000_000, "model": model,
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": WORDS.concat()}, "finish_reason": "stop"}],
                          "usage": usage});
        return response(StatusCode::OK, "application/json", body.to_string());
    }
    let include_usage = req["stream_options"]["include_usage"] == true;
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": format!("chatcmpl-{i}"), "object": "chat.completion.chunk", "created": 1_765_000_000,
                           "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut sse = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    for w in WORDS {
        sse += &chunk(json!({"content": w}), Value::Null);
    }
    sse += &chunk(json!({}), json!("stop"));
    if include_usage {
        m.report(&headers, &model, prompt, completion);
        let last = json!({"id": format!("chatcmpl-{i}"), "object": "chat.completion.chunk", "created": 1_765_000_000,
                          "model": model, "choices": [], "usage": usage});
        sse += &format!("data: {last}\n\n");
    }
    sse += "data: [DONE]\n\n";
    response(StatusCode::OK, "text/event-stream", sse)
}

async fn anthropic(State(m): State<Mock>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = req["model"].as_str().unwrap_or("unknown").to_owned();
    let i = m.next();
    let (input, cache_read, output) = (30 + 2 * i, 5 + i % 3, 12 + i % 7);
    m.report(&headers, &model, input + cache_read, output);
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut sse = ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": format!("msg_{i}"), "type": "message",
        "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cache_read, "output_tokens": 1}}}),
    );
    sse += &ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    for w in WORDS {
        sse += &ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
        );
    }
    sse += &ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    sse += &ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                                        "usage": {"output_tokens": output}}),
    );
    sse += &ev("message_stop", json!({"type": "message_stop"}));
    response(StatusCode::OK, "text/event-stream", sse)
}

/// Starts the mock provider on a loopback port, on its own runtime thread.
fn start_mock(reported: Reported) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mock = Mock {
        reported,
        counter: Arc::new(Mutex::new(0)),
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = Router::new()
                .route("/v1/chat/completions", post(openai))
                .route("/v1/messages", post(anthropic))
                .with_state(mock);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}

// ---------------------------------------------------------------- the gateway

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => repo_root().join(d),
        None => repo_root().join("target"),
    }
}

/// Builds the tower gateway example (debug) and returns its path.
fn gateway_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-p", "llm-usage-tower", "--example", "gateway"])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(repo_root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building the gateway example failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir().join("debug/examples/gateway");
    assert!(bin.is_file(), "no {}", bin.display());
    bin
}

/// One round of traffic through a gateway: `n` exchanges of each measured kind (OpenAI
/// JSON, OpenAI stream with usage, Anthropic stream), `estimated` OpenAI streams without
/// usage (their tokens are estimated) and `errors` answers 429. Returns the exchanges sent.
fn send_round(profile: &str, port: u16, n: usize, estimated: usize, errors: usize) -> usize {
    let mut sent = 0;
    let mut send = |path: &str, body: Value, headers: &[(&str, &str)], want: u16| {
        let mut h = vec![
            ("content-type", "application/json"),
            ("x-test-profile", profile),
        ];
        h.extend_from_slice(headers);
        let (status, resp) =
            http(port, "POST", path, &h, body.to_string().as_bytes()).expect("the gateway answers");
        assert_eq!(
            status,
            want,
            "{path} {body}: {}",
            String::from_utf8_lossy(&resp)
        );
        sent += 1;
    };
    let msgs = json!([{"role": "user", "content": "Explain what a mutex is in one sentence."}]);
    for _ in 0..n {
        send(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": msgs}),
            &[],
            200,
        );
        send(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": msgs, "stream": true, "stream_options": {"include_usage": true}}),
            &[],
            200,
        );
        send(
            "/v1/messages",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": msgs, "stream": true}),
            &[("anthropic-version", "2023-06-01")],
            200,
        );
    }
    for _ in 0..estimated {
        // No include_usage: the stream carries no usage and the tokens are estimated.
        send(
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": msgs, "stream": true}),
            &[],
            200,
        );
    }
    for _ in 0..errors {
        send(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": msgs}),
            &[("x-mock-status", "429")],
            429,
        );
    }
    sent
}

/// The number of samples in Prometheus text.
fn samples(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

// ---------------------------------------------------------------- promtool check metrics

/// Lint findings promtool may report for names the project cannot change: the ASM
/// profile's names (kept for compatibility with Alibaba Cloud Service Mesh) and the
/// filter's Envoy counters, which Envoy exports without a `_total` suffix.
fn allowed_lint(line: &str, envoy: bool) -> bool {
    // Envoy's /stats/prometheus has no HELP lines (the host renders it as Envoy does).
    envoy && line.ends_with(" no help text")
        || line.ends_with(r#"counter metrics should have "_total" suffix"#)
            && (line.starts_with("asm_llm_proxy_")
                // Envoy renders every counter without `_total`, the filter's included.
                || envoy
                    && (line.starts_with("llm_usage_")
                        || line.starts_with("gen_ai_client_inference_usage_")))
        || line.ends_with("metric names should not contain abbreviated units")
            && line.starts_with("asm_llm_proxy_")
        // A name carries its unit: the filter records integer milliseconds (Envoy
        // histograms take a u64), a gateway may share its series (`--time-unit ms`).
        || line.ends_with(r#"use base unit "seconds" instead of "milliseconds""#)
            && line.split(' ').next().is_some_and(|n| n.ends_with("_milliseconds"))
}

/// `promtool check metrics` on `text`: no parse error (exit 1), and no lint finding other
/// than [`allowed_lint`] ones. Returns the findings.
fn check_metrics(promtool: &Path, what: &str, text: &str, envoy: bool) -> Vec<String> {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let findings: Vec<String> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    match out.status.code() {
        Some(0) => assert!(findings.is_empty(), "{what}: {report}"),
        // 3: lint problems only.
        Some(3) => {
            for f in &findings {
                assert!(
                    allowed_lint(f, envoy),
                    "{what}: promtool check metrics: {f}"
                );
            }
        }
        other => panic!("{what}: promtool check metrics failed ({other:?}):\n{report}\n{text}"),
    }
    findings
}

#[test]
fn host_prometheus_output_passes_promtool() {
    let Some(promtool) = tool("promtool", HINT) else {
        return;
    };
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(common::fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").is_file())
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 50);
    let otel_stats = StatsConfig::parse(
        r#"{"stats_tags": [
            {"tag_name": "gen_ai_provider_name", "regex": "(\\|gen_ai_provider_name=([^|]*))"},
            {"tag_name": "gen_ai_request_model", "regex": "(\\|gen_ai_request_model=([^|]*))"},
            {"tag_name": "gen_ai_response_model", "regex": "(\\|gen_ai_response_model=([^|]*))"},
            {"tag_name": "gen_ai_token_type", "regex": "(\\|gen_ai_token_type=([^|]*))"},
            {"tag_name": "gen_ai_token_modality", "regex": "(\\|gen_ai_token_modality=([^|]*))"}]}"#,
    )
    .unwrap();
    for (profile, stats, metric) in [
        ("asm", StatsConfig::asm(), "asm_llm_proxy_prompt_tokens{"),
        ("otel", otel_stats, "gen_ai_client_token_usage_bucket{"),
    ] {
        let mut vm = common::sleep_vm(&json!({"profile": profile}).to_string());
        for dir in &fixtures {
            let ex = replay::load_case(dir, "api.example.com").unwrap();
            replay::run(&mut vm, &ex, &Delivery::default()).unwrap();
        }
        let text = vm.prometheus(&stats);
        assert!(text.contains(metric), "{profile}: {text}");
        check_metrics(
            &promtool,
            &format!("the filter's {profile} output"),
            &text,
            true,
        );
    }
}

// ---------------------------------------------------------------- the integration test

/// The dashboard's queries with Grafana's variables as a user who picked "All" gets them.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(&read("grafana/llm-usage.json")).unwrap();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m")
                .replace("$profile", "otel|asm")
                .replace("$model", ".*");
            assert!(!expr.contains('$'), "an unknown variable in {expr}");
            out.push((
                format!(
                    "{} / {}",
                    p["title"].as_str().unwrap(),
                    t["refId"].as_str().unwrap()
                ),
                expr,
            ));
        }
    }
    out
}

/// Targets that read Istio's own metrics (`istio_requests_total` with the model dimension
/// of deploy/istio/30-telemetry.yaml): no mesh here, so they cannot return data.
const NEEDS_A_MESH: [&str; 1] = ["Error rate by model / B"];

#[test]
fn prometheus_scrapes_the_gateway_and_every_query_has_data() {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus", HINT), tool("promtool", HINT))
    else {
        return;
    };
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("prometheus-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    let reported: Reported = Arc::default();
    let mock_port = start_mock(reported.clone());
    let gateway = gateway_binary();
    let mut gateways = Vec::new();
    // (name, profile, durations' unit)
    for (profile, names, unit) in [
        ("otel", "otel", "s"),
        ("otel-ms", "otel", "ms"),
        ("asm", "asm", "ms"),
    ] {
        let port = free_port();
        let proc = Proc::spawn(
            match profile {
                "otel" => "gateway otel",
                "otel-ms" => "gateway otel-ms",
                _ => "gateway asm",
            },
            Command::new(&gateway).args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--upstream",
                &format!("http://127.0.0.1:{mock_port}"),
                "--profile",
                names,
                "--time-unit",
                unit,
                // Every model the mock serves is priced: the cost rule has data.
                "--prices",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../prices/example-2026-12.json"
                ),
            ]),
            work.join(format!("gateway-{profile}.log")),
        );
        let up = poll(100, Duration::from_millis(100), || {
            http(port, "GET", "/metrics", &[], b"").filter(|r| r.0 == 200)
        });
        assert!(up.is_some(), "the gateway did not come up\n{}", proc.tail());
        gateways.push((profile, port, proc));
    }

    // The rules as shipped, evaluated every second instead of every 30 s.
    let mut rules = yaml_documents("prometheus/llm-usage.rules.yaml").remove(0);
    for g in rules["groups"].as_array_mut().unwrap() {
        g["interval"] = json!("1s");
    }
    std::fs::write(
        work.join("rules.yaml"),
        serde_json::to_string(&rules).unwrap(),
    )
    .unwrap();
    let scrape: Vec<Value> = gateways
        .iter()
        .map(|(profile, port, _)| json!({"job_name": format!("gateway-{profile}"), "static_configs": [{"targets": [format!("127.0.0.1:{port}")]}]}))
        .collect();
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [work.join("rules.yaml")],
        "scrape_configs": scrape,
    });
    std::fs::write(
        work.join("prometheus.yml"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let prom_port = free_port();
    let prom = Proc::spawn(
        "prometheus",
        Command::new(prometheus).args([
            format!("--config.file={}", work.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", work.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ]),
        work.join("prometheus.log"),
    );
    let ready = poll(150, Duration::from_millis(200), || {
        http(prom_port, "GET", "/-/ready", &[], b"").filter(|r| r.0 == 200)
    });
    assert!(
        ready.is_some(),
        "Prometheus did not become ready\n{}",
        prom.tail()
    );

    // A first round creates every series; once Prometheus has scraped all of them, the
    // second round makes them grow, so that rates over the window are not zero.
    let mut sent = 0;
    for (profile, port, _) in &gateways {
        sent += send_round(profile, *port, 1, 1, 1);
        let (_, body) = http(*port, "GET", "/metrics", &[], b"").unwrap();
        let want = samples(&String::from_utf8(body).unwrap());
        let q = format!(r#"count({{job="gateway-{profile}", __name__!~"up|scrape_.+"}})"#);
        let scraped = poll(100, Duration::from_millis(200), || {
            let r = query(prom_port, &q).ok()?;
            (r.first()?["value"][1].as_str()? == want.to_string()).then_some(())
        });
        assert!(
            scraped.is_some(),
            "Prometheus did not scrape the {want} samples of gateway {profile}: {:?}\n{}",
            query(prom_port, &q),
            prom.tail()
        );
    }
    for (profile, port, _) in &gateways {
        sent += send_round(profile, *port, 5, 3, 2);
    }
    assert_eq!(sent, 75);
    let reported = reported.lock().unwrap().clone();
    // Three gateways, two measured models, input and output; gpt-4o-mini's streams carried
    // no usage, so the provider reported nothing for them.
    assert_eq!(reported.len(), 12, "{reported:?}");

    // Tokens per model in Prometheus, per gateway, = what the provider reported to it.
    let tokens = |q: &str, label: &str| -> Option<Vec<(String, u64)>> {
        let r = query(prom_port, q).ok()?;
        r.iter()
            .map(|s| {
                let v: f64 = s["value"][1].as_str()?.parse().ok()?;
                Some((s["metric"][label].as_str()?.to_owned(), v.round() as u64))
            })
            .collect()
    };
    let mut in_prometheus: BTreeMap<Key, u64> = BTreeMap::new();
    let seen = poll(60, Duration::from_millis(500), || {
        in_prometheus.clear();
        for kind in ["input", "output"] {
            let otel = |job: &str| {
                tokens(
                    &format!(
                        r#"sum by (gen_ai_request_model) (llm_usage_tokens_total{{job="gateway-{job}", gen_ai_token_type="{kind}"}})"#
                    ),
                    "gen_ai_request_model",
                )
            };
            let (otel_s, otel_ms) = (otel("otel")?, otel("otel-ms")?);
            let asm_metric = if kind == "input" {
                "asm_llm_proxy_prompt_tokens"
            } else {
                "asm_llm_proxy_completion_tokens"
            };
            let asm = tokens(
                &format!(r#"sum by (llmproxy_model) ({asm_metric}{{job="gateway-asm"}})"#),
                "llmproxy_model",
            )?;
            let all = otel_s
                .into_iter()
                .map(|e| ("otel", e))
                .chain(otel_ms.into_iter().map(|e| ("otel-ms", e)))
                .chain(asm.into_iter().map(|e| ("asm", e)));
            for (profile, (model, v)) in all {
                // The estimated model's figures are the layer's estimates, checked below.
                if model != "gpt-4o-mini" {
                    in_prometheus.insert((profile.to_owned(), model, kind), v);
                }
            }
        }
        (in_prometheus == reported).then_some(())
    });
    assert!(
        seen.is_some(),
        "tokens per model in Prometheus {in_prometheus:?} != reported by the provider {reported:?}\n{}",
        prom.tail()
    );
    // The estimated model: counted, flagged as estimated in both profiles.
    for q in [
        r#"sum(llm_usage_estimated_requests_total{job="gateway-otel", gen_ai_request_model="gpt-4o-mini"})"#,
        r#"sum(llm_usage_estimated_requests_total{job="gateway-otel-ms", gen_ai_request_model="gpt-4o-mini"})"#,
        r#"sum(asm_llm_proxy_estimated_requests{job="gateway-asm", llmproxy_model="gpt-4o-mini"})"#,
    ] {
        let r = query(prom_port, q).unwrap();
        assert_eq!(r.len(), 1, "{q}");
        assert_eq!(r[0]["value"][1], "4", "{q}: 1 + 3 streams without usage");
    }

    // Every recording rule returns data (finite values), and every rule is healthy.
    let records: Vec<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| {
            g["rules"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r["record"].as_str().map(str::to_owned))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(records.len(), 7);
    for rec in &records {
        for profile in ["otel", "asm"] {
            let q = format!(r#"{rec}{{profile="{profile}"}}"#);
            let got = poll(60, Duration::from_millis(500), || {
                query(prom_port, &q).ok().filter(|r| r.iter().any(finite))
            });
            assert!(
                got.is_some(),
                "recording rule {q} has no data (all profiles: {:?})\n{}",
                query(prom_port, rec),
                prom.tail()
            );
        }
    }
    let (_, body) = http(prom_port, "GET", "/api/v1/rules", &[], b"").unwrap();
    let api: Value = serde_json::from_slice(&body).unwrap();
    let mut rule_count = 0;
    for g in api["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            rule_count += 1;
            assert_eq!(r["health"], "ok", "{r}");
        }
    }
    let shipped: usize = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    assert_eq!(rule_count, shipped, "Prometheus loaded every rule");

    // Every query of every dashboard panel returns a finite value.
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{}", queries.len());
    let mut skipped = Vec::new();
    for (name, expr) in &queries {
        if NEEDS_A_MESH.contains(&name.as_str()) {
            assert!(expr.contains("istio_requests_total"), "{name}");
            skipped.push(name.as_str());
            continue;
        }
        let got = poll(60, Duration::from_millis(500), || {
            query(prom_port, expr).ok().filter(|r| r.iter().any(finite))
        });
        assert!(
            got.is_some(),
            "dashboard query {name} returns no data: {expr}\n{:?}",
            query(prom_port, expr)
        );
    }
    assert_eq!(skipped, NEEDS_A_MESH);

    // promtool check metrics on each gateway's output.
    for (profile, port, _) in &gateways {
        let (_, body) = http(*port, "GET", "/metrics", &[], b"").unwrap();
        let text = String::from_utf8(body).unwrap();
        let findings = check_metrics(&promtool, &format!("gateway {profile}"), &text, false);
        match *profile {
            "otel" => assert!(findings.is_empty(), "{findings:?}"),
            "otel-ms" => assert!(!findings.is_empty(), "the milliseconds lint"),
            _ => {}
        }
    }
    drop(prom);
    drop(gateways);
    let _ = std::fs::remove_dir_all(&work);
}
