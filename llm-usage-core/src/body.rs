//! One body's pipeline: content decoding → framing → JSON scan → staged values.
//!
//! ```text
//! bytes ─> Decoder (gzip/deflate/br/zstd, optional) ─> Framing (JSON | SSE | NDJSON | event-stream)
//!       ─> Scanner (watched paths) ─> staged Values ─(event complete)─> committed Values
//! ```

use crate::base64::Base64;
use crate::decode::{Coding, Decoder};
use crate::dialect::Target;
use crate::framing::eventstream::EventStream;
use crate::framing::ndjson::Ndjson;
use crate::framing::sse::Sse;
use crate::framing::{deliver_line, EventSink};
use crate::index::{common_prefix, copy_line, Copied, Index};
use crate::scan::{Replay, Scalar, Scanner, Sink, Watch};
use crate::tokens::TokenCounter;
use crate::values::Values;
use crate::work::Work;

/// The framing of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingKind {
    /// Decide from the first non-blank byte.
    Auto,
    /// One JSON document, a sequence of them, or a top-level array of them.
    Json,
    /// Server-sent events.
    Sse,
    /// Newline-delimited JSON.
    Ndjson,
    /// AWS event-stream.
    EventStream,
}

impl FramingKind {
    /// Picks a framing from a `Content-Type` value.
    pub fn from_content_type(ct: &[u8]) -> FramingKind {
        let ct = ct.split(|&b| b == b';').next().unwrap_or(ct);
        let ct = ct.trim_ascii();
        if ct.eq_ignore_ascii_case(b"text/event-stream") {
            FramingKind::Sse
        } else if ct.eq_ignore_ascii_case(b"application/vnd.amazon.eventstream") {
            FramingKind::EventStream
        } else if ct.eq_ignore_ascii_case(b"application/x-ndjson")
            || ct.eq_ignore_ascii_case(b"application/ndjson")
            || ct.eq_ignore_ascii_case(b"application/jsonl")
            || ct.eq_ignore_ascii_case(b"application/x-jsonlines")
        {
            FramingKind::Ndjson
        } else {
            FramingKind::Auto
        }
    }
}

#[derive(Debug, Clone)]
enum Framing {
    Auto,
    Json,
    Sse(Sse),
    Ndjson(Ndjson),
    EventStream(EventStream),
}

/// A scanner for provider events wrapped in base64 (Bedrock invoke streams).
#[derive(Debug)]
struct Inner {
    b64: Base64,
    scanner: Scanner<Target>,
}

/// The scanner's sink: stages values, commits complete events.
#[derive(Debug)]
struct Collect {
    staged: Values,
    dirty: bool,
    committed: Values,
    events: u64,
    /// Complete events that carried generated text.
    content_events: u64,
    commit_on_document_end: bool,
    inner: Option<Box<Inner>>,
    /// A tokenizer fed the same text as `staged.text` (see `tokens`).
    counter: Option<Box<dyn TokenCounter>>,
}

struct InnerSink<'a> {
    staged: &'a mut Values,
    dirty: &'a mut bool,
    counter: &'a mut Option<Box<dyn TokenCounter>>,
}

impl Sink<Target> for InnerSink<'_> {
    fn value(&mut self, target: &Target, value: Scalar<'_>) {
        *self.dirty |= self.staged.stage(*target, value);
    }

    fn streams(&self, target: &Target) -> bool {
        *target == Target::Text
    }

    fn string_start(&mut self, _target: &Target) {
        self.staged.text.start_string();
        *self.dirty = true;
        if let Some(c) = self.counter {
            c.string_start();
        }
    }

    fn string_chunk(&mut self, _target: &Target, bytes: &[u8]) {
        self.staged.text.add(bytes);
        *self.dirty |= !bytes.is_empty();
        if let Some(c) = self.counter {
            c.chunk(bytes);
        }
    }
}

impl Collect {
    fn commit(&mut self) {
        if self.dirty {
            self.content_events += u64::from(!self.staged.text.is_empty());
            if let Some(c) = &mut self.counter {
                c.commit();
            }
            self.staged.close_lists();
            self.committed.merge(&self.staged);
            self.staged.clear();
            self.dirty = false;
        }
    }

