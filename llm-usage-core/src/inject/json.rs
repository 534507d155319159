//! A strict, whole-buffer JSON reader for the injection: it validates a document (RFC 8259:
//! one value, whitespace around it, UTF-8, no trailing bytes) and reports the members of its
//! top-level object with their byte ranges, so a rewrite can touch exactly one member and
//! keep every other byte.
//!
//! It is iterative: nesting is tracked in a bit stack (one bit per level, so at most
//! `len / 8` bytes for a document of `len` bytes), never on the call stack. Time is linear
//! in the input.

use core::ops::Range;

/// The type of a JSON value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    Number,
    True,
    False,
    Null,
}

/// One member of an object: the key's contents (between the quotes, escapes undecoded) and
/// the value's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) key: Range<usize>,
    pub(crate) value: Range<usize>,
    pub(crate) kind: Kind,
}

/// Where an object's braces are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Braces {
    /// The index of `{`.
    pub(crate) open: usize,
    /// The index of `}`.
    pub(crate) close: usize,
}

/// The input is not one JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(buf: &[u8], mut i: usize) -> usize {
    while i < buf.len() && is_ws(buf[i]) {
        i += 1;
    }
    i
}

/// The end of the string whose opening quote is at `i` (the index after the closing quote).
fn string_end(buf: &[u8], i: usize) -> Result<usize, Invalid> {
    let mut j = i + 1;
    loop {
        let Some(k) = buf[j.min(buf.len())..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        else {
            return Err(Invalid);
        };
        j += k;
        match buf[j] {
            b'"' => return Ok(j + 1),
            b'\\' => match buf.get(j + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
                Some(b'u') => {
                    let hex = buf.get(j + 2..j + 6).ok_or(Invalid)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(Invalid);
                    }
                    j += 6;
                }
                _ => return Err(Invalid),
            },
            _ => return Err(Invalid), // a control character
        }
    }
}

/// The end of the number starting at `i`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn number_end(buf: &[u8], mut i: usize) -> Result<usize, Invalid> {
    let digits = |buf: &[u8], mut i: usize| {
        let start = i;
        while i < buf.len() && buf[i].is_ascii_digit() {
            i += 1;
        }
        (i, i > start)
    };
    if buf.get(i) == Some(&b'-') {
        i += 1;
    }
    match buf.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(buf, i).0,
        _ => return Err(Invalid),
    }
    if buf.get(i) == Some(&b'.') {
        let (j, any) = digits(buf, i + 1);
        if !any {
            return Err(Invalid);
        }
        i = j;
    }
    if matches!(buf.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(buf.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let (j, any) = digits(buf, i);
        if !any {
            return Err(Invalid);
        }
        i = j;
    }
    Ok(i)
}

/// One bit per open container: 1 for an object, 0 for an array.
struct Stack {
    bits: Vec<u64>,
    depth: usize,
}

impl Stack {
    fn new() -> Stack {
        Stack {
            bits: Vec::new(),
            depth: 0,
        }
    }
    fn push(&mut self, object: bool) {
        let (w, b) = (self.depth / 64, self.depth % 64);
        if w == self.bits.len() {
            self.bits.push(0);
        }
        if object {
            self.bits[w] |= 1 << b;
        } else {
            self.bits[w] &= !(1 << b);
        }
        self.depth += 1;
    }
    /// Pops the innermost container; whether it was an object.
    fn pop(&mut self) -> bool {
        self.depth -= 1;
        self.bits[self.depth / 64] & (1 << (self.depth % 64)) != 0
    }
    fn top_is_object(&self) -> bool {
        let d = self.depth - 1;
        self.bits[d / 64] & (1 << (d % 64)) != 0
    }
}

/// The kind of the value starting at `i` and the index after it.
fn value_end(buf: &[u8], i: usize, stack: &mut Stack) -> Result<(Kind, usize), Invalid> {
    let literal = |word: &[u8], kind: Kind| {
        if buf.get(i..i + word.len()) == Some(word) {
            Ok((kind, i + word.len()))
        } else {
            Err(Invalid)
        }
    };
    match buf.get(i).ok_or(Invalid)? {
        b'"' => Ok((Kind::String, string_end(buf, i)?)),
        b'-' | b'0'..=b'9' => Ok((Kind::Number, number_end(buf, i)?)),
        b't' => literal(b"true", Kind::True),
        b'f' => literal(b"false", Kind::False),
        b'n' => literal(b"null", Kind::Null),
        b'{' => Ok((Kind::Object, container_end(buf, i, stack)?)),
        b'[' => Ok((Kind::Array, container_end(buf, i, stack)?)),
        _ => Err(Invalid),
    }
}

