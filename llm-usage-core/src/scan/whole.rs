//! The scanner over one whole, indexed event: the same reading as [`Scanner::feed`],
//! with jumps instead of steps.
//!
//! When an SSE event is held whole, its [`Index`] tells where every string ends and where
//! every skipped subtree closes, so the walk below goes from member to member of the live
//! objects and never looks at the bytes of a value nobody watches. It reads exactly as
//! [`Scanner::feed`] would, through the same Bloom filter, key classes and leaves, and
//! reports the same values to the same [`Sink`], or it gives up before anything it does
//! not handle: keys or watched strings with escapes, streamed values, a root that is not
//! an object, a syntax error, an event that ends early, anything after the document. Then
//! the caller discards what was staged and feeds the event to the scanner, which decides
//! those cases as it always has. Giving up is only slower, never different.
//!
//! # Replay: the envelope every chunk repeats
//!
//! A streamed chat completion repeats its envelope in every chunk, byte for byte:
//! `{"id":"chatcmpl-…","object":"chat.completion.chunk","created":…,"model":"…",
//! "system_fingerprint":"…","choices":[…` — about two thirds of an OpenAI chunk, and the
//! same in every OpenAI-compatible server. The walk is a function of the bytes it has
//! read, so after a byte-identical prefix it stands exactly where it stood in the previous
//! event. [`Replay`] keeps, for the previous walked event, the root-level member
//! boundaries the walk passed ("marks") and the values it reported before each (as byte
//! ranges, which are the same in the new event). A new event is compared with the previous
//! one as the SSE body copies it in (`index::copy_line`); from the last mark inside the
//! common prefix, the walk replays the values reported before it and goes on from there,
//! indexing and walking only the rest. At a mark the walk is outside strings, just past a
//! root-level `,`, so the index starts afresh there.
//!
//! # Resuming at the text
//!
//! In a content chunk the bytes differ first inside the text (`choices[0].delta.content`,
//! Anthropic's `delta.text`), a few keys below the last root-level mark: `choices`,
//! `index`, `delta`, `content` were matched again in every event (Anthropic: `delta`,
//! `type`, `text`), with the indexing and bracket handling that go with them: 29% of an
//! OpenAI chunk's instructions, 37% of an Anthropic delta's (issue 20 step 9,
//! `benches/README.md`). So the walk also keeps one *deep* mark, at the first value it
//! streams (a watched string whose leaves stream: generated text), with what it needs to
//! stand there again: the live containers (their masks and kinds) and the candidates of
//! the value (`Deep`). Its position is the value's first byte, where the walk is outside
//! strings and about to read a value, and where the walk of any event that shares the
//! bytes before it stands in the same state. After a streamed value no mark is recorded
//! (streamed bytes are not logged), so the deep mark is always the last one.
//!
//! # The bytes after the text
//!
//! What follows the text repeats too: `"},"logprobs":null,"finish_reason":null}],
//! "usage":null}` closes every OpenAI content chunk, and its walk (the containers closed,
//! `logprobs` and `finish_reason` matched and reported, `usage` read) was most of a
//! chunk's remaining instructions after the text (issue 20 step 14). The walk after the
//! text's closing quote depends only on the state there, which a resumed walk shares with
//! the previous event's, and on the bytes after it. So the walk also logs the values it
//! reports after the deep value (the "tail"), with the tail's length, when it reads
//! through to the document's end with nothing more streamed and everything logged. When
//! the next event resumes at the deep mark, ends with the same tail bytes, and its text
//! closes exactly where that tail begins, the tail's values are reported again from the
//! new event's bytes (shifted by the difference in length) and the walk ends there.
//!
//! # Settled values
//!
//! The values replayed are mostly ones the sink already holds: the model and service
//! tier every OpenAI chunk repeats, an `object` that is no end mark. Reporting them again
//! changes nothing, but cost ~116 instructions each, ~19% of an OpenAI content chunk
//! (issue 20 step 16). So the replay asks the sink first ([`Sink::settled`]), reports only what is
//! not settled, and when all of a replayed run (the values before the resume mark, or the
//! tail's) were settled, keeps the sink's [`Sink::epoch`] with it: while the epoch stays
//! and the entries are not logged again, the next replay of the same run (the same
//! bytes, as replayed values always are) leaves them out without asking. Debug builds
//! ask anyway and assert that the answer is still yes.

use super::{
    is_ws, skip_ws, Dest, Esc, Scalar, Scanner, Sink, State, KEY_CAP, MAX_LIVE_DEPTH, VALUE_CAP,
};
#[cfg(test)]
use crate::index::common_prefix;
use crate::index::Index;

/// Root-level member boundaries kept per event.
const MAX_MARKS: usize = 16;
/// Values kept per event for replay.
const MAX_LOGGED: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    /// Just past a root-level `,`.
    pos: u16,
    /// Values reported before it.
    logged: u8,
}

/// Where the walk stood at the first byte of the first value it streamed (see "Resuming
/// at the text").
#[derive(Debug, Clone, Copy, Default)]
struct Deep {
    /// The value's first byte.
    pos: u16,
    /// Values reported before it.
    logged: u8,
    /// Root-level marks recorded before it.
    marks: u8,
    /// The candidates of the value and the watches ending there.
    mask: u64,
    leaf: u64,
    /// The live containers (`Scanner`'s fields of the same names).
    stack: [u64; MAX_LIVE_DEPTH],
    arr_mask: [u64; MAX_LIVE_DEPTH],
    depth: u8,
    arr_depth: u8,
    kinds: u16,
}

