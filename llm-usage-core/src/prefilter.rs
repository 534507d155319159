//! The SSE event prefilter: events that cannot hold a watched key are not scanned (in
//! builds without vector instructions; see "When the prefilter runs").
//!
//! Most events of a stream carry no usage (Anthropic's `content_block_delta`s, pings).
//! The SSE body holds each event's data in one bounded buffer ([`EVENT_BUF`] bytes of
//! heap, allocated once per SSE body when its framing is known, and reused); at the
//! event's end, [`Prefilter::may_hold`]
//! decides whether it can contain a member of a watched path. If not, the event is not
//! scanned at all; an event that outgrows the buffer is streamed into the scanner as
//! before.
//!
//! # Why the test is sound
//!
//! Every watched path starts with a key of the root object. A root key equal to the
//! segment `seg` is written either literally, and then the event contains the bytes
//! `"seg"` (its quotes included), or with escapes. The escapes other than `\uXXXX` decode
//! to `"`, `\`, `/` or a control character, which no watched segment contains (checked
//! when the filter is built; a table whose segments do contain one is never
//! prefiltered), so such a key would have to use `\u`. Hence an event that contains
//! neither a quoted first segment nor the bytes `\u` has no watched member, and the
//! scanner would report nothing for it. Lookalikes (`"model"` inside a string) only
//! cost a full scan, never a wrong value.
//!
//! # Counting skipped events
//!
//! An event counts (`Exchange::response_events`) when the scanner would have ended it
//! with one complete document. Walking a skipped event to decide that exactly costs what
//! the scan costs (measured: ~55 ns per Anthropic delta, as much as the scan), so a
//! skipped *object* counts when it ends with its `}` ([`skipped_event_counts`]); other
//! roots (`[DONE]`, strings, numbers) are decided exactly by [`dead_document`], which
//! walks them as the scanner does. The count thus differs from a scan only for a
//! malformed object without a watched key; values and `complete` never differ.
//!
//! # When the prefilter runs
//!
//! Only in builds without vector instructions (wasm without `simd128`, for one). Where
//! the structural index ([`crate::index`]) is available, every held event is walked
//! instead (`Scanner::scan_whole`, with the envelope replay), which costs less than this
//! search on the streams measured and counts events exactly as the scanner does.
//!
//! Without the index, holding an event that is then scanned anyway only costs a copy and
//! the search (OpenAI chunks all carry `"model"` and `"usage":null`). After two events in
//! a row were scanned, the body holds only one event in 16, and holds every event again
//! once one is skipped; this depends on the events, never on how the stream was chunked.

use crate::scan::{is_ws, skip_ws, Watch};
use crate::swar::{find_quote_or_backslash, find_structural, first, rep, string_end, word, zeros};

/// Largest SSE event (its data, lines joined) held for the prefilter.
pub(crate) const EVENT_BUF: usize = 2048;

/// Most distinct first segments a prefiltered table may have (the dialects have 1–3).
const MAX_SEGMENTS: usize = 8;

/// The distinct first segments of a watch table, built once per table (20 bytes: the
/// segments are kept as indices into the table).
#[derive(Debug, Clone)]
pub(crate) struct Prefilter {
    /// Per distinct first segment, the index of a watch it starts.
    segments: [u8; MAX_SEGMENTS],
    len: u8,
    /// The segments' distinct first bytes.
    firsts: [u8; MAX_SEGMENTS],
    firsts_len: u8,
    /// False when the table cannot be prefiltered (too many first segments, or one that
    /// a non-`\u` escape could spell): every event is scanned.
    usable: bool,
}

impl Prefilter {
    pub(crate) const NONE: Prefilter = Prefilter {
        segments: [0; MAX_SEGMENTS],
        len: 0,
        firsts: [0; MAX_SEGMENTS],
        firsts_len: 0,
        usable: false,
    };