/// The index after the object or array opening at `i`, validating everything inside.
/// Nested containers are entered in this loop, not by recursion.
fn container_end(buf: &[u8], i: usize, stack: &mut Stack) -> Result<usize, Invalid> {
    let base = stack.depth;
    stack.push(buf[i] == b'{');
    let mut j = i + 1;
    // Just after an opening bracket: no comma before the next element.
    let mut at_open = true;
    loop {
        j = skip_ws(buf, j);
        let object = stack.top_is_object();
        let close = if object { b'}' } else { b']' };
        let b = *buf.get(j).ok_or(Invalid)?;
        if b == close {
            stack.pop();
            j += 1;
            if stack.depth == base {
                return Ok(j);
            }
            at_open = false;
            continue;
        }
        if !at_open {
            if b != b',' {
                return Err(Invalid);
            }
            j = skip_ws(buf, j + 1);
        }
        if object {
            if buf.get(j) != Some(&b'"') {
                return Err(Invalid);
            }
            j = skip_ws(buf, string_end(buf, j)?);
            if buf.get(j) != Some(&b':') {
                return Err(Invalid);
            }
            j = skip_ws(buf, j + 1);
        }
        match buf.get(j) {
            Some(&b @ (b'{' | b'[')) => {
                stack.push(b == b'{');
                j += 1;
                at_open = true;
            }
            _ => {
                j = value_end(buf, j, stack)?.1;
                at_open = false;
            }
        }
    }
}

/// Validates `buf` as one JSON document whose root is an object, calling `f` for each of the
/// root's members in order. Ranges are indexes into `buf`.
pub(crate) fn object_members(buf: &[u8], mut f: impl FnMut(Member)) -> Result<Braces, Invalid> {
    if core::str::from_utf8(buf).is_err() {
        return Err(Invalid);
    }
    let open = skip_ws(buf, 0);
    if buf.get(open) != Some(&b'{') {
        return Err(Invalid);
    }
    let mut stack = Stack::new();
    let mut j = skip_ws(buf, open + 1);
    let close = if buf.get(j) == Some(&b'}') {
        j
    } else {
        loop {
            if buf.get(j) != Some(&b'"') {
                return Err(Invalid);
            }
            let key_end = string_end(buf, j)?;
            let key = j + 1..key_end - 1;
            j = skip_ws(buf, key_end);
            if buf.get(j) != Some(&b':') {
                return Err(Invalid);
            }
            let start = skip_ws(buf, j + 1);
            let (kind, end) = value_end(buf, start, &mut stack)?;
            f(Member {
                key,
                value: start..end,
                kind,
            });
            j = skip_ws(buf, end);
            match buf.get(j) {
                Some(b',') => j = skip_ws(buf, j + 1),
                Some(b'}') => break j,
                _ => return Err(Invalid),
            }
        }
    };
    if skip_ws(buf, close + 1) != buf.len() {
        return Err(Invalid);
    }
    Ok(Braces { open, close })
}

/// Whether the JSON string contents `raw` (escapes undecoded) decode to exactly `want`, an
/// ASCII key. Allocation-free: a key with any non-ASCII character never matches.
pub(crate) fn key_is(raw: &[u8], want: &str) -> bool {
    let want = want.as_bytes();
    let mut i = 0;
    let mut n = 0;
    while i < raw.len() {
        let (b, step) = if raw[i] == b'\\' {
            let Some(&e) = raw.get(i + 1) else {
                return false;
            };
            match e {
                b'"' | b'\\' | b'/' => (e, 2),
                b'b' => (0x08, 2),
                b'f' => (0x0c, 2),
                b'n' => (b'\n', 2),
                b'r' => (b'\r', 2),
                b't' => (b'\t', 2),
                b'u' => {
                    let Some(hex) = raw.get(i + 2..i + 6) else {
                        return false;
                    };
                    let Some(v) = core::str::from_utf8(hex)
                        .ok()
                        .and_then(|h| u16::from_str_radix(h, 16).ok())
                    else {
                        return false;
                    };
                    if v >= 0x80 {
                        return false;
                    }
                    (v as u8, 6)
                }
                _ => return false,
            }
        } else {
            (raw[i], 1)
        };
        if want.get(n) != Some(&b) {
            return false;
        }
        n += 1;
        i += step;
    }
    n == want.len()
}

