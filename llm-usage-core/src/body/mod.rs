//! One body's pipeline: content decoding → framing → JSON scan → staged values.
//!
//! ```text
//! bytes ─> Decoder (gzip/deflate/br/zstd, optional) ─> Framing (JSON | SSE | NDJSON | event-stream)
//!       ─> Scanner (watched paths) ─> staged Values ─(event complete)─> committed Values
//! ```

mod collect;
mod held;

pub(crate) use self::collect::Records;
pub use self::collect::MAX_PENDING_RECORDS;
use self::collect::{Collect, Inner};
use self::held::{walk_off, Core, EventBuf};
#[cfg(test)]
pub(crate) use self::held::{EVENT_BUF, WALK_OFF};
use crate::base64::Base64;
use crate::decode::{Coding, Decoder};
use crate::dialect::Target;
use crate::framing::eventstream::EventStream;
use crate::framing::ndjson::Ndjson;
use crate::framing::sse::Sse;
use crate::framing::websocket::{self, Compression, WebSocket};
use crate::framing::EventSink;
pub use crate::framing::FramingKind;
use crate::index::Index;
use crate::scan::{Replay, Scanner, Watch};
use crate::tokens::TokenCounter;
use crate::values::Values;
use crate::work::Work;

#[derive(Debug)]
enum Framing {
    Auto,
    Json,
    Sse(Sse),
    Ndjson(Ndjson),
    EventStream(EventStream),
    WebSocket(Box<WebSocket>),
}

/// Compressed bytes decoded between two checks of the inspection limit.
const DECODE_SLICE: usize = 16 * 1024;

/// One request or response body being observed.
#[derive(Debug)]
pub(crate) struct Body {
    decoder: Option<Box<Decoder>>,
    undecodable: bool,
    framing: Framing,
    core: Core,
    seen: u64,
    raw: u64,
    limit: Option<u64>,
    limited: bool,
    ignored: bool,
    /// Whether anything happened to the body since it was built or re-targeted (bytes,
    /// headers, framing): an untouched body is re-targeted without resetting what is
    /// still as built.
    touched: bool,
}

impl Body {
    /// A body reading `watches` (and `inner` for base64-wrapped events), framed as
    /// `framing`. Built in place, in its final state: an exchange creates two per request,
    /// and building them on the stack, re-targeting and moving them was a fifth of a small
    /// exchange's instructions.
    #[inline(always)]
    pub(crate) fn new(
        watches: &'static [Watch<Target>],
        inner: &'static [Watch<Target>],
        framing: FramingKind,
        limit: Option<u64>,
        counter: Option<Box<dyn TokenCounter>>,
    ) -> Body {
        let json = framing == FramingKind::Json;
        // The calls first, then one literal of plain values: a call in the middle of the
        // literal made the compiler build the fields before it on the stack and copy them.
        let scanner = Scanner::new(watches, true, true);
        let inner = inner_scanner(watches, inner);
        let counting = crate::text::Counting::detect();
        let mut body = Body {
            decoder: None,
            undecodable: false,
            framing: if json { Framing::Json } else { Framing::Auto },
            core: Core {
                scanner,
                collect: Collect {
                    staged: Values::default(),
                    dirty: false,
                    committed: Values::default(),
                    version: 0,
                    events: 0,
                    content_events: 0,
                    commit_on_document_end: json,
                    inner,
                    counter,
                    split: 0,
                    records: Records::default(),
                    counting,
                },
                docs_at_event_start: 0,
                held: EventBuf::default(),
                holding: false,
                hold_events: false,
                index: None,
                prev: EventBuf::default(),
                same: 0,
                done: 0,
                done_seen: false,
            },
            seen: 0,
            raw: 0,
            limit,
            limited: false,
            ignored: false,
            touched: false,
        };
        // Only JSON and unknown framings are built in place (an exchange's bodies start so).
        if !matches!(framing, FramingKind::Json | FramingKind::Auto) {
            body.set_framing(framing);
            body.touched = false;
        }
        body
    }