    pub(crate) fn new<T>(watches: &[Watch<T>]) -> Prefilter {
        let mut p = Prefilter {
            usable: true,
            ..Prefilter::NONE
        };
        for (i, w) in watches.iter().enumerate() {
            let Some(seg) = w.path.first() else {
                p.usable = false;
                continue;
            };
            let seg = seg.as_bytes();
            if seg.is_empty()
                || seg
                    .iter()
                    .any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == b'/')
            {
                p.usable = false;
                continue;
            }
            let known = &p.segments[..usize::from(p.len)];
            if known.iter().any(|&j| first_segment(watches, j) == seg) {
                continue;
            }
            if usize::from(p.len) == MAX_SEGMENTS || i > usize::from(u8::MAX) {
                p.usable = false;
                continue;
            }
            p.segments[usize::from(p.len)] = i as u8;
            p.len += 1;
            if !p.firsts[..usize::from(p.firsts_len)].contains(&seg[0]) {
                p.firsts[usize::from(p.firsts_len)] = seg[0];
                p.firsts_len += 1;
            }
        }
        p
    }

    /// Whether `event` may hold a member of a watched path: it contains a quoted first
    /// segment (`"usage"`) or the bytes `\u`.
    ///
    /// Eight bytes at a time, a word and the word one byte on flag the pairs that can
    /// start a match: a `"` followed by the first byte of a segment, or `\u`. Only those
    /// (a few per event) are compared with the segments. The flags may include false
    /// positives (see `swar`), never miss a pair.
    pub(crate) fn may_hold<T>(&self, watches: &[Watch<T>], event: &[u8]) -> bool {
        if !self.usable {
            return true;
        }
        let firsts = &self.firsts[..usize::from(self.firsts_len)];
        let n = event.len();
        let mut i = 0;
        while i + 9 <= n {
            let a = word(event, i);
            let b = word(event, i + 1);
            let mut next = 0;
            for &f in firsts {
                next |= zeros(b ^ rep(f));
            }
            let mut m =
                (zeros(a ^ rep(b'"')) & next) | (zeros(a ^ rep(b'\\')) & zeros(b ^ rep(b'u')));
            while m != 0 {
                if self.hit(watches, event, i + first(m)) {
                    return true;
                }
                m &= m - 1;
            }
            i += 8;
        }
        (i..n).any(|at| self.hit(watches, event, at))
    }

    /// Whether a match starts at `at`.
    #[inline]
    fn hit<T>(&self, watches: &[Watch<T>], event: &[u8], at: usize) -> bool {
        let rest = &event[at + 1..];
        match event[at] {
            b'\\' => rest.first() == Some(&b'u'),
            b'"' => self.segments[..usize::from(self.len)]
                .iter()
                .any(|&j| quoted(rest, first_segment(watches, j))),
            _ => false,
        }
    }
}

/// The first path segment of watch `j` (the prefilter only keeps watches that have one).
fn first_segment<T>(watches: &[Watch<T>], j: u8) -> &[u8] {
    watches[usize::from(j)]
        .path
        .first()
        .map_or(&[], |s| s.as_bytes())
}

/// Whether `rest` starts with `seg` and a closing quote (compared inline: the segments
/// are a few bytes long, too short for a `memcmp` call to pay).
#[inline]
fn quoted(rest: &[u8], seg: &[u8]) -> bool {
    rest.len() > seg.len() && rest[seg.len()] == b'"' && rest.iter().zip(seg).all(|(a, b)| a == b)
}

/// The end of a key (`i` past its opening quote): the position after its closing
/// quote. Escapes are checked as the scanner checks a key's.
fn key_end(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let p = find_quote_or_backslash(&b[i..])?;
        i += p + 1;
        if b[i - 1] == b'"' {
            return Some(i);
        }
        match *b.get(i)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 1,
            b'u' => {
                let hex = b.get(i + 1..i + 5)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                i += 5;
            }
            _ => return None,
        }
    }
}