/// Whether `value` (a whole array, brackets included) has no elements.
pub(crate) fn is_empty_array(value: &[u8]) -> bool {
    value.len() >= 2 && value[1..value.len() - 1].iter().all(|&b| is_ws(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(s: &str) -> Result<Vec<(String, String, Kind)>, Invalid> {
        let mut v = Vec::new();
        object_members(s.as_bytes(), |m| {
            v.push((
                s[m.key.clone()].to_string(),
                s[m.value.clone()].to_string(),
                m.kind,
            ))
        })?;
        Ok(v)
    }

    #[test]
    fn members_and_ranges() {
        let m = members(r#" { "a" : 1 , "b":[1,{"x":[]}], "c":{"d":"e\"}"},"f":null } "#).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0], ("a".into(), "1".into(), Kind::Number));
        assert_eq!(m[1], ("b".into(), r#"[1,{"x":[]}]"#.into(), Kind::Array));
        assert_eq!(m[2], ("c".into(), r#"{"d":"e\"}"}"#.into(), Kind::Object));
        assert_eq!(m[3], ("f".into(), "null".into(), Kind::Null));
        assert_eq!(members("{}").unwrap(), vec![]);
        assert_eq!(members(" {\n}\t").unwrap(), vec![]);
        let b = object_members(b" {} ", |_| {}).unwrap();
        assert_eq!((b.open, b.close), (1, 2));
    }

    #[test]
    fn valid_documents() {
        for ok in [
            r#"{"a":[[[[]]],{},{"b":{"c":[1,-0,0.5,1e3,-1.5E-7,true,false,null,"\u00e9\n"]}}]}"#,
            r#"{"":""}"#,
            "{\"k\":\"caf\u{e9} \u{1F600}\"}",
            r#"{"a":1,"a":2}"#,
        ] {
            assert!(members(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn invalid_documents() {
        for bad in [
            "",
            " ",
            "[]",
            "1",
            "{",
            "}",
            "{}}",
            "{} x",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[,1]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":{"b"}}"#,
            r#"{"a":{"b":1,}}"#,
            r#"{"a":[}"#,
            r#"{"a":{]}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":+1}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":True}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u12g4"}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"unterminated}",
            r#"{'a':1}"#,
            r#"{a:1}"#,
            r#"{"a":NaN}"#,
        ] {
            assert!(members(bad).is_err(), "{bad:?} should be invalid");
        }
        assert!(
            object_members(b"{\"a\":\"\xff\"}", |_| {}).is_err(),
            "bad UTF-8"
        );
        assert!(
            object_members(b"\xef\xbb\xbf{}", |_| {}).is_err(),
            "a BOM is not JSON"
        );
    }

    #[test]
    fn deep_nesting_is_iterative() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(members(&deep).is_ok());
        let deep_obj = format!(
            "{{\"a\":{}1{}}}",
            "{\"b\":".repeat(50_000),
            "}".repeat(50_000)
        );
        assert!(members(&deep_obj).is_ok());
        let unclosed = format!("{{\"a\":{}", "[".repeat(100_000));
        assert!(members(&unclosed).is_err());
        let mismatched = format!(
            "{{\"a\":{}1{}}}",
            "[{\"b\":".repeat(1000),
            "]}".repeat(1000)
        );
        assert!(members(&mismatched).is_err());
    }

    #[test]
    fn keys_decode_escapes() {
        assert!(key_is(b"stream", "stream"));
        assert!(key_is(br"stre\u0061m", "stream"));
        assert!(key_is(br"\u0073tream_options", "stream_options"));
        assert!(!key_is(b"stream ", "stream"));
        assert!(!key_is(b"strea", "stream"));
        assert!(!key_is(br"stre\u00e1m", "stream"));
        assert!(!key_is(br"stream\", "stream"));
        assert!(!key_is(br"\q", "q"));
        assert!(key_is(br"a\/b", "a/b"));
    }

    #[test]
    fn empty_arrays() {
        assert!(is_empty_array(b"[]"));
        assert!(is_empty_array(b"[ \n\t\r ]"));
        assert!(!is_empty_array(b"[0]"));
        assert!(!is_empty_array(b"[{}]"));
    }
}