    /// Points the body at other watch tables, in place, forgetting everything: an exchange
    /// re-targets its bodies once the request head names the dialect, and rebuilding them
    /// (two ~3 KB structs built, moved and dropped) was most of a small exchange's cost.
    pub(crate) fn retarget(
        &mut self,
        watches: &'static [Watch<Target>],
        inner: &'static [Watch<Target>],
        framing: FramingKind,
        limit: Option<u64>,
    ) {
        if !self.touched {
            // As built: only what depends on the tables and the framing changes.
            let c = &mut self.core.collect;
            if let Some(counter) = &mut c.counter {
                counter.reset();
            }
            c.inner = inner_scanner(watches, inner);
            self.limit = limit;
            self.core.scanner.retarget(watches, true, true);
            self.set_framing(framing);
            self.touched = false;
            return;
        }
        let has_inner = watches.iter().any(|w| w.target == Target::Inner) && !inner.is_empty();
        self.decoder = None;
        self.undecodable = false;
        self.seen = 0;
        self.raw = 0;
        self.limit = limit;
        self.limited = false;
        self.ignored = false;
        let core = &mut self.core;
        core.scanner.retarget(watches, true, true);
        core.docs_at_event_start = 0;
        core.done_seen = false;
        let c = &mut core.collect;
        c.version += 1;
        c.staged.clear();
        c.dirty = false;
        c.committed.clear();
        c.events = 0;
        c.content_events = 0;
        c.commit_on_document_end = false;
        c.split = 0;
        c.records.pending.clear();
        c.records.dropped = 0;
        if let Some(counter) = &mut c.counter {
            counter.reset();
        }
        c.inner = if has_inner {
            let fresh = Inner {
                b64: Base64::default(),
                scanner: Scanner::new(inner, false, false),
            };
            match c.inner.take() {
                Some(mut b) => {
                    *b = fresh;
                    Some(b)
                }
                None => Some(Box::new(fresh)),
            }
        } else {
            None
        };
        self.set_framing(framing);
        self.touched = false;
    }

    /// Sets the framing and restarts the scanner and framer for it; committed values stay.
    pub(crate) fn set_framing(&mut self, kind: FramingKind) {
        self.touched = true;
        self.framing = match kind {
            FramingKind::Auto => Framing::Auto,
            FramingKind::Json => Framing::Json,
            FramingKind::Sse => Framing::Sse(Sse::default()),
            FramingKind::Ndjson => Framing::Ndjson(Ndjson::default()),
            FramingKind::EventStream => Framing::EventStream(EventStream::default()),
            FramingKind::WebSocket => Framing::WebSocket(Box::new(WebSocket::new(
                Compression::None,
                websocket::MAX_MESSAGE,
            ))),
        };
        self.core.collect.commit_on_document_end = matches!(self.framing, Framing::Json);
        // In a framed stream each event holds exactly one document.
        let framed = !matches!(self.framing, Framing::Json | Framing::Auto);
        self.core.scanner.restart(!framed, !framed);
        let core = &mut self.core;
        core.hold_events = matches!(self.framing, Framing::Sse(_)) && !walk_off();
        if core.hold_events {
            // Once per body, when its framing is known.
            core.held.allocate();
            if core.index.is_none() {
                core.index = Some(Box::new((Index::new(), Replay::default())));
                core.prev.allocate();
            }
        }
        if let Some((_, replay)) = core.index.as_deref_mut() {
            replay.clear();
        }
        core.next_event();
    }

    /// Reads the rest of the body as WebSocket frames whose messages are compressed as
    /// negotiated (an upgraded connection).
    pub(crate) fn set_websocket(&mut self, compression: Compression) {
        self.set_framing(FramingKind::WebSocket);
        self.framing = Framing::WebSocket(Box::new(WebSocket::new(
            compression,
            websocket::MAX_MESSAGE,
        )));
    }

    /// Sets the content coding a `Content-Encoding` header named ([`Coding::from_header`]).
    pub(crate) fn set_coding(&mut self, coding: Result<Option<Coding>, ()>) {
        self.touched = true;
        match coding {
            Ok(None) => {}
            Ok(Some(coding)) => self.decoder = Some(Box::new(Decoder::new(coding))),
            // A coding this build does not read, or a chain of codings: we do not try.
            Err(()) => self.undecodable = true,
        }
    }

    /// Ignores the rest of the body (error responses).
    pub(crate) fn ignore(&mut self) {
        self.touched = true;
        self.ignored = true;
    }