    fn discard(&mut self) {
        if self.dirty {
            if let Some(c) = &mut self.counter {
                c.discard();
            }
            self.staged.clear();
            self.dirty = false;
        }
    }

    /// Runs `f` with the inner base64 decoder, its scanner and a sink staging into this
    /// body's values (a no-op for dialects without base64-wrapped events).
    fn with_inner(
        &mut self,
        f: impl FnOnce(&mut Base64, &mut Scanner<Target>, &mut InnerSink<'_>),
    ) {
        let Collect {
            staged,
            dirty,
            inner,
            counter,
            ..
        } = self;
        if let Some(inner) = inner.as_deref_mut() {
            let Inner { b64, scanner } = inner;
            f(
                b64,
                scanner,
                &mut InnerSink {
                    staged,
                    dirty,
                    counter,
                },
            );
        }
    }
}

impl Sink<Target> for Collect {
    fn value(&mut self, target: &Target, value: Scalar<'_>) {
        // The tokenizer hears of a model as soon as it is read: a request names it after
        // the messages, whose text is counted as it passes.
        if let (Some(c), Target::ResponseModel | Target::RequestModel, Scalar::String(s)) =
            (&mut self.counter, target, value)
        {
            if let Ok(m) = core::str::from_utf8(s) {
                c.model(m);
            }
        }
        // Every OpenAI chunk repeats the model: when it is the committed one and this
        // event has staged none, staging it would change nothing at commit (a later,
        // different model in the same event is still staged and wins), so the copy and
        // the UTF-8 check are skipped.
        if let (Target::ResponseModel, Scalar::String(s)) = (target, value) {
            if !self.staged.response_model.is_set() && self.committed.response_model.is(s) {
                return;
            }
        }
        self.dirty |= self.staged.stage(*target, value);
    }

    fn document_end(&mut self) {
        if self.commit_on_document_end {
            self.commit();
            self.events += 1;
        }
    }

    fn streams(&self, target: &Target) -> bool {
        match target {
            Target::Text => true,
            Target::Inner => self.inner.is_some(),
            _ => false,
        }
    }

    fn string_start(&mut self, target: &Target) {
        if *target == Target::Text {
            self.staged.text.start_string();
            self.dirty = true;
            if let Some(c) = &mut self.counter {
                c.string_start();
            }
        } else if let Some(inner) = self.inner.as_deref_mut() {
            inner.b64.reset();
            inner.scanner.reset();
        }
    }

    fn string_chunk(&mut self, target: &Target, bytes: &[u8]) {
        if *target == Target::Text {
            self.staged.text.add(bytes);
            self.dirty |= !bytes.is_empty();
            if let Some(c) = &mut self.counter {
                c.chunk(bytes);
            }
        } else {
            self.with_inner(|b64, scanner, sink| b64.feed(bytes, |d| scanner.feed(d, sink)));
        }
    }

