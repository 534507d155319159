//! The baselines the core is judged against, each returning the same [`Found`] figures.
//!
//! * `serde_json::Value` per event: what a quick integration does.
//! * typed serde per event: a borrowing struct with only the fields we need; serde_json
//!   skips every other field with `IgnoredAny` (on 1 MiB bodies this *is* "typed serde
//!   with `IgnoredAny`"). This is the strong baseline.
//! * the ceiling: `memchr` counting newlines over the same bytes (for gzip: inflating into
//!   a reused buffer, then counting), the cost of merely looking at every byte.
//!
//! The stream baselines split SSE lines with `memchr` and parse each `data:` payload as
//! its own document, as an SSE client library would.

use crate::inputs::{Input, Shape};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// What a parser found: enough to check that every contender read the same figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Model (response's, or request's for a request body).
    pub model: Option<String>,
    /// Input tokens.
    pub input: Option<u64>,
    /// Output tokens.
    pub output: Option<u64>,
    /// Stream flag (requests).
    pub stream: Option<bool>,
}

#[derive(Deserialize)]
struct OpenAiDoc<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    #[allow(dead_code)]
    total_tokens: Option<u64>,
    #[allow(dead_code)]
    prompt_tokens_details: Option<OpenAiPromptDetails>,
    #[allow(dead_code)]
    completion_tokens_details: Option<OpenAiCompletionDetails>,
}

#[derive(Deserialize)]
struct OpenAiPromptDetails {
    #[allow(dead_code)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct OpenAiCompletionDetails {
    #[allow(dead_code)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct AnthropicEvent<'a> {
    #[serde(borrow)]
    message: Option<AnthropicMessage<'a>>,
    usage: Option<AnthropicUsage>,
}

/// A non-stream Messages reply: the message itself, `model` and `usage` at the top.
#[derive(Deserialize)]
struct AnthropicReply<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicMessage<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
}

impl Found {
    fn anthropic_usage(&mut self, u: &AnthropicUsage) {
        if u.input_tokens.is_some() {
            let sum = u.input_tokens.unwrap_or(0)
                + u.cache_read_input_tokens.unwrap_or(0)
                + u.cache_creation_input_tokens.unwrap_or(0);
            self.input = Some(sum);
        }
        if u.output_tokens.is_some() {
            self.output = u.output_tokens;
        }
    }

    fn typed(&mut self, shape: Shape, doc: &[u8]) {
        match shape {
            Shape::OpenAi => {
                if let Ok(d) = serde_json::from_slice::<OpenAiDoc>(doc) {
                    if let Some(m) = d.model {
                        if self.model.as_deref() != Some(&*m) {
                            self.model = Some(m.into_owned());
                        }
                    }
                    if let Some(u) = d.usage {
                        self.input = u.prompt_tokens.or(self.input);
                        self.output = u.completion_tokens.or(self.output);
                    }
                }
            }
            Shape::Anthropic => {
                if let Ok(e) = serde_json::from_slice::<AnthropicEvent>(doc) {
                    if let Some(m) = e.message {
                        if let Some(model) = m.model {
                            self.model = Some(model.into_owned());
                        }
                        if let Some(u) = m.usage {
                            self.anthropic_usage(&u);
                        }
                    }
                    if let Some(u) = e.usage {
                        self.anthropic_usage(&u);
                    }
                }
            }
            Shape::AnthropicReply => {
                if let Ok(r) = serde_json::from_slice::<AnthropicReply>(doc) {
                    self.model = r.model.map(Cow::into_owned);
                    if let Some(u) = r.usage {
                        self.anthropic_usage(&u);
                    }
                }
            }
            Shape::Request => {
                if let Ok(r) = serde_json::from_slice::<ChatRequest>(doc) {
                    self.model = r.model.map(Cow::into_owned);
                    self.stream = r.stream;
                }
            }
        }
    }

