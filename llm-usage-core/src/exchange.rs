//! [`Exchange`]: one HTTP exchange, fed as it passes, yielding a [`UsageRecord`].

use crate::body::{Body, FramingKind};
use crate::decode::Coding;
use crate::dialect::{self, Combine, Detected, Field, StreamHeader, StreamRule, Target};
use crate::framing::websocket;
use crate::record::{Operation, Provider, UsageRecord};
use crate::text::TextStats;
use crate::tokens::NewTokenCounter;
use crate::values::{parse_count, Values};
use crate::work::Work;

/// Tokens OpenAI's chat format adds per message around its text: a start marker, the
/// role, a separator and an end marker (OpenAI's cookbook, "How to count tokens with
/// tiktoken": 3 per message plus the role's token).
pub const CHAT_TOKENS_PER_MESSAGE: u64 = 4;

/// Tokens OpenAI's chat format adds once per request, priming the reply (same source).
pub const CHAT_TOKENS_PER_REPLY: u64 = 3;

/// Options for one [`Exchange`].
// Not `PartialEq`: function pointers (`token_counter`) have no meaningful equality.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// Use this provider family instead of detecting one. The path still selects the API
    /// within the family (Bedrock Converse versus InvokeModel, OpenAI Responses versus
    /// Chat Completions).
    pub provider: Option<Provider>,
    /// Stop inspecting a body after this many decoded bytes (`None`: no limit). The
    /// record of an exchange cut short by the limit is marked incomplete.
    pub max_body_bytes: Option<u64>,
    /// Makes a tokenizer for each body, for estimates (see [`TokenCounter`]); `None`:
    /// estimates come from character counts ([`TextStats`]).
    pub token_counter: Option<NewTokenCounter>,
}

impl Options {
    /// Default options: detect the provider, inspect whole bodies.
    pub fn new() -> Self {
        Options::default()
    }

    /// Forces a provider family.
    pub fn provider(mut self, provider: Provider) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Limits the decoded bytes inspected per body.
    pub fn max_body_bytes(mut self, limit: u64) -> Self {
        self.max_body_bytes = Some(limit);
        self
    }

    /// Estimates tokens with a tokenizer: `new` makes one for each body (e.g.
    /// [`Bpe::boxed`](crate::Bpe::boxed) with the `bpe` feature).
    pub fn token_counter(mut self, new: NewTokenCounter) -> Self {
        self.token_counter = Some(new);
        self
    }
}

/// One HTTP exchange being observed.
///
/// Feed it the request head, request body chunks, response head and response body
/// chunks as they pass (chunks may be split at any byte), then take the record. Nothing
/// here performs I/O, allocates per chunk, or holds more than a fixed amount of memory.
///
/// ```
/// use llm_usage_core::Exchange;
///
/// let mut ex = Exchange::new();
/// ex.on_request_head("POST", "/v1/chat/completions", [("content-type", "application/json")]);
/// ex.on_request_body(br#"{"model":"gpt-4o-mini","messages":[]}"#);
/// ex.on_request_end();
/// ex.on_response_head(200, [("content-type", "application/json")]);
/// ex.on_response_body(br#"{"model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":5,"#);
/// ex.on_response_body(br#""completion_tokens":2,"total_tokens":7}}"#);
/// ex.on_response_end();
/// let record = ex.finish();
/// assert_eq!(record.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
/// assert_eq!(record.input_tokens, Some(5));
/// assert_eq!(record.total_tokens, Some(7));
/// assert!(record.complete);
/// ```
#[derive(Debug)]
pub struct Exchange {
    options: Options,
    detected: Detected,
    head_seen: bool,
    guessed: bool,
    path_model: Option<String>,
    operation: Option<Operation>,
    rule_stream: Option<bool>,
    request: Body,
    request_bytes: u64,
    /// The request body is a form (`multipart/form-data`: OpenAI image edits), not JSON:
    /// its stream flag is unknown rather than the dialect's default.
    request_form: bool,
    response: Body,
    response_head: bool,
    response_ended: bool,
    error_status: bool,
    /// The response was `101 Switching Protocols` to a WebSocket: both bodies are frames.
    upgraded: bool,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange::new()
    }
}