/// Where the walk of an event resumes (see [`resume_point`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// At the root-level mark of this number.
    Root(usize),
    /// At the deep mark.
    Deep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kind {
    #[default]
    Number,
    String,
    True,
    False,
    Null,
}

#[derive(Debug, Clone, Copy, Default)]
struct Logged {
    leaf: u64,
    kind: Kind,
    start: u16,
    end: u16,
}

impl Logged {
    /// The value, from `event`'s bytes.
    #[inline]
    fn value<'a>(&self, event: &'a [u8]) -> Scalar<'a> {
        let text = &event[usize::from(self.start)..usize::from(self.end)];
        match self.kind {
            Kind::Number => Scalar::Number(text),
            Kind::String => Scalar::String(text),
            Kind::True => Scalar::Bool(true),
            Kind::False => Scalar::Bool(false),
            Kind::Null => Scalar::Null,
        }
    }
}

/// What the walk of the previous event leaves for the next (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Replay {
    /// Whether the previous event was walked through (its bytes are the caller's `prev`).
    valid: bool,
    marks: [Mark; MAX_MARKS],
    marks_len: usize,
    logged: [Logged; MAX_LOGGED],
    logged_len: usize,
    /// A value could not be logged: no later mark is recorded.
    overflow: bool,
    /// Whether `deep` holds the deep mark of the previous event.
    deep_valid: bool,
    deep: Deep,
    /// The previous event's tail can be replayed: its values are `logged[deep.logged..]`
    /// (`tail_logged` of them), its bytes the last `tail_len` of the event, which was
    /// `tail_base` bytes long (see "The bytes after the text").
    tail_valid: bool,
    tail_len: u16,
    tail_logged: u8,
    tail_base: u16,
    /// While walking: the tail being read can still be replayed.
    tail_ok: bool,
    /// While walking a resumed event: where its text must close for its tail to be the
    /// previous one's (the tail's first byte), or 0.
    tail_at: u16,
    /// Events whose tail was replayed (counted for the tests).
    tail_replays: u64,
    /// The sink's epoch when it last found all of `logged[..n]` settled, and `n`; kept
    /// until one of those entries is logged again (see "Settled values").
    prefix_settled: Option<(u64, usize)>,
    /// The same for the tail's values.
    tail_settled: Option<u64>,
    /// Values left out of a replay as settled (counted for the tests).
    settled_skips: u64,
}

impl Replay {
    /// Forgets the previous event.
    pub(crate) fn clear(&mut self) {
        self.valid = false;
        self.marks_len = 0;
        self.logged_len = 0;
        self.overflow = false;
        self.deep_valid = false;
        self.tail_valid = false;
        self.tail_ok = false;
        self.tail_at = 0;
        self.prefix_settled = None;
        self.tail_settled = None;
    }

    fn log(&mut self, leaf: u64, kind: Kind, start: usize, end: usize) {
        // The entry changes: what was found settled of the entries from here on is not
        // known any more.
        self.tail_settled = None;
        if self
            .prefix_settled
            .is_some_and(|(_, n)| self.logged_len < n)
        {
            self.prefix_settled = None;
        }
        match self.logged.get_mut(self.logged_len) {
            Some(slot) if end <= usize::from(u16::MAX) => {
                *slot = Logged {
                    leaf,
                    kind,
                    start: start as u16,
                    end: end as u16,
                };
                self.logged_len += 1;
            }
            _ => {
                self.overflow = true;
                self.tail_ok = false;
            }
        }
    }

    /// No later mark is recorded (a value the replay cannot repeat was read).
    fn stop_marks(&mut self) {
        self.overflow = true;
    }

    fn mark(&mut self, pos: usize) {
        if self.overflow || pos > usize::from(u16::MAX) {
            return;
        }
        if let Some(slot) = self.marks.get_mut(self.marks_len) {
            *slot = Mark {
                pos: pos as u16,
                logged: self.logged_len as u8,
            };
            self.marks_len += 1;
        }
    }
}

/// The last mark of the previous event that lies within the common prefix
/// (`same_as_prev` bytes) of the new event with it: the deep mark, which comes after
/// every root-level one, or a root-level mark.
pub(crate) fn resume_point(same_as_prev: usize, replay: &Replay) -> Option<Resume> {
    if !replay.valid {
        return None;
    }
    if replay.deep_valid && usize::from(replay.deep.pos) <= same_as_prev {
        return Some(Resume::Deep);
    }
    replay.marks[..replay.marks_len]
        .iter()
        .rposition(|m| usize::from(m.pos) <= same_as_prev)
        .map(Resume::Root)
}