    fn string_end(&mut self, target: &Target) {
        if *target == Target::Inner {
            self.with_inner(|b64, scanner, sink| b64.finish(|d| scanner.feed(d, sink)));
        }
    }
}

/// Largest SSE event (its data, lines joined) held whole and walked; a larger one is
/// streamed into the scanner.
pub(crate) const EVENT_BUF: usize = 2048;

#[cfg(test)]
thread_local! {
    /// Tests turn the whole-event walk off to compare with the scanner alone.
    pub(crate) static WALK_OFF: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

#[cfg(test)]
fn walk_off() -> bool {
    WALK_OFF.with(core::cell::Cell::get)
}

#[cfg(not(test))]
fn walk_off() -> bool {
    false
}

/// A held SSE event: [`EVENT_BUF`] bytes, allocated once per SSE body and zeroed (so that
/// `index::copy_line` can store whole vectors into it), `len` of them in use.
#[derive(Debug, Default)]
struct EventBuf {
    bytes: Box<[u8]>,
    len: usize,
}

impl EventBuf {
    fn allocate(&mut self) {
        if self.bytes.len() < EVENT_BUF {
            self.bytes = vec![0; EVENT_BUF].into_boxed_slice();
        }
        self.len = 0;
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Scanner plus sink: what framers push into.
#[derive(Debug)]
struct Core {
    scanner: Scanner<Target>,
    collect: Collect,
    docs_at_event_start: u64,
    /// SSE: the current event's data while it fits in [`EVENT_BUF`] bytes (allocated once
    /// per SSE body, reused), so that it is walked whole (`scan::whole`).
    held: EventBuf,
    /// Whether the current event's data goes to `held` (false once it outgrew it).
    holding: bool,
    /// Whether events are held at all (SSE framing).
    hold_events: bool,
    /// SSE: the structural index of the held event, for [`Scanner::scan_whole`], with what
    /// the walk of the previous event left for the next (see `scan::whole`, "Replay"):
    /// boxed together, allocated with `held` (so that bodies that never hold events stay
    /// small), reused. `None`: events are not held.
    index: Option<Box<(Index, Replay)>>,
    /// The previous walked event (swapped with `held`, never copied).
    prev: EventBuf,
    /// The length of the common prefix of `held` with `prev`, measured as the event is
    /// copied in (the replay's resume point, `scan::whole`).
    same: usize,
    /// How much of [`DONE`] the data of an event that is not held has matched so far
    /// ([`NOT_DONE`]: it is not `[DONE]`). A held event is compared whole at its end.
    done: u8,
    /// Whether a complete SSE event's data was exactly `[DONE]`.
    done_seen: bool,
}

/// The data of the OpenAI family's last SSE event.
const DONE: &[u8] = b"[DONE]";
const NOT_DONE: u8 = u8::MAX;

impl Core {
    /// After an event was scanned: the scanner starts the next event afresh.
    fn restart_event(&mut self) {
        self.scanner.reset();
        self.docs_at_event_start = self.scanner.documents();
        self.next_event();
    }

    /// Starts the next event: held again if events are held.
    fn next_event(&mut self) {
        self.held.len = 0;
        self.same = 0;
        self.done = 0;
        self.holding = self.hold_events;
    }

    /// Follows data that is not held against [`DONE`].
    fn match_done(&mut self, bytes: &[u8]) {
        if self.done != NOT_DONE {
            let at = usize::from(self.done);
            self.done = match DONE.get(at..at + bytes.len()) {
                Some(want) if want == bytes => (at + bytes.len()) as u8,
                _ => NOT_DONE,
            };
        }
    }
}

impl EventSink for Core {
    fn data(&mut self, bytes: &[u8]) {
        if self.holding {
            // The same copy-and-compare as `index::copy_rest`, kept apart: one helper for
            // both made the default wasm filter 70% slower on streams (it changed how
            // `copy_line`'s portable path compiles), and natively no faster.
            let at = self.held.len;
            if let Some(out) = self.held.bytes.get_mut(at..at + bytes.len()) {
                out.copy_from_slice(bytes);
                if self.same == at {
                    let prev = self.prev.get().get(at..).unwrap_or_default();
                    self.same = at + common_prefix(bytes, prev, bytes.len());
                }
                self.held.len += bytes.len();
                return;
            }
            // Too large to hold: streamed into the scanner from here on, as before.
            self.holding = false;
            self.done = NOT_DONE;
            self.scanner.feed(self.held.get(), &mut self.collect);
            self.held.len = 0;
        }
        self.match_done(bytes);
        self.scanner.feed(bytes, &mut self.collect);
    }

    fn data_line(&mut self, bytes: &[u8]) -> Option<usize> {
        if self.holding {
            let avx2 = self.index.as_deref().is_some_and(|(index, _)| index.avx2());
            let held = &mut self.held;
            match copy_line(
                bytes,
                &mut held.bytes,
                held.len,
                self.prev.get(),
                &mut self.same,
                avx2,
            ) {
                Copied::Line(k) => {
                    held.len += k;
                    return Some(k);
                }
                Copied::All => {
                    held.len += bytes.len();
                    return None;
                }
                // Too large to hold: `data` streams it into the scanner.
                Copied::NoRoom => {}
            }
        }
        deliver_line(self, bytes)
    }

    fn end_event(&mut self) {
        let done = if self.holding {
            self.held.get() == DONE
        } else {
            usize::from(self.done) == DONE.len()
        };
        self.done_seen |= done;
        if self.holding {
            // The whole event is here: index it and walk it (see `scan::whole`); what the
            // walk gives up on, the scanner reads as it would have read it streamed.
            if let Some((index, replay)) = self.index.as_deref_mut() {
                // What the copies measured is what a comparison of the whole event finds.
                debug_assert_eq!(
                    self.same,
                    common_prefix(self.held.get(), self.prev.get(), usize::MAX)
                );
                if self.scanner.scan_whole(
                    self.held.get(),
                    self.same,
                    index,
                    replay,
                    &mut self.collect,
                ) {
                    self.collect.commit();
                    self.collect.events += 1;
                    core::mem::swap(&mut self.held, &mut self.prev);
                    self.restart_event();
                    return;
                }
                self.collect.discard();
            }
            self.scanner.feed(self.held.get(), &mut self.collect);
        }
        let complete =
            self.scanner.at_boundary() && self.scanner.documents() > self.docs_at_event_start;
        if complete {
            self.collect.commit();
            self.collect.events += 1;
        } else {
            self.collect.discard();
        }
        self.restart_event();
    }

    fn discard_event(&mut self) {
        self.collect.discard();
        self.restart_event();
    }
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
}

impl Body {
    pub(crate) fn new(
        watches: &'static [Watch<Target>],
        inner: &'static [Watch<Target>],
        framing: FramingKind,
        limit: Option<u64>,
        counter: Option<Box<dyn TokenCounter>>,
    ) -> Body {
        let mut body = Body {
            decoder: None,
            undecodable: false,
            framing: Framing::Auto,
            core: Core {
                scanner: Scanner::new(watches, true, true),
                collect: Collect {
                    staged: Values::default(),
                    dirty: false,
                    committed: Values::default(),
                    events: 0,
                    content_events: 0,
                    commit_on_document_end: false,
                    inner: None,
                    counter,
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
        };
        // One place decides the per-table state (the inner scanner, the framing).
        body.retarget(watches, inner, framing, limit);
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
        c.staged.clear();
        c.dirty = false;
        c.committed.clear();
        c.events = 0;
        c.content_events = 0;
        c.commit_on_document_end = false;
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
    }

    /// Sets the framing and restarts the scanner and framer for it; committed values stay.
    pub(crate) fn set_framing(&mut self, kind: FramingKind) {
        self.framing = match kind {
            FramingKind::Auto => Framing::Auto,
            FramingKind::Json => Framing::Json,
            FramingKind::Sse => Framing::Sse(Sse::default()),
            FramingKind::Ndjson => Framing::Ndjson(Ndjson::default()),
            FramingKind::EventStream => Framing::EventStream(EventStream::default()),
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

    /// Sets the `Content-Encoding`.
    pub(crate) fn set_content_encoding(&mut self, value: &[u8]) {
        match Coding::from_header(value) {
            Ok(None) => {}
            Ok(Some(coding)) => self.decoder = Some(Box::new(Decoder::new(coding))),
            // A coding this build does not read, or a chain of codings: we do not try.
            Err(()) => self.undecodable = true,
        }
    }

    /// Ignores the rest of the body (error responses).
    pub(crate) fn ignore(&mut self) {
        self.ignored = true;
    }

    /// Feeds raw (possibly compressed) body bytes.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
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
        }
    }

    /// Values of complete events so far.
    pub(crate) fn committed(&self) -> &Values {
        &self.core.collect.committed
    }

    /// Values from outside the body (headers) that count as committed.
    pub(crate) fn committed_mut(&mut self) -> &mut Values {
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
            Framing::Sse(_) | Framing::Ndjson(_) | Framing::EventStream(_) => true,
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
        }
    }
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
