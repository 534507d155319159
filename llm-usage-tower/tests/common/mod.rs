//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use llm_usage_tower::UsageEvent;

pub use llm_usage_testkit::{Fixture, Rope};

/// What this crate's tests read of a fixture: its headers as a `HeaderMap`, and its
/// expected figures as this build of the layer gives them (with the `bpe` feature the
/// layer estimates with OpenAI's encodings, whose figures `expect_bpe` gives where they
/// differ).
pub trait FixtureExt {
    fn request_headers(&self) -> HeaderMap;
    fn response_headers(&self) -> HeaderMap;
    /// An expected figure.
    fn expect_u64(&self, field: &str) -> Option<u64>;
    /// The whole expected record.
    fn expect(&self) -> serde_json::Value;
    fn expect_model(&self) -> Option<String>;
}

fn header_map(pairs: Vec<(String, String)>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(&v).expect("value"),
        );
    }
    h
}

impl FixtureExt for Fixture {
    fn request_headers(&self) -> HeaderMap {
        header_map(self.headers("request_headers"))
    }

    fn response_headers(&self) -> HeaderMap {
        header_map(self.headers("response_headers"))
    }

    fn expect_u64(&self, field: &str) -> Option<u64> {
        self.expected_u64(field, cfg!(feature = "bpe"))
    }

    fn expect(&self) -> serde_json::Value {
        self.expected(cfg!(feature = "bpe"))
    }

    fn expect_model(&self) -> Option<String> {
        self.case["expect"]["model"].as_str().map(str::to_owned)
    }
}

/// A deterministic xorshift generator for chunk sizes and delays.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Splits `data` into irregular chunks of 1..=max bytes.
pub fn irregular_chunks(data: &[u8], seed: u64, max: u64) -> Vec<Bytes> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let n = (1 + rng.below(max)) as usize;
        let end = (i + n).min(data.len());
        out.push(Bytes::copy_from_slice(&data[i..end]));
        i = end;
    }
    out
}

/// A body made of a fixed list of frames (data, trailers, or errors).
pub struct FramesBody {
    frames: VecDeque<Result<Frame<Bytes>, std::io::Error>>,
}

impl FramesBody {
    pub fn new(frames: impl IntoIterator<Item = Result<Frame<Bytes>, std::io::Error>>) -> Self {
        FramesBody {
            frames: frames.into_iter().collect(),
        }
    }

    pub fn data(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        Self::new(chunks.into_iter().map(|c| Ok(Frame::data(c))))
    }
}

impl Body for FramesBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.frames.pop_front())
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Collects the events handed to an `OnRecord` callback.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<UsageEvent>>>);

/// How long a test waits for something that should happen at once before calling it a
/// hang: generous, so that a saturated machine never fails a correct run.
pub const HANG: Duration = Duration::from_secs(120);

impl Events {
    pub fn callback(&self) -> impl Fn(&UsageEvent) + Send + Sync + 'static {
        let inner = self.0.clone();
        move |ev: &UsageEvent| inner.lock().unwrap().push(ev.clone())
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<UsageEvent> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until at least `n` events arrived. The deadline only turns a hang into a
    /// failure: it is far beyond what a loaded machine needs (records arrive within
    /// milliseconds), so it never decides a passing run.
    pub async fn wait_for(&self, n: usize) -> Vec<UsageEvent> {
        let deadline = Instant::now() + HANG;
        while self.len() < n {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} records, have {}",
                self.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.all()
    }
}

/// A body of `Rope` frames.
pub struct RopeBody(pub VecDeque<Rope>);

impl Body for RopeBody {
    type Data = Rope;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Rope>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|r| Ok(Frame::data(r))))
    }
}

/// The fixture's request (its method, path, headers and body) to `api.example.test`.
pub fn fixture_request(fx: &Fixture) -> http::Request<http_body_util::Full<Bytes>> {
    let method = fx.case["method"].as_str().unwrap_or("POST");
    let mut req = http::Request::builder()
        .method(method)
        .uri(fx.path())
        .header("host", "api.example.test")
        .body(http_body_util::Full::new(Bytes::from(fx.request.clone())))
        .unwrap();
    for (k, v) in fx.request_headers().iter() {
        req.headers_mut().insert(k, v.clone());
    }
    req
}