    /// Feeds raw (possibly compressed) body bytes.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        self.touched = true;
        if self.ignored || self.undecodable || self.limited || chunk.is_empty() {
            return;
        }
        self.raw += chunk.len() as u64;
        match self.decoder.take() {
            Some(mut decoder) => {
                // In slices, so that hitting the inspection limit stops the decoding: one
                // chunk of a deflate bomb can hold a thousand times its size.
                // The decoder stops as soon as the limit is hit, within one output buffer.
                for piece in chunk.chunks(DECODE_SLICE) {
                    decoder.feed(piece, &mut |decoded| {
                        self.feed_decoded(decoded);
                        !self.limited
                    });
                    if self.limited {
                        break;
                    }
                }
                self.decoder = Some(decoder);
            }
            None => self.feed_decoded(chunk),
        }
    }

    fn feed_decoded(&mut self, mut bytes: &[u8]) {
        if self.limited {
            return;
        }
        if let Some(limit) = self.limit {
            let room = limit.saturating_sub(self.seen);
            if (bytes.len() as u64) > room {
                bytes = &bytes[..room as usize];
                self.limited = true;
            }
        }
        self.seen += bytes.len() as u64;
        if matches!(self.framing, Framing::Auto) {
            // Leading JSON whitespace is skipped until the first byte tells the framing,
            // whether or not it arrives in the same chunk (so it never reaches a framer).
            let Some(start) = bytes
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            else {
                return;
            };
            bytes = &bytes[start..];
            let first = bytes[0];
            let kind = match first {
                b'{' | b'[' => FramingKind::Json,
                // `data:`, `event:`, `id:`, `retry:` or a `:` comment.
                b'd' | b'e' | b'i' | b'r' | b':' => FramingKind::Sse,
                // An event-stream prelude starts with a big-endian length < 16 MiB.
                0 => FramingKind::EventStream,
                _ => FramingKind::Json,
            };
            self.set_framing(kind);
        }
        let core = &mut self.core;
        match &mut self.framing {
            Framing::Auto => {}
            Framing::Json => core.data(bytes),
            Framing::Sse(f) => f.feed(bytes, core),
            Framing::Ndjson(f) => f.feed(bytes, core),
            Framing::EventStream(f) => f.feed(bytes, core),
            Framing::WebSocket(f) => f.feed(bytes, core),
        }
    }

    /// Closes a record at each complete event that sets one of these end marks
    /// (0: one record per body).
    pub(crate) fn split_records(&mut self, marks: u8) {
        self.touched = true;
        self.core.collect.split = marks;
    }

    /// The records closed so far and not taken yet.
    pub(crate) fn records(&self) -> &Records {
        &self.core.collect.records
    }

    /// The records closed so far and not taken yet, to take them.
    pub(crate) fn records_mut(&mut self) -> &mut Records {
        self.touched = true;
        &mut self.core.collect.records
    }

    /// Values of complete events so far.
    pub(crate) fn committed(&self) -> &Values {
        &self.core.collect.committed
    }

    /// Values from outside the body (headers) that count as committed.
    pub(crate) fn committed_mut(&mut self) -> &mut Values {
        self.touched = true;
        self.core.collect.version += 1;
        &mut self.core.collect.committed
    }

    /// The work done on this body so far.
    pub(crate) fn work(&self) -> Work {
        let scan = self.core.scanner.work();
        let inner = self
            .core
            .collect
            .inner
            .as_deref()
            .map(|i| i.scanner.work())
            .unwrap_or_default();
        let (decoder_input_bytes, decoded_bytes) = self
            .decoder
            .as_deref()
            .map_or((0, 0), |d| (d.consumed(), d.produced()));
        Work {
            received_bytes: self.raw,
            decoder_input_bytes,
            decoded_bytes,
            inspected_bytes: self.seen,
            scanned_bytes: scan.fed_bytes + inner.fed_bytes,
            scanner_steps: scan.steps + inner.steps,
            walked_bytes: scan.walked_bytes,
        }
    }

    /// Tokens of the committed text as the body's tokenizer counts them for `model`
    /// (`None` without a tokenizer, or when it cannot say).
    pub(crate) fn counted_tokens(&self, model: Option<&str>) -> Option<u64> {
        self.core.collect.counter.as_ref()?.tokens(model)
    }

    /// Complete events that carried generated text.
    pub(crate) fn content_events(&self) -> u64 {
        self.core.collect.content_events
    }

    /// Whether a complete SSE event's data was exactly `[DONE]`.
    pub(crate) fn done_seen(&self) -> bool {
        self.core.done_seen
    }

    /// Whether the framing is known (from the headers or the first bytes).
    pub(crate) fn framing_known(&self) -> bool {
        !matches!(self.framing, Framing::Auto)
    }

    /// Whether the body is a stream of events (SSE, NDJSON, event-stream, or a JSON
    /// array of documents such as Gemini's streamed array) rather than one document.
    pub(crate) fn streamed(&self) -> bool {
        match self.framing {
            Framing::Sse(_)
            | Framing::Ndjson(_)
            | Framing::EventStream(_)
            | Framing::WebSocket(_) => true,
            Framing::Json => self.core.scanner.saw_root_array(),
            Framing::Auto => false,
        }
    }

    /// Complete events (documents) so far.
    pub(crate) fn events(&self) -> u64 {
        self.core.collect.events
    }

    /// Whether the body, if it ended here, ended cleanly: no partial event, no corrupt
    /// framing or encoding, nothing cut off by the inspection limit.
    pub(crate) fn clean(&self) -> bool {
        if self.ignored {
            return true;
        }
        if self.undecodable || self.limited {
            return false;
        }
        if let Some(decoder) = &self.decoder {
            if decoder.failed() || (self.raw > 0 && !decoder.finished()) {
                return false;
            }
        }
        match &self.framing {
            Framing::Auto => true,
            // A body that is not JSON at all is complete, just unreadable; a JSON document
            // cut in the middle is not.
            Framing::Json => self.core.scanner.at_boundary() || self.core.scanner.failed(),
            Framing::Sse(f) => f.clean(),
            Framing::Ndjson(f) => f.clean(),
            Framing::EventStream(f) => f.clean() && !f.broken(),
            // A skipped message may have been one that mattered.
            Framing::WebSocket(f) => f.clean() && f.skipped() == 0,
        }
    }
}