impl Exchange {
    /// A new exchange that detects the provider from the request.
    pub fn new() -> Self {
        Exchange::with_options(Options::default())
    }

    /// A new exchange with options.
    pub fn with_options(options: Options) -> Self {
        let detected = dialect::fallback();
        let limit = options.max_body_bytes;
        let counter = || options.token_counter.map(|new| new());
        let (request_counter, response_counter) = (counter(), counter());
        Exchange {
            request: Body::new(
                detected.dialect.request,
                &[],
                FramingKind::Json,
                limit,
                request_counter,
            ),
            response: Body::new(
                detected.dialect.response,
                detected.dialect.inner,
                FramingKind::Auto,
                limit,
                response_counter,
            ),
            options,
            detected,
            head_seen: false,
            guessed: false,
            path_model: None,
            operation: None,
            rule_stream: None,
            request_bytes: 0,
            request_form: false,
            response_head: false,
            response_ended: false,
            error_status: false,
            upgraded: false,
        }
    }

    /// The request line and headers. Pseudo-headers (`:authority`) are understood;
    /// unknown headers are ignored.
    pub fn on_request_head<I, K, V>(&mut self, method: &str, path_and_query: &str, headers: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let _ = method;
        // One pass over the head, nothing allocated: what detection and the bodies need
        // from the first occurrence of each header read (see `head_value`).
        let mut host = HeadValue::new();
        let mut host_is_authority = false;
        let mut form = None;
        // The headers stream rules read, each in its `StreamHeader` slot.
        let mut kept: [HeadValue; StreamHeader::ALL.len()] =
            core::array::from_fn(|_| HeadValue::new());
        let mut anthropic_version = false;
        let mut coding = None;
        for (k, v) in headers {
            let (k, v) = (k.as_ref(), head_value(v.as_ref()));
            if is_name(k, ":authority") {
                if !host_is_authority {
                    host.set(v);
                    host_is_authority = true;
                }
            } else if is_name(k, "host") {
                if !host_is_authority && !host.seen {
                    host.set(v);
                }
            } else if is_name(k, "content-type") {
                form.get_or_insert_with(|| {
                    v.len() >= 19 && v[..19].eq_ignore_ascii_case(b"multipart/form-data")
                });
            } else if let Some(&h) = StreamHeader::ALL.iter().find(|h| is_name(k, h.name())) {
                let slot = &mut kept[h as usize];
                if !slot.seen {
                    slot.set(v);
                }
            } else if is_name(k, "anthropic-version") {
                anthropic_version = true;
            } else if is_name(k, "content-encoding") {
                coding.get_or_insert_with(|| Coding::from_header(v));
            }
        }
        let path = path_and_query
            .split(['?', '#'])
            .next()
            .unwrap_or(path_and_query);
        let host = host.get().and_then(|h| core::str::from_utf8(h).ok());
        self.request_form = form == Some(true);
        let header_is = |h: StreamHeader, value: &str| {
            kept[h as usize]
                .get()
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(value.as_bytes()))
        };
        let dashscope_sse = header_is(StreamHeader::DashScopeSse, "enable");
        self.detected = dialect::detect(
            path,
            host,
            anthropic_version,
            dashscope_sse,
            self.options.provider,
        );
        self.guessed = dialect::guessed(path, host, &self.detected, self.options.provider);
        let d = self.detected.dialect;
        self.path_model = dialect::path_model(d.path_model, path);
        self.operation = dialect::operation(d, path);
        self.rule_stream = match d.stream {
            StreamRule::Body { .. } => None,
            StreamRule::Path(markers) => Some(markers.iter().any(|m| dialect::has(path, m))),
            StreamRule::Header(name, value) => Some(header_is(name, value)),
        };
        let limit = self.options.max_body_bytes;
        self.request
            .retarget(d.request, &[], FramingKind::Json, limit);
        if let Some(coding) = coding {
            self.request.set_coding(coding);
        }
        self.response
            .retarget(d.response, d.inner, FramingKind::Auto, limit);
        self.head_seen = true;
    }

    /// A chunk of the request body.
    pub fn on_request_body(&mut self, chunk: &[u8]) {
        self.request_bytes += chunk.len() as u64;
        self.request.feed(chunk);
    }

    /// The request body ended. (Optional: nothing waits for it.)
    pub fn on_request_end(&mut self) {}

    /// The response status and headers.
    pub fn on_response_head<I, K, V>(&mut self, status: u16, headers: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let d = self.detected.dialect;
        // One pass over the head, nothing allocated: the framing headers and every header
        // the dialect reads counts from, each from its first occurrence (see `head_value`).
        let mut framing = None;
        let mut coding = None;
        let mut websocket_upgrade = None;
        let mut extensions = None;
        let mut from_headers = Values::default();
        // The dialect's header rows already read (a name may feed several rows).
        let mut rows_seen = 0u64;
        debug_assert!(d.headers.len() <= 64);
        for (k, v) in headers {
            let (k, v) = (k.as_ref(), head_value(v.as_ref()));
            if is_name(k, "content-type") {
                framing.get_or_insert_with(|| FramingKind::from_content_type(v));
            } else if is_name(k, "content-encoding") {
                coding.get_or_insert_with(|| Coding::from_header(v));
            } else if is_name(k, "upgrade") {
                websocket_upgrade
                    .get_or_insert_with(|| v.trim_ascii().eq_ignore_ascii_case(b"websocket"));
            } else if is_name(k, "sec-websocket-extensions") {
                extensions.get_or_insert_with(|| websocket::negotiated(Some(v)));
            }
            for (i, (name, target)) in d.headers.iter().enumerate().take(64) {
                if rows_seen & (1 << i) == 0 && is_name(k, name) {
                    rows_seen |= 1 << i;
                    if let (Target::Slot(field, idx), Some(n)) =
                        (target, parse_count(v.trim_ascii()))
                    {
                        from_headers.set_slot(*field, *idx, n);
                    }
                }
            }
        }
        self.response_head = true;
        // An HTTP/1.1 upgrade to a WebSocket (RFC 6455 §4.2.2): what follows the head in
        // each direction is frames, client to server as the request body, server to
        // client as the response body (as Envoy passes an upgraded connection's bytes
        // through its HTTP filters, and as hyper hands over the upgraded IO).
        if status == 101 && websocket_upgrade == Some(true) {
            let (server, client) = extensions.unwrap_or_else(|| websocket::negotiated(None));
            self.upgraded = true;
            self.response.set_websocket(server);
            self.response.split_records(dialect::record_marks(d));
            self.request.set_websocket(client);
            return;
        }
        self.error_status = status >= 400;
        if self.error_status {
            // Error bodies carry no usage; the record keeps the request's model.
            self.response.ignore();
            return;
        }
        if let Some(kind) = framing {
            if kind != FramingKind::Auto {
                self.response.set_framing(kind);
            }
        }
        if let Some(coding) = coding {
            self.response.set_coding(coding);
        }
        self.response.committed_mut().merge(&from_headers);
    }

    /// A chunk of the response body.
    pub fn on_response_body(&mut self, chunk: &[u8]) {
        self.response.feed(chunk);
    }

    /// The response body ended normally (end of stream from the transport).
    pub fn on_response_end(&mut self) {
        self.response_ended = true;
    }

    /// Complete response events that carried generated text (content, reasoning or tool
    /// arguments, per the dialect's table) so far: a frontend notes the time to first token
    /// when this becomes 1 (Anthropic's `message_start` and `ping` carry none).
    pub fn response_content_events(&self) -> u64 {
        self.response.content_events()
    }

    /// Whether the client has its first token: a streamed response's first content event
    /// ([`response_content_events`](Self::response_content_events)), or a single
    /// document's completion (everything arrives at once). Frontends take time to first
    /// token when this turns true.
    pub fn first_token_seen(&self) -> bool {
        self.response.content_events() > 0
            || (!self.response.streamed() && self.response.events() > 0)
    }

    /// The prompt text the request body carried, and the generated text the response
    /// carried (complete events only), as character counts: what estimates are made from.
    pub fn text(&self) -> (TextStats, TextStats) {
        (
            self.request.committed().text,
            self.response.committed().text,
        )
    }

    /// Complete response events (documents) seen so far: a frontend can note the time the
    /// first one arrives. An event counts when its framing completed it and it held one
    /// complete JSON document (a malformed one such as `{"a":1}}` does not count).
    pub fn response_events(&self) -> u64 {
        self.response.events()
    }

    /// The work done on both bodies so far, as counts (see [`Work`]): what tests use to
    /// show that time is linear in the input, and a diagnostic for frontends.
    pub fn work(&self) -> Work {
        self.request.work() + self.response.work()
    }

    /// The provider, once the request head named one (by path, header or host) or the
    /// options forced one. For a request nothing recognises, the OpenAI-compatible dialect
    /// is tried and `openai` is reported only once the traffic yields a model or a figure,
    /// so a `GET /healthz` is not counted as an LLM call.
    pub fn provider(&self) -> Option<Provider> {
        if !self.head_seen {
            return self.options.provider;
        }
        if self.guessed && !self.found_anything() {
            return None;
        }
        Some(self.detected.provider)
    }

    fn found_anything(&self) -> bool {
        let seen = |v: &crate::values::Values| {
            v.request_model.get().is_some() || v.response_model.get().is_some() || v.any_slot()
        };
        seen(self.request.committed()) || seen(self.response.committed())
    }

    /// The name of the API dialect in use (`openai-chat`, `anthropic-messages`,
    /// `bedrock-converse`, ...), for diagnostics.
    pub fn dialect(&self) -> &'static str {
        self.detected.dialect.name
    }

    /// The `gen_ai.operation.name` the request's path gives (`chat`, `embeddings`, …),
    /// known from the request head on.
    pub fn operation(&self) -> Option<Operation> {
        self.operation
    }

    /// The request body's model, once known.
    pub fn request_model(&self) -> Option<&str> {
        self.request.committed().request_model.get()
    }

    /// The best model known so far (response, else request, else path).
    pub fn model(&self) -> Option<&str> {
        self.response
            .committed()
            .response_model
            .get()
            .or_else(|| self.request_model())
            .or(self.path_model.as_deref())
    }

    /// Whether the response upgraded the connection to a WebSocket (`101 Switching
    /// Protocols` with `upgrade: websocket`): the request and response bodies are then the
    /// client's and the server's frames, fed as they pass in each direction.
    pub fn upgraded(&self) -> bool {
        self.upgraded
    }

    /// The records that completed since the last call, oldest first: several per exchange.
    ///
    /// A realtime session (OpenAI Realtime, Gemini Live, over an upgraded connection)
    /// bills each response on its own: every `response.done` event (Gemini Live: every
    /// `turnComplete`) closes one record, `complete`, with that response's figures and the
    /// session's model. A frontend calls this after each chunk it feeds and reports what it
    /// gets. What no closing event covered yet stays in [`record`](Self::record) and
    /// [`finish`](Self::finish) (incomplete: its response never finished). At most
    /// [`MAX_PENDING_RECORDS`](crate::limits::MAX_PENDING_RECORDS) wait between two calls;
    /// more are counted in [`dropped_records`](Self::dropped_records), never buffered.
    /// Exchanges of one request and one response close none: `finish` is their record.
    ///
    /// ```
    /// use llm_usage_core::Exchange;
    ///
    /// /// An unmasked WebSocket text frame (a server's), payload under 126 bytes.
    /// fn frame(payload: &[u8]) -> Vec<u8> {
    ///     let mut f = vec![0x81, payload.len() as u8];
    ///     f.extend_from_slice(payload);
    ///     f
    /// }
    ///
    /// let mut ex = Exchange::new();
    /// ex.on_request_head("GET", "/v1/realtime?model=gpt-realtime", [("host", "api.openai.com")]);
    /// ex.on_response_head(101, [("upgrade", "websocket"), ("connection", "Upgrade")]);
    /// ex.on_response_body(&frame(br#"{"type":"session.created","session":{"model":"gpt-realtime"}}"#));
    /// let done = frame(br#"{"type":"response.done","response":{"usage":{"input_tokens":9,"output_tokens":4}}}"#);
    /// ex.on_response_body(&done[..10]);
    /// assert!(ex.take_records().is_empty()); // its frame is not whole yet
    /// ex.on_response_body(&done[10..]);
    /// let records = ex.take_records();
    /// assert_eq!(records.len(), 1);
    /// assert_eq!(records[0].model.as_deref(), Some("gpt-realtime"));
    /// assert_eq!(records[0].total_tokens, Some(13));
    /// assert!(records[0].complete);
    /// ```
    pub fn take_records(&mut self) -> Vec<UsageRecord> {
        let pending = core::mem::take(&mut self.response.records_mut().pending);
        pending.iter().map(|v| self.record_of(v, true)).collect()
    }

    /// Closed records lost because too many waited (see [`take_records`](Self::take_records)).
    pub fn dropped_records(&self) -> u64 {
        self.response.records().dropped
    }

    /// The record as known now. `complete` is true only after [`on_response_end`](Self::on_response_end)
    /// on a clean event boundary.
    pub fn record(&self) -> UsageRecord {
        self.record_of(self.response.committed(), false)
    }

    /// The record of the response values `resp`: the body's own (`closed` false), or
    /// those of a record a closing event completed (`closed`: complete, no estimates from
    /// the body's whole text).
    fn record_of(&self, resp: &Values, closed: bool) -> UsageRecord {
        let d = self.detected.dialect;
        let combine = |f: Field| -> Option<u64> {
            let slots = resp.field(f);
            match d.combine[f as usize] {
                Combine::First => slots.iter().find_map(|s| *s),
                Combine::Sum => slots
                    .iter()
                    .flatten()
                    .try_fold(None::<u64>, |acc, v| {
                        Some(Some(acc.unwrap_or(0).checked_add(*v)?))
                    })
                    .flatten(),
            }
        };
        // An error response's figures are not usage.
        let get = |f: Field| if self.error_status { None } else { combine(f) };
        let mut estimated = false;
        let mut input = get(Field::Input);
        let mut output = get(Field::Output);
        let mut total = get(Field::Total);
        let reasoning = get(Field::Reasoning);
        // A compatible host whose output excludes the reasoning it reports beside it
        // (xAI): the provider's own total proves it, and the output then includes it.
        if let (Some(i), Some(o), Some(r), Some(t)) = (input, output, reasoning, total) {
            if r > 0 && Some(t) == i.checked_add(o).and_then(|s| s.checked_add(r)) {
                output = Some(o + r);
            }
        }
        // Estimates, only for a response that carried generated text, field by field
        // where the provider gave no figure: the output from that text, the input from
        // the request's prompt text (when its dialect reads it).
        if !closed && !self.error_status && !resp.text.is_empty() && total.is_none() {
            let (input_estimate, output_estimate) = self.estimated_tokens();
            if output.is_none() {
                output = output_estimate;
                estimated = true;
            }
            if input.is_none() {
                input = input_estimate;
                estimated |= input.is_some();
            }
        }
        total = total.or_else(|| input?.checked_add(output?));
        let creation = get(Field::CacheCreation);
        // The 5-minute / 1-hour split of cache writes is a part of their total: a split
        // that no longer sums to it (Anthropic's `message_delta` may raise the total
        // without a new split) is unknown, never stale.
        let (mut creation_5m, mut creation_1h) =
            (get(Field::CacheCreation5m), get(Field::CacheCreation1h));
        if creation_5m.is_some() || creation_1h.is_some() {
            let sum = creation_5m
                .unwrap_or(0)
                .checked_add(creation_1h.unwrap_or(0));
            if creation.is_some_and(|c| Some(c) != sum) {
                creation_5m = None;
                creation_1h = None;
            }
        }
        let request_model = self.request_model().map(str::to_owned);
        let response_model = if self.error_status {
            None
        } else {
            resp.response_model.get().map(str::to_owned)
        };
        let model = response_model
            .clone()
            .or_else(|| request_model.clone())
            .or_else(|| self.path_model.clone());
        let stream = self.record_stream();
        UsageRecord {
            provider: self.provider(),
            model,
            request_model,
            response_model,
            stream,
            input_tokens: input,
            output_tokens: output,
            total_tokens: total,
            cached_input_tokens: get(Field::Cached),
            cache_creation_input_tokens: creation,
            reasoning_tokens: reasoning,
            input_audio_tokens: get(Field::InputAudio),
            input_image_tokens: get(Field::InputImage),
            output_audio_tokens: get(Field::OutputAudio),
            output_image_tokens: get(Field::OutputImage),
            cache_creation_5m_input_tokens: creation_5m,
            cache_creation_1h_input_tokens: creation_1h,
            web_search_requests: get(Field::WebSearch),
            web_fetch_requests: get(Field::WebFetch),
            service_tier: if self.error_status {
                None
            } else {
                resp.service_tier.get().map(str::to_owned)
            },
            operation: self.operation,
            complete: closed || (self.response_ended && self.response.clean() && self.end_seen()),
            estimated,
        }
    }

    /// The estimates of input and output tokens made from the prompt text the request
    /// carried and the generated text the response carried (complete events only),
    /// whatever the provider reported: what the record uses for a figure the provider
    /// did not give. A tokenizer's count (see [`Options::token_counter`]) when there is
    /// one and it counted in the model's encoding throughout, else the character-count
    /// estimate of [`TextStats`]; `None` without text. The input of a chat request adds
    /// what OpenAI's chat format wraps around the text ([`CHAT_TOKENS_PER_MESSAGE`] per
    /// message and [`CHAT_TOKENS_PER_REPLY`]).
    pub fn estimated_tokens(&self) -> (Option<u64>, Option<u64>) {
        let model = self.model();
        let request = self.request.committed();
        let framing = match request.messages {
            0 => 0,
            n => u64::from(n) * CHAT_TOKENS_PER_MESSAGE + CHAT_TOKENS_PER_REPLY,
        };
        let input = self
            .request
            .counted_tokens(model)
            .or_else(|| request.text.estimate_tokens())
            .map(|t| t + framing);
        let output = self
            .response
            .counted_tokens(model)
            .or_else(|| self.response.committed().text.estimate_tokens());
        (input, output)
    }

    /// Whether the request asked for a stream, by the dialect's rule.
    fn record_stream(&self) -> Option<bool> {
        match self.detected.dialect.stream {
            StreamRule::Body { default } => self.request.committed().stream.or(
                if self.request_bytes > 0 && !self.request_form {
                    Some(default)
                } else {
                    None
                },
            ),
            _ => self.rule_stream,
        }
    }

    /// Whether the provider's own end of the response was seen, where it has one: a
    /// streamed response of a dialect with end marks (`[DONE]`, `message_stop`, ...) is
    /// complete only once they arrived. A single document, an error status or a dialect
    /// without marks ends with its framing.
    fn end_seen(&self) -> bool {
        let ends = self.detected.dialect.end;
        if ends.required == 0 || self.error_status {
            return true;
        }
        if !self.response.streamed() {
            // One document is its own end; but a stream that was asked for and never
            // sent a byte has not ended as its provider ends it.
            return self.response.framing_known() || self.record_stream() != Some(true);
        }
        let mut seen = self.response.committed().end;
        if self.response.done_seen() {
            seen |= ends.done;
        }
        seen & ends.required == ends.required
    }

    /// The final record: what [`record`](Self::record) says now. Call it at the end of the
    /// exchange, or early (client gone, stream reset) for a partial record.
    pub fn finish(&mut self) -> UsageRecord {
        self.record()
    }
}