    fn value(&mut self, shape: Shape, doc: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(doc) else {
            return;
        };
        match shape {
            Shape::OpenAi => {
                if let Some(m) = v["model"].as_str() {
                    if self.model.as_deref() != Some(m) {
                        self.model = Some(m.to_owned());
                    }
                }
                let u = &v["usage"];
                self.input = u["prompt_tokens"].as_u64().or(self.input);
                self.output = u["completion_tokens"].as_u64().or(self.output);
            }
            Shape::Anthropic => {
                let mut usage = |u: &Value| {
                    if let Some(i) = u["input_tokens"].as_u64() {
                        let sum = i
                            + u["cache_read_input_tokens"].as_u64().unwrap_or(0)
                            + u["cache_creation_input_tokens"].as_u64().unwrap_or(0);
                        self.input = Some(sum);
                    }
                    if let Some(o) = u["output_tokens"].as_u64() {
                        self.output = Some(o);
                    }
                };
                usage(&v["message"]["usage"]);
                usage(&v["usage"]);
                if let Some(m) = v["message"]["model"].as_str() {
                    self.model = Some(m.to_owned());
                }
            }
            Shape::AnthropicReply => {
                if let Some(i) = v["usage"]["input_tokens"].as_u64() {
                    let u = &v["usage"];
                    self.input = Some(
                        i + u["cache_read_input_tokens"].as_u64().unwrap_or(0)
                            + u["cache_creation_input_tokens"].as_u64().unwrap_or(0),
                    );
                }
                self.output = v["usage"]["output_tokens"].as_u64().or(self.output);
                self.model = v["model"].as_str().map(str::to_owned);
            }
            Shape::Request => {
                self.model = v["model"].as_str().map(str::to_owned);
                self.stream = v["stream"].as_bool();
            }
        }
    }
}

/// Calls `f` with each SSE `data:` payload (one-line data fields, as generated).
fn for_each_data(body: &[u8], mut f: impl FnMut(&[u8])) {
    for line in memchr::memchr_iter(b'\n', body)
        .scan(0usize, |start, end| {
            let line = &body[*start..end];
            *start = end + 1;
            Some(line)
        })
        .filter(|l| l.starts_with(b"data:"))
    {
        let mut payload = &line[5..];
        if payload.first() == Some(&b' ') {
            payload = &payload[1..];
        }
        if payload.first() == Some(&b'{') {
            f(payload);
        }
    }
}

/// Inflates a gzip body (the whole of it; baselines may allocate).
pub fn gunzip(wire: &[u8]) -> Vec<u8> {
    let deflate = &wire[10..wire.len() - 8];
    miniz_oxide::inflate::decompress_to_vec(deflate).expect("valid deflate")
}

fn with_body<R>(input: &Input, f: impl FnOnce(&[u8]) -> R) -> R {
    if input.gzip {
        f(&gunzip(&input.wire))
    } else {
        f(&input.wire)
    }
}

/// Typed serde: per event for streams, the whole document otherwise.
pub fn serde_typed(input: &Input) -> Found {
    with_body(input, |body| {
        let mut found = Found::default();
        if input.sse {
            for_each_data(body, |d| found.typed(input.shape, d));
        } else {
            found.typed(input.shape, body);
        }
        found
    })
}

/// `serde_json::Value`: per event for streams, the whole document otherwise.
pub fn serde_value(input: &Input) -> Found {
    with_body(input, |body| {
        let mut found = Found::default();
        if input.sse {
            for_each_data(body, |d| found.value(input.shape, d));
        } else {
            found.value(input.shape, body);
        }
        found
    })
}

/// A reusable inflate buffer for the ceiling of compressed inputs.
#[derive(Default)]
pub struct Limit {
    out: Vec<u8>,
    inflater: Box<miniz_oxide::inflate::core::DecompressorOxide>,
}

impl std::fmt::Debug for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limit").finish_non_exhaustive()
    }
}

impl Limit {
    /// The ceiling: newlines counted by `memchr` over the (decoded) body.
    pub fn run(&mut self, input: &Input) -> usize {
        if input.gzip {
            use miniz_oxide::inflate::core::{decompress, inflate_flags};
            self.out.resize(input.decoded.len() + 64, 0);
            self.inflater.init();
            let deflate = &input.wire[10..input.wire.len() - 8];
            let (_, _, n) = decompress(
                &mut self.inflater,
                deflate,
                &mut self.out,
                0,
                inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
            );
            memchr::memchr_iter(b'\n', &self.out[..n]).count()
        } else {
            memchr::memchr_iter(b'\n', &input.wire).count()
        }
    }
}