impl<T: 'static> Scanner<T> {
    /// Reads `event` as one document, indexing it into `index`: true when it was read
    /// through to its end as [`Scanner::feed`] would have read it, having reported its
    /// values to `sink` and counted one document; false when the walk gave up (see the
    /// module docs): values may have been reported, and the caller discards them and
    /// feeds the event to the scanner instead. The scanner must be between documents,
    /// fresh from [`Scanner::reset`]; it is left so.
    ///
    /// `replay` is what the walk of the previous event left (or cleared), `prev` that
    /// event's bytes, and `same_as_prev` the length of the common prefix of `event` with
    /// them (the SSE body measures it while it copies the event in: `index::copy_line`);
    /// after a false, `replay` is cleared.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn scan_whole<S: Sink<T>>(
        &mut self,
        event: &[u8],
        prev: &[u8],
        same_as_prev: usize,
        index: &mut Index,
        replay: &mut Replay,
        sink: &mut S,
    ) -> bool {
        if self.state != State::Between || self.started {
            replay.clear();
            return false;
        }
        self.work.walked_bytes += event.len() as u64;
        let resume = resume_point(same_as_prev, replay);
        let from = match resume {
            Some(Resume::Root(k)) => usize::from(replay.marks[k].pos),
            Some(Resume::Deep) => usize::from(replay.deep.pos),
            None => 0,
        };
        let done = index.build_from(event, from) && {
            match resume {
                Some(Resume::Deep) => {
                    let deep = replay.deep;
                    replay.marks_len = usize::from(deep.marks);
                    replay.logged_len = usize::from(deep.logged);
                    replay.overflow = false;
                    // The previous tail, if this event ends with the same bytes.
                    let n = usize::from(replay.tail_len);
                    replay.tail_at = if replay.tail_valid
                        && n < event.len()
                        && n < prev.len()
                        && event[event.len() - n..] == prev[prev.len() - n..]
                    {
                        (event.len() - n) as u16
                    } else {
                        0
                    };
                    self.replay(event, replay, sink);
                    // Where the walk stood: at the value, inside the live containers.
                    self.begin_root();
                    self.stack = deep.stack;
                    self.arr_mask = deep.arr_mask;
                    self.depth = usize::from(deep.depth);
                    self.arr_depth = usize::from(deep.arr_depth);
                    self.kinds = deep.kinds;
                    let pending = Some((deep.mask, deep.leaf));
                    self.walk_members(event, from, false, pending, index, replay, sink)
                }
                Some(Resume::Root(k)) => {
                    let mark = replay.marks[k];
                    replay.marks_len = k + 1;
                    replay.logged_len = usize::from(mark.logged);
                    replay.overflow = false;
                    replay.deep_valid = false;
                    replay.tail_valid = false;
                    replay.tail_at = 0;
                    self.replay(event, replay, sink);
                    // Where the walk stood: inside the root object, past a `,`.
                    self.enter_root_object();
                    let i = skip_ws(event, from);
                    self.walk_members(event, i, false, None, index, replay, sink)
                }
                None => {
                    replay.clear();
                    self.walk(event, index, replay, sink)
                }
            }
        };
        self.depth = 0;
        self.arr_depth = 0;
        if done {
            replay.valid = true;
            replay.tail_valid = replay.tail_ok && replay.deep_valid;
            if replay.tail_valid {
                let from = usize::from(replay.deep.logged);
                replay.tail_logged = (replay.logged_len - from) as u8;
            }
            replay.tail_ok = false;
            replay.tail_at = 0;
            self.documents += 1;
            sink.document_end();
        } else {
            replay.clear();
        }
        done
    }

    /// Reports again the values logged before the resume mark, from `event`'s bytes
    /// (the same as the previous event's there), unless they are known to be settled.
    fn replay<S: Sink<T>>(&self, event: &[u8], replay: &mut Replay, sink: &mut S) {
        let n = replay.logged_len;
        let epoch = sink.epoch();
        if epoch.is_some() && replay.prefix_settled.map(|(e, k)| (Some(e), k)) == Some((epoch, n)) {
            self.skip_settled(event, &replay.logged[..n], sink);
            replay.settled_skips += n as u64;
            return;
        }
        let settled = self.report_unsettled(event, &replay.logged[..n], sink);
        replay.prefix_settled = epoch.filter(|_| settled).map(|e| (e, n));
    }

    /// Reports each of `logged` that the sink does not hold settled; true when it held
    /// all of them (nothing was reported, so its epoch has not moved).
    fn report_unsettled<S: Sink<T>>(&self, event: &[u8], logged: &[Logged], sink: &mut S) -> bool {
        let mut settled = true;
        for l in logged {
            let value = l.value(event);
            self.for_each_target(l.leaf, |target| {
                if !sink.settled(target, value) {
                    settled = false;
                    sink.value(target, value);
                }
            });
        }
        settled
    }

    /// Leaves out values known to be settled; debug builds check that they still are.
    fn skip_settled<S: Sink<T>>(&self, event: &[u8], logged: &[Logged], sink: &S) {
        if cfg!(debug_assertions) {
            for l in logged {
                let value = l.value(event);
                self.for_each_target(l.leaf, |target| {
                    assert!(
                        sink.settled(target, value),
                        "a skipped value is not settled"
                    );
                });
            }
        }
    }

    fn walk<S: Sink<T>>(
        &mut self,
        b: &[u8],
        index: &Index,
        replay: &mut Replay,
        sink: &mut S,
    ) -> bool {
        let i = skip_ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return false;
        }
        self.begin_root();
        if !self.has_deeper(self.cur_mask) {
            return false;
        }
        self.enter_root_object();
        self.walk_members(b, skip_ws(b, i + 1), true, None, index, replay, sink)
    }

    /// Opens the root object as a live object (as `start_value` does for `{` at the root).
    fn enter_root_object(&mut self) {
        self.begin_root();
        self.open_object(self.cur_mask);
    }

    /// Walks the members of the open live objects (and the elements of the open live
    /// arrays) from `i` (at a key or an element, or at the closing `}` / `]` when `first`)
    /// to the end of the root object. With `pending` (the candidates of a value and the
    /// watches ending there), `i` is at that value, its key already read.
    #[allow(clippy::too_many_arguments)]
    fn walk_members<S: Sink<T>>(
        &mut self,
        b: &[u8],
        mut i: usize,
        mut first: bool,
        mut pending: Option<(u64, u64)>,
        index: &Index,
        replay: &mut Replay,
        sink: &mut S,
    ) -> bool {
        loop {
            let in_array = self.in_array();
            let close = if in_array { b']' } else { b'}' };
            if first && b.get(i) == Some(&close) {
                i += 1;
                self.close_container(in_array);
                match self.after_value(b, i, replay) {
                    Some(Some(next)) => {
                        i = next;
                        first = false;
                        continue;
                    }
                    Some(None) => return true,
                    None => return false,
                }
            }
            first = false;
            let (mask, leaf) = if let Some(found) = pending.take() {
                found
            } else if in_array {
                // An element stands where its array stands.
                (self.arr_mask[self.arr_depth - 1], 0)
            } else {
                if b.get(i) != Some(&b'"') {
                    return false;
                }
                let Some(q) = index.next_quote(i + 1) else {
                    return false;
                };
                if index.has_backslash(i + 1, q) {
                    return false;
                }
                let key = &b[i + 1..q];
                let found = if key.len() <= KEY_CAP {
                    self.candidates(key)
                } else {
                    (0, 0)
                };
                i = skip_ws(b, q + 1);
                if b.get(i) != Some(&b':') {
                    return false;
                }
                i = skip_ws(b, i + 1);
                found
            };
            let Some(&v) = b.get(i) else {
                return false;
            };
            match v {
                b'{' if self.has_deeper(mask) && self.depth < MAX_LIVE_DEPTH => {
                    self.open_object(mask);
                    i = skip_ws(b, i + 1);
                    first = true;
                    continue;
                }
                // An array on the way to a watched path: its elements are walked as
                // values standing where it stands (see `Scanner`).
                b'[' if self.arr_depth < MAX_LIVE_DEPTH && self.has_deeper(mask) => {
                    self.open_array(mask);
                    i = skip_ws(b, i + 1);
                    first = true;
                    continue;
                }
                b'{' | b'[' => match index.nest_end(i + 1) {
                    Some(end) => i = end,
                    None => return false,
                },
                b'"' => {
                    let Some(q) = index.next_quote(i + 1) else {
                        return false;
                    };
                    if leaf != 0 {
                        self.cur_leaf = leaf;
                        if self.leaf_streams(sink) {
                            self.deep_mark(i, mask, leaf, replay);
                            if !self.walk_streamed(
                                &b[i + 1..=q],
                                index.has_backslash(i + 1, q),
                                sink,
                            ) {
                                return false;
                            }
                            // Streamed bytes are not logged: no later mark may be resumed
                            // from, since replaying would not stream them again.
                            replay.stop_marks();
                            // The tail: the deep value's is the one kept; after a second
                            // streamed value there is none.
                            let deep = replay.deep_valid && usize::from(replay.deep.pos) == i;
                            if deep && usize::from(replay.tail_at) == q + 1 {
                                self.replay_tail(b, replay, sink);
                                return true;
                            }
                            replay.tail_at = 0;
                            replay.tail_ok = deep && b.len() <= usize::from(u16::MAX);
                            replay.tail_len = (b.len() - (q + 1)) as u16;
                            replay.tail_base = b.len() as u16;
                        } else {
                            if index.has_backslash(i + 1, q) {
                                return false;
                            }
                            if q - (i + 1) <= VALUE_CAP {
                                self.report(leaf, Scalar::String(&b[i + 1..q]), sink);
                                replay.log(leaf, Kind::String, i + 1, q);
                            }
                        }
                    }
                    i = q + 1;
                }
                b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                    let Some(len) = b[i + 1..]
                        .iter()
                        .position(|&c| matches!(c, b',' | b'}' | b']') || is_ws(c))
                    else {
                        return false;
                    };
                    let end = i + 1 + len;
                    // A quote inside a scalar (`9"`, invalid) is not a string's: the
                    // index took it for one, so its string bits are wrong from here.
                    if index.next_quote(i).is_some_and(|q| q < end) {
                        return false;
                    }
                    if leaf != 0 && end - i <= VALUE_CAP {
                        let text = &b[i..end];
                        let (value, kind) = match text {
                            b"true" => (Scalar::Bool(true), Kind::True),
                            b"false" => (Scalar::Bool(false), Kind::False),
                            b"null" => (Scalar::Null, Kind::Null),
                            [b'-' | b'0'..=b'9', ..] => (Scalar::Number(text), Kind::Number),
                            _ => return false,
                        };
                        self.report(leaf, value, sink);
                        replay.log(leaf, kind, i, end);
                    }
                    i = end;
                }
                _ => return false,
            }
            // After a value: `,` and the next key or element, or the container's end (and
            // then after the closed container's own value, and so on up).
            match self.after_value(b, i, replay) {
                Some(Some(next)) => i = next,
                Some(None) => return true,
                None => return false,
            }
        }
    }

    /// Reports again the values the previous event's walk reported after its deep value,
    /// from `event`'s bytes, which end with the same tail (see "The bytes after the
    /// text"); the walk of `event` is then through.
    fn replay_tail<S: Sink<T>>(&self, event: &[u8], replay: &mut Replay, sink: &mut S) {
        let from = replay.logged_len;
        let to = from + usize::from(replay.tail_logged);
        // Tail positions move with the event's end; the tail lies after the deep value,
        // which both events share, so a shift never takes one before it.
        let (grow, shrink) = (
            event.len().saturating_sub(usize::from(replay.tail_base)),
            usize::from(replay.tail_base).saturating_sub(event.len()),
        );
        for l in &mut replay.logged[from..to] {
            l.start = (usize::from(l.start) + grow - shrink) as u16;
            l.end = (usize::from(l.end) + grow - shrink) as u16;
        }
        let epoch = sink.epoch();
        if epoch.is_some() && replay.tail_settled == epoch {
            self.skip_settled(event, &replay.logged[from..to], sink);
            replay.settled_skips += (to - from) as u64;
        } else {
            let settled = self.report_unsettled(event, &replay.logged[from..to], sink);
            replay.tail_settled = epoch.filter(|_| settled);
        }
        replay.logged_len = to;
        replay.tail_base = event.len() as u16;
        replay.tail_ok = true;
        replay.tail_at = 0;
        replay.tail_replays += 1;
    }

    /// Records the deep mark at `i`, a streamed value's first byte with candidates `mask`
    /// and leaves `leaf`, unless a value could not be logged before it, or it is already
    /// there (the walk resumed from it).
    fn deep_mark(&self, i: usize, mask: u64, leaf: u64, replay: &mut Replay) {
        if replay.overflow || i > usize::from(u16::MAX) {
            return;
        }
        if replay.deep_valid && usize::from(replay.deep.pos) == i {
            return;
        }
        replay.deep = Deep {
            pos: i as u16,
            logged: replay.logged_len as u8,
            marks: replay.marks_len as u8,
            mask,
            leaf,
            stack: self.stack,
            arr_mask: self.arr_mask,
            depth: self.depth as u8,
            arr_depth: self.arr_depth as u8,
            kinds: self.kinds,
        };
        replay.deep_valid = true;
    }

    /// Streams a watched string whose leaves stream (`string`: its contents and the
    /// closing quote) to the sink, as [`Scanner::feed`] would: escapes decoded by the
    /// scanner's own string reader when there are any. False on an invalid escape.
    fn walk_streamed<S: Sink<T>>(&mut self, string: &[u8], escaped: bool, sink: &mut S) -> bool {
        self.for_each_leaf(|t| sink.string_start(t));
        let body = &string[..string.len() - 1];
        if !escaped {
            if !body.is_empty() {
                self.stream_chunk(body, sink);
            }
            self.for_each_leaf(|t| sink.string_end(t));
            return true;
        }
        // The reader ends the string at its quote and moves on to the value's container
        // (`value_done`); the walk keeps its own place, so the state is put back.
        let state = self.state;
        self.esc = Esc::None;
        self.high_surrogate = 0;
        // The reader gathers the string's runs in the value buffer (see `emit`).
        self.buf_len = 0;
        self.streaming = true;
        self.string_bytes(string, Dest::Stream, sink);
        let ok = self.state != State::Failed;
        self.state = state;
        self.streaming = false;
        ok
    }

    /// After a value inside a live container at `i`: `Some(Some(j))` with `j` at the next
    /// member's key or the next element; `Some(None)` when the root object closed with
    /// only whitespace after it; `None` when the walk gives up. Closing `}`s and `]`s pop
    /// the live containers; a `,` of the root object is a mark for the next event's
    /// replay.
    #[inline]
    fn after_value(
        &mut self,
        b: &[u8],
        mut i: usize,
        replay: &mut Replay,
    ) -> Option<Option<usize>> {
        loop {
            if self.nest() == 0 {
                return (skip_ws(b, i) == b.len()).then_some(None);
            }
            i = skip_ws(b, i);
            let in_array = self.in_array();
            match (b.get(i)?, in_array) {
                (b',', _) => {
                    if self.nest() == 1 {
                        replay.mark(i + 1);
                    }
                    return Some(Some(skip_ws(b, i + 1)));
                }
                (b'}', false) | (b']', true) => {
                    i += 1;
                    self.close_container(in_array);
                }
                _ => return None,
            }
        }
    }

    fn report<S: Sink<T>>(&self, leaf: u64, value: Scalar<'_>, sink: &mut S) {
        self.for_each_target(leaf, |target| sink.value(target, value));
    }
}