/// Whether header name `k` is `name`, case-insensitively.
fn is_name(k: &[u8], name: &str) -> bool {
    k.eq_ignore_ascii_case(name.as_bytes())
}

/// A header value as the core reads it: at most `VALUE_CAP + 1` bytes (a longer value
/// then matches nothing and parses as no count, as in a body), so that a head is read in
/// bounded memory whatever it holds.
fn head_value(v: &[u8]) -> &[u8] {
    &v[..v.len().min(crate::scan::VALUE_CAP + 1)]
}

/// One header value kept from a head while the rest is read (its first occurrence).
struct HeadValue {
    bytes: [u8; crate::scan::VALUE_CAP + 1],
    len: usize,
    seen: bool,
}

impl HeadValue {
    fn new() -> Self {
        HeadValue {
            bytes: [0; crate::scan::VALUE_CAP + 1],
            len: 0,
            seen: false,
        }
    }

    /// Keeps `v` (already cut by [`head_value`]).
    fn set(&mut self, v: &[u8]) {
        let n = v.len().min(self.bytes.len());
        self.bytes[..n].copy_from_slice(&v[..n]);
        self.len = n;
        self.seen = true;
    }

    fn get(&self) -> Option<&[u8]> {
        self.seen.then(|| &self.bytes[..self.len])
    }
}