/// The end of a skipped object or array (`i` past its opening bracket), counted as the
/// scanner counts it: brackets of either kind, strings skipped.
fn nest_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 1u32;
    loop {
        let at = i + find_structural(&b[i..])?;
        i = at + 1;
        match b[at] {
            b'"' => i = string_end(b, i).ok()? + 1,
            b'{' | b'[' => depth = depth.saturating_add(1),
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
        }
    }
}

/// The end of a skipped value starting at `i` (the scanner's `start_value` with no
/// watch continuing), or `None` where the scanner would fail or wait for more input.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i + 1).ok().map(|q| q + 1),
        b'{' | b'[' => nest_end(b, i + 1),
        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => b[i + 1..]
            .iter()
            .position(|&c| matches!(c, b',' | b'}' | b']') || is_ws(c))
            .map(|p| i + 1 + p),
        _ => None,
    }
}

/// Whether a skipped event counts: an object counts when it ends with its `}` (without
/// walking it, which would cost what the scan saves); any other root as the scanner
/// would count it ([`dead_document`]; `[DONE]` counts, as it always did).
///
/// This differs from the scanner only for a malformed object that starts with `{`, ends
/// with `}` and holds no watched key (`{"a":1}}`, `{"a" 1}`, `{"a":1}{"b":2}`): the
/// scanner fails it, this counts it. Nothing is staged from a skipped event either way,
/// so only `Exchange::response_events` can differ, never a value or `complete`.
pub(crate) fn skipped_event_counts(event: &[u8]) -> bool {
    let Some(start) = event.iter().position(|&b| !is_ws(b)) else {
        return false;
    };
    if event[start] == b'{' {
        let end = event.iter().rposition(|&b| !is_ws(b)).unwrap_or(start);
        end > start && event[end] == b'}'
    } else {
        dead_document(event)
    }
}

