//! A mock LLM provider on loopback, answering with the recorded exchanges of
//! `testdata/fixtures`, and the helpers the tests share.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use llm_usage_reqwest::{LlmUsageMiddleware, UsageEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One exchange of `testdata/fixtures`.
pub struct Fixture {
    pub name: String,
    pub case: serde_json::Value,
    pub request: Vec<u8>,
    pub response: Vec<u8>,
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures")
}

/// Every fixture's name, sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("testdata/fixtures")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("case.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

impl Fixture {
    pub fn load(name: &str) -> Fixture {
        let dir = fixtures_dir().join(name);
        let case = std::fs::read(dir.join("case.json")).expect("case.json");
        Fixture {
            name: name.to_owned(),
            case: serde_json::from_slice(&case).expect("case.json is JSON"),
            request: std::fs::read(dir.join("request.json")).unwrap_or_default(),
            response: std::fs::read(dir.join("response.bin")).expect("response.bin"),
        }
    }

    pub fn path(&self) -> &str {
        self.case["path"].as_str().expect("path")
    }

    pub fn method(&self) -> reqwest::Method {
        let m = self.case["method"].as_str().unwrap_or("POST");
        reqwest::Method::from_bytes(m.as_bytes()).expect("method")
    }

    pub fn headers(&self, key: &str) -> Vec<(String, String)> {
        self.case[key]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().expect("string header").to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn status(&self) -> u16 {
        self.case["response_status"].as_u64().unwrap_or(200) as u16
    }
}

/// The mock provider: answers `x-fixture: NAME` with that fixture's status, headers and
/// body, chunked in `x-chunk` bytes (default 7) with a flush after each; `x-cut: N` stops
/// after N body bytes and closes the connection without the last chunk (a cut stream).
pub struct Provider {
    pub addr: std::net::SocketAddr,
}

impl Provider {
    pub async fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock));
            }
        });
        Provider { addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

async fn serve(mut sock: TcpStream) {
    // The request head, then its body (reqwest sends `content-length` for byte bodies).
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let Some(name) = header("x-fixture") else {
        let _ = sock
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    };
    let fx = Fixture::load(&name);
    let chunk: usize = header("x-chunk").and_then(|v| v.parse().ok()).unwrap_or(7);
    let cut: Option<usize> = header("x-cut").and_then(|v| v.parse().ok());
    let mut out = format!("HTTP/1.1 {} Mock\r\n", fx.status());
    for (k, v) in fx.headers("response_headers") {
        if !k.eq_ignore_ascii_case("content-length") {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str("transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    if sock.write_all(out.as_bytes()).await.is_err() {
        return;
    }
    let body = match cut {
        Some(n) => &fx.response[..n.min(fx.response.len())],
        None => &fx.response[..],
    };
    for piece in body.chunks(chunk.max(1)) {
        let mut frame = format!("{:x}\r\n", piece.len()).into_bytes();
        frame.extend_from_slice(piece);
        frame.extend_from_slice(b"\r\n");
        if sock.write_all(&frame).await.is_err() || sock.flush().await.is_err() {
            return;
        }
    }
    if cut.is_none() {
        let _ = sock.write_all(b"0\r\n\r\n").await;
    }
    let _ = sock.shutdown().await;
}

/// Collects the events a middleware reports.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<UsageEvent>>>);

impl Events {
    pub fn all(&self) -> Vec<UsageEvent> {
        self.0.lock().unwrap().clone()
    }

    pub fn middleware(&self, m: LlmUsageMiddleware) -> LlmUsageMiddleware {
        let events = self.0.clone();
        m.on_record(move |ev: &UsageEvent| events.lock().unwrap().push(ev.clone()))
    }
}

/// A client through the middleware.
pub fn client(m: LlmUsageMiddleware) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(m)
        .build()
}

/// The fixture's request, to the mock provider.
pub fn request(
    client: &reqwest_middleware::ClientWithMiddleware,
    provider: &Provider,
    fx: &Fixture,
) -> reqwest_middleware::RequestBuilder {
    let mut rb = client
        .request(fx.method(), provider.url(fx.path()))
        .header("x-fixture", &fx.name);
    for (k, v) in fx.headers("request_headers") {
        rb = rb.header(k, v);
    }
    if !fx.request.is_empty() {
        rb = rb.body(fx.request.clone());
    }
    rb
}

/// The record's figures as the fixtures' `expect` objects write them.
/// The fixture's expected record: `expect`, with `expect_bpe` over it under the `bpe`
/// feature (the adapter then estimates with OpenAI's encodings).
pub fn expected(fx: &Fixture) -> serde_json::Value {
    let mut e = fx.case["expect"].clone();
    if let (true, Some(bpe)) = (cfg!(feature = "bpe"), fx.case["expect_bpe"].as_object()) {
        for (k, v) in bpe {
            e[k] = v.clone();
        }
    }
    e
}

pub fn as_expected(fx: &Fixture, r: &llm_usage_reqwest::UsageRecord) -> serde_json::Value {
    let mut got = serde_json::json!({
        "model": r.model,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "total_tokens": r.total_tokens,
        "cached_input_tokens": r.cached_input_tokens,
        "cache_creation_input_tokens": r.cache_creation_input_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "stream": r.stream,
    });
    // The figures of issue 16, where the fixture states them (or the record has them).
    for (k, v) in [
        (
            "input_audio_tokens",
            serde_json::json!(r.input_audio_tokens),
        ),
        (
            "input_image_tokens",
            serde_json::json!(r.input_image_tokens),
        ),
        (
            "output_audio_tokens",
            serde_json::json!(r.output_audio_tokens),
        ),
        (
            "output_image_tokens",
            serde_json::json!(r.output_image_tokens),
        ),
        (
            "cache_creation_5m_input_tokens",
            serde_json::json!(r.cache_creation_5m_input_tokens),
        ),
        (
            "cache_creation_1h_input_tokens",
            serde_json::json!(r.cache_creation_1h_input_tokens),
        ),
        (
            "web_search_requests",
            serde_json::json!(r.web_search_requests),
        ),
        (
            "web_fetch_requests",
            serde_json::json!(r.web_fetch_requests),
        ),
        ("service_tier", serde_json::json!(r.service_tier)),
        (
            "operation",
            serde_json::json!(r.operation.map(|o| o.as_str())),
        ),
        (
            "provider",
            serde_json::json!(r.provider.map(|p| p.as_str())),
        ),
    ] {
        if fx.case["expect"].get(k).is_some() || (k != "provider" && !v.is_null()) {
            got[k] = v;
        }
    }
    if fx.case["expect"].get("complete").is_some() {
        got["complete"] = r.complete.into();
    }
    if fx.case["expect"].get("estimated").is_some() || r.estimated {
        got["estimated"] = r.estimated.into();
    }
    got
}