#[cfg(test)]
mod tests {
    use super::super::Watch;
    use super::*;

    static WATCHES: &[Watch<u8>] = &[
        Watch {
            path: &["model"],
            target: 0,
        },
        Watch {
            path: &["usage", "prompt_tokens"],
            target: 1,
        },
        Watch {
            path: &["usage", "details", "cached"],
            target: 2,
        },
        Watch {
            path: &["usage", "total"],
            target: 3,
        },
        Watch {
            path: &["done"],
            target: 4,
        },
        Watch {
            path: &["blob"],
            target: 5,
        },
        Watch {
            path: &["choices", "delta", "text"],
            target: 6,
        },
        Watch {
            path: &["choices", "delta", "kind"],
            target: 7,
        },
    ];

    #[derive(Default, Debug, PartialEq)]
    struct Found {
        values: Vec<(u8, String)>,
        docs: usize,
        /// The streamed string being received.
        streaming: Vec<u8>,
    }

    /// Records what it is told; `streams` the `blob` target, as Bedrock's inner events are,
    /// and `choices[].delta.text`, as generated text is.
    impl Sink<u8> for Found {
        fn value(&mut self, target: &u8, value: Scalar<'_>) {
            self.values.push((*target, format!("{value:?}")));
        }
        fn document_end(&mut self) {
            self.docs += 1;
        }
        fn streams(&self, target: &u8) -> bool {
            matches!(*target, 5 | 6)
        }
        fn string_start(&mut self, _target: &u8) {
            self.streaming.clear();
        }
        fn string_chunk(&mut self, _target: &u8, bytes: &[u8]) {
            self.streaming.extend_from_slice(bytes);
        }
        fn string_end(&mut self, target: &u8) {
            let text = String::from_utf8_lossy(&self.streaming).into_owned();
            self.values.push((*target, format!("Stream({text:?})")));
        }
    }

