//! Test support shared by the adapters' integration tests (`llm-usage-tower`,
//! `llm-usage-reqwest`) and the wasm filter's test host: the recorded exchanges of
//! `testdata/fixtures` and the records they expect, the sessions of `testdata/realtime`, a
//! `tracing` layer that captures spans, and sums over Prometheus text.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use llm_usage_core::UsageRecord;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;

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

/// The dated example price table, `prices/example-2026-12.json`.
pub fn example_prices() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../prices/example-2026-12.json")
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

    pub fn status(&self) -> u16 {
        self.case["response_status"].as_u64().unwrap_or(200) as u16
    }

    /// The headers under `key` (`request_headers`, `response_headers`), in file order.
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

    /// The whole expected record: `expect`, with `expect_bpe` over it when `bpe` (the
    /// adapter under test then estimates with OpenAI's encodings; its `bpe` feature).
    pub fn expected(&self, bpe: bool) -> serde_json::Value {
        let mut e = self.case["expect"].clone();
        if let (true, Some(over)) = (bpe, self.case["expect_bpe"].as_object()) {
            for (k, v) in over {
                e[k] = v.clone();
            }
        }
        e
    }

    /// One expected figure, from `expect_bpe` where it gives one and `bpe`.
    pub fn expected_u64(&self, field: &str, bpe: bool) -> Option<u64> {
        let over = &self.case["expect_bpe"][field];
        if bpe && !over.is_null() {
            return over.as_u64();
        }
        self.case["expect"][field].as_u64()
    }

    /// A record's figures as the fixtures' `expect` objects write them: the usual figures
    /// always, the figures of issue 16 where the fixture states them (or the record has
    /// them; `provider` only where stated), `complete` where stated, `estimated` where
    /// stated or set.
    pub fn as_expected(&self, r: &UsageRecord) -> serde_json::Value {
        let expect = &self.case["expect"];
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
            if expect.get(k).is_some() || (k != "provider" && !v.is_null()) {
                got[k] = v;
            }
        }
        if expect.get("complete").is_some() {
            got["complete"] = r.complete.into();
        }
        if expect.get("estimated").is_some() || r.estimated {
            got["estimated"] = r.estimated.into();
        }
        got
    }
}

/// The record an expected record (`Fixture::expected`) describes, from the fixture alone:
/// the figures the price tables use. (Field by field: `UsageRecord` is
/// `#[non_exhaustive]`.)
pub fn record_of(e: &serde_json::Value) -> UsageRecord {
    let n = |k: &str| e[k].as_u64();
    let mut r = UsageRecord::default();
    r.model = e["model"].as_str().map(str::to_owned);
    r.input_tokens = n("input_tokens");
    r.output_tokens = n("output_tokens");
    r.total_tokens = n("total_tokens");
    r.cached_input_tokens = n("cached_input_tokens");
    r.cache_creation_input_tokens = n("cache_creation_input_tokens");
    r.cache_creation_5m_input_tokens = n("cache_creation_5m_input_tokens");
    r.cache_creation_1h_input_tokens = n("cache_creation_1h_input_tokens");
    r.reasoning_tokens = n("reasoning_tokens");
    r.input_audio_tokens = n("input_audio_tokens");
    r.input_image_tokens = n("input_image_tokens");
    r.output_audio_tokens = n("output_audio_tokens");
    r.output_image_tokens = n("output_image_tokens");
    r.web_search_requests = n("web_search_requests");
    r.web_fetch_requests = n("web_fetch_requests");
    r
}

/// One recorded realtime session of `testdata/realtime`: its `case.json`, the client's
/// WebSocket bytes and the server's.
pub struct RealtimeSession {
    pub name: String,
    pub case: serde_json::Value,
    pub client: Vec<u8>,
    pub server: Vec<u8>,
}