/// The inner scanner of a body whose table has base64-wrapped events (`Target::Inner`).
fn inner_scanner(
    watches: &'static [Watch<Target>],
    inner: &'static [Watch<Target>],
) -> Option<Box<Inner>> {
    let has_inner = watches.iter().any(|w| w.target == Target::Inner) && !inner.is_empty();
    has_inner.then(|| {
        Box::new(Inner {
            b64: Base64::default(),
            scanner: Scanner::new(inner, false, false),
        })
    })
}

#[cfg(test)]
mod tests {
    //! The whole-event walk (over vector and word-at-a-time indexes) against the
    //! streaming scanner alone, on the fixture corpus and on streams built to hit its
    //! edges.

    use super::{EVENT_BUF, WALK_OFF};
    use crate::index::SWAR_INDEX;
    use crate::{Exchange, UsageRecord};

    /// How a test reads SSE events.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Pipeline {
        /// Walked over the index of this build (AVX2 or SSE2 here).
        Walked,
        /// Walked over the word-at-a-time index of builds without vector instructions.
        Swar,
        /// Streamed into the scanner.
        Scanned,
    }

    impl Pipeline {
        const ALL: [Pipeline; 3] = [Pipeline::Walked, Pipeline::Swar, Pipeline::Scanned];

        /// Runs `f` with this pipeline's toggles set (they are read when a body learns
        /// its framing, at its first byte).
        fn with<R>(self, f: impl FnOnce() -> R) -> R {
            WALK_OFF.with(|w| w.set(self == Pipeline::Scanned));
            SWAR_INDEX.with(|w| w.set(self == Pipeline::Swar));
            let r = f();
            WALK_OFF.with(|w| w.set(false));
            SWAR_INDEX.with(|w| w.set(false));
            r
        }
    }
    use std::path::Path;

    struct Case {
        method: String,
        path: String,
        req_headers: Vec<(String, String)>,
        status: u16,
        resp_headers: Vec<(String, String)>,
        request: Option<Vec<u8>>,
        response: Vec<u8>,
    }

    fn headers(v: &serde_json::Value) -> Vec<(String, String)> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn fixtures() -> Vec<(String, Case)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let d = e.unwrap().path();
            let Ok(case) = std::fs::read(d.join("case.json")) else {
                continue;
            };
            let case: serde_json::Value = serde_json::from_slice(&case).unwrap();
            out.push((
                d.file_name().unwrap().to_string_lossy().into_owned(),
                Case {
                    method: case["method"].as_str().unwrap().to_owned(),
                    path: case["path"].as_str().unwrap().to_owned(),
                    req_headers: headers(&case["request_headers"]),
                    status: case["response_status"].as_u64().unwrap() as u16,
                    resp_headers: headers(&case["response_headers"]),
                    request: std::fs::read(d.join("request.json")).ok(),
                    response: std::fs::read(d.join("response.bin")).unwrap(),
                },
            ));
        }
        assert!(out.len() >= 49);
        out
    }

    /// The record, the events counted after each chunk, and `complete`.
    fn run(case: &Case, chunk: usize, pipeline: Pipeline) -> (UsageRecord, Vec<u64>) {
        pipeline.with(|| run_now(case, chunk))
    }

    fn run_now(case: &Case, chunk: usize) -> (UsageRecord, Vec<u64>) {
        let pairs = |h: &[(String, String)]| -> Vec<(String, String)> { h.to_vec() };
        let mut ex = Exchange::new();
        let rh = pairs(&case.req_headers);
        ex.on_request_head(
            &case.method,
            &case.path,
            rh.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if let Some(r) = &case.request {
            ex.on_request_body(r);
        }
        ex.on_request_end();
        let sh = pairs(&case.resp_headers);
        ex.on_response_head(
            case.status,
            sh.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let mut counts = Vec::new();
        for c in case.response.chunks(chunk.max(1)) {
            ex.on_response_body(c);
            counts.push(ex.response_events());
        }
        ex.on_response_end();
        counts.push(ex.response_events());
        (ex.finish(), counts)
    }

    /// The walk over either index and the scanner alone give the same record and the
    /// same event counts after every chunk.
    fn same(case: &Case, name: &str) {
        for chunk in [usize::MAX, 1, 7, 64] {
            let scanned = run(case, chunk, Pipeline::Scanned);
            for pipeline in [Pipeline::Walked, Pipeline::Swar] {
                let walked = run(case, chunk, pipeline);
                assert_eq!(
                    walked.0, scanned.0,
                    "{name}: record, {pipeline:?}, chunks of {chunk}"
                );
                assert_eq!(
                    walked.1, scanned.1,
                    "{name}: events, {pipeline:?}, chunks of {chunk}"
                );
            }
        }
    }

    #[test]
    fn fixtures_give_the_same_records_and_event_counts() {
        for (name, case) in fixtures() {
            same(&case, &name);
        }
    }

    fn anthropic(body: Vec<u8>) -> Case {
        Case {
            method: "POST".into(),
            path: "/v1/messages".into(),
            req_headers: vec![("anthropic-version".into(), "2023-06-01".into())],
            status: 200,
            resp_headers: vec![("content-type".into(), "text/event-stream".into())],
            request: Some(br#"{"model":"claude-x","stream":true}"#.to_vec()),
            response: body,
        }
    }

    /// The record after every chunk: with the walk and its replay (as built), and with
    /// the scanner alone.
    fn records_per_chunk(case: &Case, chunk: usize) -> [Vec<UsageRecord>; 3] {
        Pipeline::ALL.map(|pipeline| {
            let mut ex = Exchange::new();
            ex.on_request_head(&case.method, &case.path, [("host", "api.openai.com")]);
            if let Some(r) = &case.request {
                ex.on_request_body(r);
            }
            ex.on_response_head(200, [("content-type", "text/event-stream")]);
            let mut records = Vec::new();
            for c in case.response.chunks(chunk.max(1)) {
                pipeline.with(|| ex.on_response_body(c));
                records.push(ex.record());
            }
            records
        })
    }

    /// OpenAI chunks whose envelopes change (model, usage, id) right after a break
    /// between `data:` lines, which SSE joins with `\n`: the held event's common prefix
    /// with the previous one is measured across the joins as well as within lines, so
    /// the replay resumes only within what really repeats, however lines and chunks split.
    #[test]
    fn replay_resumes_only_within_what_repeats_across_data_lines() {
        let mut x = 0x0123_4567_89AB_CDEFu64;
        let mut pick = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as usize
        };
        let mut body = String::new();
        for _ in 0..300 {
            let model = ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini-2024"][pick(3)];
            let usage = match pick(3) {
                0 => "null".to_owned(),
                1 => format!(r#"{{"prompt_tokens":{},"completion_tokens":2}}"#, pick(50)),
                _ => format!(r#"{{"prompt_tokens":7,"completion_tokens":{}}}"#, pick(50)),
            };
            let parts = [
                format!(r#"{{"id":"chatcmpl-{}","#, pick(2)),
                r#""object":"chat.completion.chunk","#.to_owned(),
                format!(r#""model":"{model}","#),
                r#""choices":[{"index":0,"delta":{"content":"hi"}}],"#.to_owned(),
                format!(r#""usage":{usage}}}"#),
            ];
            body.push_str("data: ");
            for (k, part) in parts.iter().enumerate() {
                if k > 0 && pick(2) == 0 {
                    body.push_str("\ndata: ");
                }
                body.push_str(part);
            }
            body.push_str("\n\n");
        }
        let case = Case {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            req_headers: vec![],
            status: 200,
            resp_headers: vec![],
            request: Some(br#"{"model":"gpt-4o","stream":true}"#.to_vec()),
            response: body.into_bytes(),
        };
        for chunk in [usize::MAX, 1, 5, 64, 333] {
            let [walked, swar, scanned] = records_per_chunk(&case, chunk);
            assert_eq!(walked, scanned, "chunks of {chunk}");
            assert_eq!(swar, scanned, "chunks of {chunk}");
        }
    }

    fn event(data: &str) -> String {
        format!("event: e\ndata: {data}\n\n")
    }

    #[test]
    fn edges_of_the_buffer_and_lookalikes() {
        let start = r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":5,"output_tokens":1}}}"#;
        let usage = r#"{"type":"message_delta","usage":{"output_tokens":9}}"#;
        let delta = |text: &str| {
            format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{text}"}}}}"#
            )
        };
        let frame = delta("").len();
        let mut s = event(start);
        // Events at, just under and just over the buffer, with and without usage.
        for len in [EVENT_BUF - 1, EVENT_BUF, EVENT_BUF + 1] {
            s += &event(&delta(&"x".repeat(len - frame)));
            let pad = len - usage.len() - r#","pad":"""#.len();
            let big_usage = format!(
                r#"{{"type":"message_delta","pad":"{}","usage":{{"output_tokens":{len}}}}}"#,
                "y".repeat(pad - 1)
            );
            s += &event(&big_usage);
        }
        // Lookalikes, an escaped key, `[DONE]`, malformed events without watched keys
        // that the scanner also rejects or accepts.
        for d in [
            delta(r#"the \"usage\" is \"model\""#),
            delta(r#"\"usage\":{\"output_tokens\":99}"#),
            r#"{"type":"x","text":"\"model\":\"fake\""}"#.to_owned(),
            r#"{"type":"message_delta","\u0075sage":{"output_tokens":11}}"#.to_owned(),
            "[DONE]".to_owned(),
            "".to_owned(),
            "  ".to_owned(),
            r#"{"a":1}"#.to_owned(),
            r#"{"a":[1,{"b":"]"}]}"#.to_owned(),
            r#""text""#.to_owned(),
            "12 ".to_owned(),
            "[{]".to_owned(),
        ] {
            s += &event(&d);
        }
        s += &event(usage);
        let case = anthropic(s.into_bytes());
        same(&case, "edges");
        let (r, counts) = run(&case, usize::MAX, Pipeline::Walked);
        assert_eq!(r.model.as_deref(), Some("claude-x"));
        assert_eq!(r.output_tokens, Some(9));
        assert!(counts[0] > 10);
    }

    /// Malformed objects without a watched key are not events: every held event is
    /// walked (or given to the scanner), so it counts exactly as the scanner counts it,
    /// in every build.
    #[test]
    fn malformed_unwatched_objects_do_not_count() {
        for d in [r#"{"a":1}}"#, r#"{"a" 1}"#, r#"{"a":1}{"b":2}"#] {
            let case = anthropic(event(d).into_bytes());
            for pipeline in Pipeline::ALL {
                let (record, counts) = run(&case, usize::MAX, pipeline);
                assert_eq!(counts[0], 0, "{d} {pipeline:?}");
                assert_eq!(record, run(&case, usize::MAX, Pipeline::Scanned).0);
            }
        }
    }
}
