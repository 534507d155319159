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

use super::{is_ws, Scalar, Scanner, Sink, State, KEY_CAP, MAX_LIVE_DEPTH, VALUE_CAP};
use crate::index::Index;

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

impl<T: 'static> Scanner<T> {
    /// Reads `event`, indexed by `index`, as one document: true when it was read through
    /// to its end as [`Scanner::feed`] would have read it, having reported its values to
    /// `sink` and counted one document; false when the walk gave up (see the module docs):
    /// values may have been reported, and the caller discards them and feeds the event to
    /// the scanner instead. The scanner must be between documents, fresh from
    /// [`Scanner::reset`]; it is left so.
    pub(crate) fn scan_whole<S: Sink<T>>(
        &mut self,
        event: &[u8],
        index: &Index,
        sink: &mut S,
    ) -> bool {
        if self.state != State::Between || self.started {
            return false;
        }
        let done = self.walk(event, index, sink);
        self.depth = 0;
        if done {
            self.documents += 1;
            sink.document_end();
        }
        done
    }

    fn walk<S: Sink<T>>(&mut self, b: &[u8], index: &Index, sink: &mut S) -> bool {
        let mut i = skip_ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return false;
        }
        self.begin_root();
        if !self.has_deeper(self.cur_mask) {
            return false;
        }
        self.stack[0] = self.cur_mask;
        self.depth = 1;
        i = skip_ws(b, i + 1);
        // Inside a live object, `i` at a member's key or at the object's `}`.
        let mut first = true;
        loop {
            if first && b.get(i) == Some(&b'}') {
                i += 1;
                self.depth -= 1;
                match self.after_value(b, i) {
                    Some(Some(next)) => {
                        i = next;
                        first = false;
                        continue;
                    }
                    Some(None) => return true,
                    None => return false,
                }
            }
            if b.get(i) != Some(&b'"') {
                return false;
            }
            let Some(q) = index.next_quote(i + 1) else {
                return false;
            };
            let key = &b[i + 1..q];
            if index.has_backslash(i + 1, q) {
                return false;
            }
            let (mask, leaf) = if key.len() <= KEY_CAP {
                self.candidates(key)
            } else {
                (0, 0)
            };
            i = skip_ws(b, q + 1);
            if b.get(i) != Some(&b':') {
                return false;
            }
            i = skip_ws(b, i + 1);
            let Some(&v) = b.get(i) else {
                return false;
            };
            match v {
                b'{' if self.has_deeper(mask) && self.depth < MAX_LIVE_DEPTH => {
                    self.stack[self.depth] = mask;
                    self.depth += 1;
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
                        let text = &b[i + 1..q];
                        if self.leaf_streams(sink) || index.has_backslash(i + 1, q) {
                            return false;
                        }
                        if text.len() <= VALUE_CAP {
                            self.report(leaf, Scalar::String(text), sink);
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
                        let value = match text {
                            b"true" => Scalar::Bool(true),
                            b"false" => Scalar::Bool(false),
                            b"null" => Scalar::Null,
                            [b'-' | b'0'..=b'9', ..] => Scalar::Number(text),
                            _ => return false,
                        };
                        self.report(leaf, value, sink);
                    }
                    i = end;
                }
                _ => return false,
            }
            // After a member's value: `,` and the next key, or `}` (and then after the
            // closed object's own value, and so on up).
            match self.after_value(b, i) {
                Some(Some(next)) => {
                    i = next;
                    first = false;
                }
                Some(None) => return true,
                None => return false,
            }
        }
    }

    /// After a value inside a live object at `i`: `Some(Some(j))` with `j` at the next
    /// member's key; `Some(None)` when the root object closed with only whitespace after
    /// it; `None` when the walk gives up. Closing `}`s pop the live objects.
    fn after_value(&mut self, b: &[u8], mut i: usize) -> Option<Option<usize>> {
        loop {
            if self.depth == 0 {
                return (skip_ws(b, i) == b.len()).then_some(None);
            }
            i = skip_ws(b, i);
            match b.get(i)? {
                b',' => return Some(Some(skip_ws(b, i + 1))),
                b'}' => {
                    i += 1;
                    self.depth -= 1;
                }
                _ => return None,
            }
        }
    }

    fn report<S: Sink<T>>(&self, leaf: u64, value: Scalar<'_>, sink: &mut S) {
        let mut m = leaf;
        while m != 0 {
            let idx = m.trailing_zeros() as usize;
            m &= m - 1;
            sink.value(&self.watches[idx].target, value);
        }
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
    ];

    #[derive(Default, Debug, PartialEq)]
    struct Found {
        values: Vec<(u8, String)>,
        docs: usize,
    }

    /// Records what it is told; `streams` the `blob` target, as Bedrock's inner events are.
    impl Sink<u8> for Found {
        fn value(&mut self, target: &u8, value: Scalar<'_>) {
            self.values.push((*target, format!("{value:?}")));
        }
        fn document_end(&mut self) {
            self.docs += 1;
        }
        fn streams(&self, target: &u8) -> bool {
            *target == 5
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

    /// The walk's reading, or `None` when it gives up.
    fn walked(event: &[u8]) -> Option<Vec<(u8, String)>> {
        let mut ix = Index::new();
        if !ix.build(event) {
            return None;
        }
        let mut s = Scanner::new(WATCHES, false, false);
        let mut f = Found::default();
        let done = s.scan_whole(event, &ix, &mut f);
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
                for k in 0..r.below(3) {
                    if k > 0 {
                        out.push(',');
                    }
                    value(r, out, depth + 1);
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

    #[test]
    fn gives_up_on_what_it_does_not_read() {
        for event in [
            &br#"[DONE]"#[..],
            br#""text""#,
            br#"{"mod\u0065l":"x"}"#,
            br#"{"model":"a\"b"}"#,
            br#"{"blob":"AAAA"}"#,
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
    }
}