/// Every recorded realtime session, sorted by name.
pub fn realtime_sessions() -> Vec<RealtimeSession> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/realtime");
    let mut dirs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5);
    dirs.iter()
        .map(|d| RealtimeSession {
            name: d.file_name().unwrap().to_string_lossy().into_owned(),
            case: serde_json::from_slice(&std::fs::read(d.join("case.json")).unwrap()).unwrap(),
            client: std::fs::read(d.join("client.bin")).unwrap(),
            server: std::fs::read(d.join("server.bin")).unwrap(),
        })
        .collect()
}

/// Sums the samples of `name` whose labels include every pair of `labels`, in Prometheus
/// text format. `None` when no sample matches.
pub fn prom_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
        let label_text = label_text.trim_end_matches('}');
        if metric == name
            && labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
        {
            *total.get_or_insert(0.0) += value.parse::<f64>().expect("numeric sample");
        }
    }
    total
}

/// A span's name and the fields recorded on it, as text.
pub type SpanFields = (String, BTreeMap<String, String>);

/// A `tracing-subscriber` layer that captures every field recorded on a span: spans by id
/// while open, then in the order they closed.
#[derive(Clone, Default)]
pub struct Capture {
    open: Arc<Mutex<BTreeMap<u64, SpanFields>>>,
    closed: Arc<Mutex<Vec<SpanFields>>>,
}

impl Capture {
    /// The spans closed so far, in the order they closed.
    pub fn closed(&self) -> Vec<SpanFields> {
        self.closed.lock().unwrap().clone()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let name = attrs.metadata().name().to_owned();
        self.open
            .lock()
            .unwrap()
            .insert(id.into_u64(), (name, fields));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some((_, fields)) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(span);
        }
    }
}

/// The fixtures whose records carry the parts of input and output (audio, image, the
/// cache writes' 5-minute / 1-hour lifetimes).
pub const PART_FIXTURES: [&str; 3] = [
    "58-openai-chat-audio-json",
    "60-anthropic-web-fetch-cache-split-json",
    "61-gemini-multimodal-input-json",
];

/// The parts: the record field, its token-type label value (`otel` profile), its counter
/// (`asm` profile).
pub const PARTS: [(&str, &str, &str); 5] = [
    (
        "input_audio_tokens",
        "input_audio",
        "asm_llm_proxy_input_audio_tokens",
    ),
    (
        "input_image_tokens",
        "input_image",
        "asm_llm_proxy_input_image_tokens",
    ),
    (
        "output_audio_tokens",
        "output_audio",
        "asm_llm_proxy_output_audio_tokens",
    ),
    (
        "cache_creation_5m_input_tokens",
        "input_cache_write_5m",
        "asm_llm_proxy_cache_creation_5m_tokens",
    ),
    (
        "cache_creation_1h_input_tokens",
        "input_cache_write_1h",
        "asm_llm_proxy_cache_creation_1h_tokens",
    ),
];

/// A `Buf` made of many segments, like a rope (a body's data type whose chunks are not
/// the whole of it).
pub struct Rope(pub VecDeque<Bytes>);

impl Rope {
    /// `data` cut into `n` segments of (nearly) equal length.
    pub fn split(data: &[u8], n: usize) -> Rope {
        let size = data.len().div_ceil(n).max(1);
        Rope(data.chunks(size).map(Bytes::copy_from_slice).collect())
    }
}

impl Buf for Rope {
    fn remaining(&self) -> usize {
        self.0.iter().map(|b| b.len()).sum()
    }
    fn chunk(&self) -> &[u8] {
        self.0.front().map(|b| &b[..]).unwrap_or(&[])
    }
    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let front = self.0.front_mut().expect("advance past the end");
            let n = cnt.min(front.len());
            front.advance(n);
            cnt -= n;
            if front.is_empty() {
                self.0.pop_front();
            }
        }
    }
    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (d, b) in dst.iter_mut().zip(self.0.iter()) {
            *d = std::io::IoSlice::new(b);
            n += 1;
        }
        n
    }
}

/// The tower layer hands on bytes it made (with injection) as the body's own data type.
impl From<Bytes> for Rope {
    fn from(b: Bytes) -> Rope {
        Rope([b].into())
    }
}