/// Whether the scanner, in one-document-per-event mode, would end `event` with exactly
/// one complete document, given that no root key of `event` is watched (which
/// [`Prefilter::may_hold`] guarantees for the events it turns away).
pub(crate) fn dead_document(event: &[u8]) -> bool {
    let b = event;
    let i = skip_ws(b, 0);
    let end = if b.get(i) == Some(&b'{') {
        // A root object is walked member by member; every value is skipped.
        let mut i = skip_ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            Some(i + 1)
        } else {
            loop {
                if b.get(i) != Some(&b'"') {
                    break None;
                }
                let Some(k) = key_end(b, i + 1) else {
                    break None;
                };
                i = skip_ws(b, k);
                if b.get(i) != Some(&b':') {
                    break None;
                }
                let Some(v) = value_end(b, skip_ws(b, i + 1)) else {
                    break None;
                };
                i = skip_ws(b, v);
                match b.get(i) {
                    Some(b',') => i = skip_ws(b, i + 1),
                    Some(b'}') => break Some(i + 1),
                    _ => break None,
                }
            }
        }
    } else {
        // A root array (not split into documents in a framed stream), string or scalar.
        value_end(b, i)
    };
    end.is_some_and(|e| skip_ws(b, e) == b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{Scalar, Scanner, Sink};

    static WATCHES: &[Watch<u8>] = &[
        Watch {
            path: &["model"],
            target: 0,
        },
        Watch {
            path: &["usage", "input_tokens"],
            target: 1,
        },
        Watch {
            path: &["message", "usage", "input_tokens"],
            target: 2,
        },
        Watch {
            path: &["message", "model"],
            target: 3,
        },
    ];

    #[derive(Default)]
    struct Found(Vec<u8>);
    impl Sink<u8> for Found {
        fn value(&mut self, t: &u8, _v: Scalar<'_>) {
            self.0.push(*t);
        }
    }

    /// What the scanner says of one event: values found, and whether it counts.
    fn scan(event: &[u8]) -> (Vec<u8>, bool) {
        let mut s = Scanner::new(WATCHES, false, false);
        let mut f = Found::default();
        s.feed(event, &mut f);
        (f.0, s.at_boundary() && s.documents() == 1)
    }

    fn filter() -> Prefilter {
        Prefilter::new(WATCHES)
    }

    #[test]
    fn segments_are_distinct_first_keys() {
        let p = filter();
        assert!(p.usable);
        let segs: Vec<&[u8]> = p.segments[..usize::from(p.len)]
            .iter()
            .map(|&j| first_segment(WATCHES, j))
            .collect();
        assert_eq!(segs, [&b"model"[..], b"usage", b"message"]);
        assert_eq!(&p.firsts[..usize::from(p.firsts_len)], b"mu");
    }

    #[test]
    fn skip_and_scan_decisions() {
        let p = filter();
        let skip: &[&[u8]] = &[
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi\n"}}"#,
            br#"{"type":"ping"}"#,
            b"[DONE]",
            b"",
            br#"{"models":1,"usages":2,"mode":"l"}"#,
            // Escaped quotes around a lookalike: not a quoted segment.
            br#"{"text":"say \"usage\" please"}"#,
            br#"{"text":"a\\b \/ \t"}"#,
        ];
        for e in skip {
            assert!(!p.may_hold(WATCHES, e), "{}", String::from_utf8_lossy(e));
            assert!(scan(e).0.is_empty());
        }
        let hold: &[&[u8]] = &[
            br#"{"model":"m"}"#,
            br#"{"usage":{"input_tokens":3}}"#,
            br#"{"type":"message_start","message":{"model":"m"}}"#,
            // Lookalikes: a scan, never a wrong value.
            br#"{"text":"the \"model\" key","x":"usage"}"#,
            br#"{"text":"\"model"}"#,
            br#"{"text":"caf\u00e9"}"#,
            br#"{"\u0075sage":{"input_tokens":7}}"#,
            br#"{"text":"\\u"}"#,
        ];
        for e in hold {
            assert!(p.may_hold(WATCHES, e), "{}", String::from_utf8_lossy(e));
        }
    }

    #[test]
    fn escaped_key_is_found_by_the_scan() {
        let e = br#"{"type":"x","\u0075sage":{"input_tokens":7},"mod\u0065l":"m"}"#;
        assert!(filter().may_hold(WATCHES, e));
        let (found, counts) = scan(e);
        assert_eq!(found, [1, 0]);
        assert!(counts);
    }

    #[test]
    fn unusable_tables_scan_everything() {
        static ODD: &[Watch<u8>] = &[Watch {
            path: &["a/b"],
            target: 0,
        }];
        assert!(Prefilter::new(ODD).may_hold(ODD, b"{}"));
        assert!(Prefilter::NONE.may_hold(WATCHES, b"{}"));
    }

    /// Events without a watched member, valid and broken: `dead_document` must say what
    /// the scanner says.
    #[test]
    fn dead_document_agrees_with_the_scanner() {
        let base: &[&[u8]] = &[
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a \"q\" \\"}}"#,
            br#" { "a" : [1, {"b": "]"}], "c" : -1.5e3 , "d":true,"e":null , "f":"x\ny"} "#,
            br#"{"k\"e\\y\/\n":1}"#,
            br#"{"k\u00e9":1}"#,
            b"[DONE]",
            b"[[]]",
            br#""str""#,
            b"12 ",
            b"12",
            b"{}",
            b"{ }",
            b"[{]",
        ];
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for e in base {
            cases.push(e.to_vec());
            // Every deletion of one byte, and every insertion of a delimiter.
            for at in 0..e.len() {
                let mut d = e.to_vec();
                d.remove(at);
                cases.push(d);
            }
            for at in 0..=e.len() {
                for c in b"{}[]\",: \\x1" {
                    let mut d = e.to_vec();
                    d.insert(at, *c);
                    cases.push(d);
                }
            }
        }
        let mut checked = 0;
        for c in &cases {
            let (found, counts) = scan(c);
            if !found.is_empty() {
                continue;
            }
            assert_eq!(dead_document(c), counts, "{}", String::from_utf8_lossy(c));
            checked += 1;
        }
        assert!(checked > 1000);
    }
}