    /// What the streaming scanner reads in `event` as one framed event: its values and
    /// whether it ended with one complete document (as the SSE body decides).
    fn streamed(event: &[u8]) -> Option<Vec<(u8, String)>> {
        let mut s = Scanner::new(WATCHES, false, false);
        let mut f = Found::default();
        s.feed(event, &mut f);
        (s.at_boundary() && s.documents() == 1).then_some(f.values)
    }

    /// The walk's reading, or `None` when it gives up; the same over this build's index
    /// and over the word-at-a-time one of builds without vector instructions.
    fn walked(event: &[u8]) -> Option<Vec<(u8, String)>> {
        let vector = walked_with(event, Index::new());
        assert_eq!(walked_with(event, Index::word_at_a_time()), vector);
        vector
    }

    fn walked_with(event: &[u8], mut ix: Index) -> Option<Vec<(u8, String)>> {
        let mut s = Scanner::new(WATCHES, false, false);
        let mut f = Found::default();
        let done = s.scan_whole(event, &[], 0, &mut ix, &mut Replay::default(), &mut f);
        assert_eq!(s.documents(), u64::from(done));
        assert_eq!(f.docs, usize::from(done));
        assert!(s.at_boundary());
        done.then_some(f.values)
    }

    /// Small deterministic generator.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }
    }

    const KEYS: &[&str] = &[
        "model",
        "usage",
        "prompt_tokens",
        "details",
        "cached",
        "total",
        "done",
        "blob",
        "id",
        "choices",
        "mod\\u0065l",
        "us\\\"age",
        "",
    ];
    const STRINGS: &[&str] = &[
        "gpt-4o",
        "a \\\"quoted\\\" {word}",
        "\\\\",
        "tab\\there",
        "caf\\u00e9 \\ud83d\\ude00",
        "]}[{",
        "x\\",
        "",
    ];
    const SCALARS: &[&str] = &[
        "12", "-3", "1.5e3", "true", "false", "null", "0x1", "nul", "9\"",
    ];
    const WS: &[&str] = &["", "", "", " ", "\n", "\t ", "\r\n"];

    fn value(r: &mut Rng, out: &mut String, depth: usize) {
        match r.below(if depth > 4 { 2 } else { 4 }) {
            0 => {
                out.push('"');
                out.push_str(r.pick(STRINGS));
                out.push('"');
            }
            1 => out.push_str(r.pick(SCALARS)),
            2 => object(r, out, depth + 1),
            _ => {
                out.push('[');
                out.push_str(r.pick(WS));
                for k in 0..r.below(3) {
                    if k > 0 {
                        out.push(',');
                        out.push_str(r.pick(WS));
                    }
                    value(r, out, depth + 1);
                    out.push_str(r.pick(WS));
                }
                out.push(']');
            }
        }
    }

    fn object(r: &mut Rng, out: &mut String, depth: usize) {
        out.push('{');
        out.push_str(r.pick(WS));
        for k in 0..r.below(5) {
            if k > 0 {
                out.push(',');
                out.push_str(r.pick(WS));
            }
            out.push('"');
            out.push_str(r.pick(KEYS));
            out.push('"');
            out.push_str(r.pick(WS));
            out.push(':');
            out.push_str(r.pick(WS));
            value(r, out, depth);
            out.push_str(r.pick(WS));
        }
        out.push('}');
    }

    /// Random events built from the watched keys, lookalikes, escapes and brackets in
    /// strings, half of them then damaged (a byte dropped, doubled or replaced by a
    /// structural byte): wherever the walk finishes, it reads what the scanner reads.
    #[test]
    fn the_walk_reads_what_the_scanner_reads() {
        let mut r = Rng(0x2545_F491_4F6C_DD1D);
        let (mut walked_through, mut agreed_complete) = (0, 0);
        for round in 0..40_000 {
            let mut s = String::new();
            s.push_str(r.pick(WS));
            object(&mut r, &mut s, 0);
            s.push_str(r.pick(WS));
            let mut b = s.into_bytes();
            if round % 2 == 1 && !b.is_empty() {
                let at = r.below(b.len());
                match r.below(3) {
                    0 => {
                        b.remove(at);
                    }
                    1 => b.insert(at, b[at]),
                    _ => b[at] = b"{}[]\",:\\ x"[r.below(10)],
                }
            }
            if b.len() > crate::index::MAX_BYTES {
                continue;
            }
            let reference = streamed(&b);
            if let Some(w) = walked(&b) {
                walked_through += 1;
                assert_eq!(
                    Some(&w),
                    reference.as_ref(),
                    "{:?}",
                    String::from_utf8_lossy(&b)
                );
                agreed_complete += 1;
            }
        }
        // The walk must do the work, not give everything back to the scanner.
        assert!(walked_through > 12_000, "walked {walked_through}");
        assert_eq!(walked_through, agreed_complete);
    }

    /// A stream of events that share envelopes and differ at every kind of place (inside
    /// a value, at a mark, in a watched value before or after the resume point, in
    /// whitespace, in length), some damaged, walked one after the other with the replay
    /// kept between them as the SSE body keeps it: each event reads as the scanner reads
    /// it alone, and replays do happen.
    #[test]
    fn replayed_events_read_what_the_scanner_reads() {
        replay_reads_what_the_scanner_reads(Index::new());
        replay_reads_what_the_scanner_reads(Index::word_at_a_time());
    }

    fn replay_reads_what_the_scanner_reads(mut ix: Index) {
        let mut r = Rng(0x1234_5678_9ABC_DEF1);
        let ids = ["\"c1\"", "\"c2\"", "7"];
        let models = ["\"gpt-4o\"", "\"gpt-4o-mini\"", "null", "\"m\\\"x\""];
        let mut replay = Replay::default();
        let mut prev: Vec<u8> = Vec::new();
        let (mut events, mut resumed, mut deep) = (0, 0, 0);
        // The envelope changes now and then, as between streams.
        let (mut id, mut created) = (ids[0], 1000);
        let mut usage = "null".to_owned();
        for round in 0..20_000 {
            if r.below(4) == 0 {
                id = r.pick(&ids);
                created = 1000 + r.below(2);
            }
            // The usage changes now and then too, so that tails repeat (and sometimes
            // differ only in it).
            if r.below(3) == 0 {
                usage = match r.below(4) {
                    0 => "null".to_owned(),
                    1 => format!(
                        r#"{{"prompt_tokens":{},"total":{}}}"#,
                        r.below(99),
                        r.below(9)
                    ),
                    2 => r#"{"details":{"cached":3},"prompt_tokens":1}"#.to_owned(),
                    _ => r#"[1,{"prompt_tokens":2}]"#.to_owned(),
                };
            }
            let ws = r.pick(&["", "", "", "", " "]);
            // The delta: unwatched text, streamed text (the deep mark) with a watched
            // value before or after it, another kind of value where the text stood, two
            // choices.
            let text = r.pick(STRINGS);
            let delta = match r.below(8) {
                0 => format!(r#"{{"content":"{text}"}}"#),
                1 | 2 => format!(r#"{{"text":"{text}"}}"#),
                3 => format!(r#"{{"kind":"{}","text":"{text}"}}"#, r.pick(&["a", "b"])),
                4 => format!(r#"{{"text":"{text}","kind":{}}}"#, r.below(3)),
                5 => format!(
                    r#"{{"text":{}}}"#,
                    r.pick(&["7", "null", "{\"kind\":1}", "[\"x\"]"])
                ),
                6 => format!(
                    r#"{{"text":"{text}"}}}},{{"delta":{{"text":"{}"}}"#,
                    r.pick(STRINGS)
                ),
                _ => format!(r#"{{"text":"{text}"{ws}}}"#),
            };
            let mut e = format!(
                r#"{{"id":{},"object":"chunk",{ws}"model":{},"created":{},"choices":[{{"delta":{delta}}}],"usage":{usage}}}"#,
                id,
                r.pick(&models[..if round % 5 == 0 { 4 } else { 2 }]),
                created,
            )
            .into_bytes();
            if round % 7 == 3 {
                let at = r.below(e.len());
                e[at] = b"{}[]\",: x"[r.below(9)];
            }
            let reference = streamed(&e);
            let same = common_prefix(&e, &prev, usize::MAX);
            let resume = resume_point(same, &replay);
            let mut s = Scanner::new(WATCHES, false, false);
            let mut f = Found::default();
            let done = s.scan_whole(&e, &prev, same, &mut ix, &mut replay, &mut f);
            if done {
                events += 1;
                resumed += usize::from(resume.is_some());
                deep += usize::from(resume == Some(Resume::Deep));
                assert_eq!(
                    Some(&f.values),
                    reference.as_ref(),
                    "{:?} after {:?}",
                    String::from_utf8_lossy(&e),
                    String::from_utf8_lossy(&prev)
                );
                prev = e;
            }
        }
        assert!(events > 12_000, "walked {events}");
        assert!(resumed > events / 5, "resumed {resumed} of {events}");
        assert!(deep > events / 20, "resumed at the text {deep} of {events}");
        // Tails replayed: events that resumed at the text and ended as the one before.
        let tails = replay.tail_replays;
        assert!(
            tails > (deep / 10) as u64,
            "tails replayed {tails} of {deep}"
        );
        eprintln!("walked {events}, resumed {resumed}, at the text {deep}, tails {tails}");
    }

    /// Keeps the last value of each target, staged per event and committed after it, as
    /// the body's `Collect` does; a value it already holds committed (and has not staged
    /// since) is settled. With `epochs`, it lets the scanner keep its answers.
    #[derive(Default)]
    struct Kept {
        committed: std::collections::BTreeMap<u8, String>,
        staged: std::collections::BTreeMap<u8, String>,
        version: u64,
        epochs: bool,
    }

    impl Sink<u8> for Kept {
        fn value(&mut self, target: &u8, value: Scalar<'_>) {
            if !self.settled(target, value) {
                self.version += 1;
                self.staged.insert(*target, format!("{value:?}"));
            }
        }
        fn streams(&self, target: &u8) -> bool {
            matches!(*target, 5 | 6)
        }
        fn settled(&self, target: &u8, value: Scalar<'_>) -> bool {
            !self.staged.contains_key(target)
                && self.committed.get(target) == Some(&format!("{value:?}"))
        }
        fn epoch(&self) -> Option<u64> {
            self.epochs.then_some(self.version)
        }
    }

    impl Kept {
        fn end_event(&mut self, complete: bool) {
            let staged = core::mem::take(&mut self.staged);
            if complete {
                self.committed.extend(staged);
            }
        }
    }

    /// Replays leave out values the sink holds settled only while they are: a stream whose
    /// envelope, text and usage change now and then, some events damaged, read by two
    /// sinks side by side, one that lets the scanner keep its answers and one that does
    /// not, holds the same values after every event, and values are left out.
    /// (Debug builds also assert, at every value left out, that it is still settled.)
    #[test]
    fn settled_values_are_left_out_only_while_they_stay_settled() {
        let mut r = Rng(0x0BAD_5EED_0F5E_7701);
        let mut replays = [Replay::default(), Replay::default()];
        let mut kept = [
            Kept {
                epochs: true,
                ..Kept::default()
            },
            Kept::default(),
        ];
        let mut prev: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut ix = Index::new();
        let (mut model, mut usage, mut done) = ("\"gpt-4o\"", "null".to_owned(), "false");
        for round in 0..20_000 {
            match r.below(12) {
                0 => model = r.pick(&["\"gpt-4o\"", "\"gpt-4o-mini\"", "7", "null"]),
                1 => usage = format!(r#"{{"prompt_tokens":{}}}"#, r.below(4)),
                2 => usage = "null".to_owned(),
                3 => done = r.pick(&["false", "true", "1"]),
                _ => {}
            }
            // Watched values before the text (the model), after it (`done`, the usage),
            // and sometimes a second model after the text, so that a tail can change what
            // the envelope's model settles to.
            let after = match r.below(6) {
                0 => format!(r#","model":{}"#, r.pick(&["\"gpt-4o\"", "\"x\""])),
                _ => String::new(),
            };
            let mut e = format!(
                r#"{{"id":"c1","model":{model},"choices":[{{"delta":{{"text":"{}"}}}}]{after},"done":{done},"usage":{usage}}}"#,
                r.pick(STRINGS),
            )
            .into_bytes();
            if round % 11 == 5 {
                let at = r.below(e.len());
                e[at] = b"{}[]\",: x"[r.below(9)];
            }
            for k in 0..2 {
                let same = common_prefix(&e, &prev[k], usize::MAX);
                let mut s = Scanner::new(WATCHES, false, false);
                if s.scan_whole(&e, &prev[k], same, &mut ix, &mut replays[k], &mut kept[k]) {
                    kept[k].end_event(true);
                    prev[k].clone_from(&e);
                } else {
                    // As the SSE body does: what the walk staged is dropped, and the
                    // scanner reads the event.
                    kept[k].end_event(false);
                    let mut s = Scanner::new(WATCHES, false, false);
                    s.feed(&e, &mut kept[k]);
                    let complete = s.at_boundary() && s.documents() == 1;
                    kept[k].end_event(complete);
                }
            }
            assert_eq!(
                kept[0].committed,
                kept[1].committed,
                "after {:?}",
                String::from_utf8_lossy(&e)
            );
        }
        let skipped = replays[0].settled_skips;
        assert_eq!(replays[1].settled_skips, 0);
        assert!(skipped > 5_000, "left out {skipped}");
        eprintln!("left out {skipped} values");
    }

    #[test]
    fn common_prefix_is_exact() {
        let a: Vec<u8> = (0..100u8).collect();
        let a = &a[..];
        for i in 0..a.len() {
            let mut b = a.to_vec();
            b[i] ^= 1;
            for limit in 0..=a.len() + 2 {
                assert_eq!(common_prefix(a, &b, limit), i.min(limit));
                assert_eq!(common_prefix(&a[..i], a, limit), i.min(limit));
            }
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_read() {
        for event in [
            &br#"[DONE]"#[..],
            br#""text""#,
            br#"{"mod\u0065l":"x"}"#,
            br#"{"model":"a\"b"}"#,
            br#"{"blob":"\x"}"#,
            br#"{"model":"x"} {}"#,
            br#"{"model":"x""#,
            br#"{"model" "x"}"#,
            br#"{"a":[\"]"}"#,
        ] {
            assert_eq!(walked(event), None, "{:?}", String::from_utf8_lossy(event));
        }
        assert_eq!(
            walked(
                br#" {"id":"c","model":"m","usage":{"prompt_tokens":3,"details":{"cached":1}}} "#
            ),
            Some(vec![
                (0, r#"String([109])"#.to_owned()),
                (1, r#"Number([51])"#.to_owned()),
                (2, r#"Number([49])"#.to_owned()),
            ])
        );
        // Streamed strings are walked, escapes decoded as the scanner decodes them.
        for (event, text) in [
            (&br#"{"blob":"AAAA"}"#[..], "AAAA"),
            (br#"{"blob":""}"#, ""),
            (br#"{"blob":"a\"b\u00e9\ud83d\ude00\n"}"#, "a\"bé😀\n"),
            (br#"{"blob":"\ud83d"}"#, "\u{FFFD}"),
        ] {
            let want = vec![(5, format!("Stream({text:?})"))];
            assert_eq!(streamed(event).as_ref(), Some(&want), "{event:?}");
            assert_eq!(walked(event), Some(want), "{event:?}");
        }
    }
}
