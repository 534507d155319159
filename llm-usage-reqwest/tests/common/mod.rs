//! A mock LLM provider on loopback, answering with the recorded exchanges of
//! `testdata/fixtures`, and the helpers the tests share.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use llm_usage_reqwest::{LlmUsageMiddleware, UsageEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub use llm_usage_testkit::Fixture;

/// The fixture's request method (`POST` unless `case.json` says otherwise).
pub fn method(fx: &Fixture) -> reqwest::Method {
    let m = fx.case["method"].as_str().unwrap_or("POST");
    reqwest::Method::from_bytes(m.as_bytes()).expect("method")
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
        .request(method(fx), provider.url(fx.path()))
        .header("x-fixture", &fx.name);
    for (k, v) in fx.headers("request_headers") {
        rb = rb.header(k, v);
    }
    if !fx.request.is_empty() {
        rb = rb.body(fx.request.clone());
    }
    rb
}

/// The fixture's expected record: `expect`, with `expect_bpe` over it under the `bpe`
/// feature (the adapter then estimates with OpenAI's encodings).
pub fn expected(fx: &Fixture) -> serde_json::Value {
    fx.expected(cfg!(feature = "bpe"))
}

/// Installs a debugging recorder as the process's global metrics recorder (one per test
/// binary) and returns its snapshotter.
pub fn install_debugging_recorder() -> metrics_util::debugging::Snapshotter {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    snapshotter
}
