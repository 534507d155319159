//! The configuration document as a JSON tree, and typed reads from it with errors that name
//! the field.
//!
//! [`parse`] is a small hand-written parser into [`Json`]; the configuration is then read
//! from the tree by hand (`config.rs`). Derived `Deserialize` impls for the configuration
//! structs cost about 80 KB of the 433 KB module (one monomorphised visitor per struct and
//! field type, and the float formatting of serde's "invalid type: floating point …"
//! errors), against the 300 KiB budget of issue 6; `serde_json` itself, even behind one
//! small visitor, was another 15 KB (its float parsing tables, error type and strings).
//!
//! The parser accepts exactly RFC 8259 JSON (strings must be valid UTF-8, escapes
//! included: a lone surrogate is an error), nests at most [`MAX_DEPTH`] arrays and objects
//! deep, never panics, and reports the first error with its line and column.
//!
//! Reads follow what the derived impls with `deny_unknown_fields` accepted: unknown and
//! repeated keys are errors, `null` is "absent" only where the field is optional, integers
//! must fit their type (`usize` is 32 bits in wasm32).

/// A JSON value. Objects keep their entries in document order, repeated keys included (a
/// repeated key is an error when the object is read), which a map would lose.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A non-negative integer that fits a `u64`.
    UInt(u64),
    /// A negative integer that fits an `i64`.
    NegInt(i64),
    /// Any other number (a fraction, an exponent, `-0`, or an integer beyond `u64` /
    /// `i64`): only ever a type error here, so the value is not kept.
    Float,
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object.
    Object(Vec<(String, Json)>),
}

/// How deeply arrays and objects may nest (as in `serde_json`).
pub const MAX_DEPTH: usize = 128;

/// Parses a JSON document. An error says what is wrong and where: `… at line L column C`
/// (both from 1; the column counts characters, and at the end of the input it is that of
/// the last character).
pub fn parse(bytes: &[u8]) -> Result<Json, String> {
    let mut p = Parser { b: bytes, i: 0 };
    let result = p.value(0).and_then(|v| {
        p.skip_ws();
        if p.i < p.b.len() {
            Err("trailing characters after the JSON value")
        } else {
            Ok(v)
        }
    });
    result.map_err(|what| p.error(what))
}

/// A cursor over the document; errors are static descriptions, located at `i` by
/// [`Parser::error`].
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

type Res<T> = Result<T, &'static str>;

impl Parser<'_> {
    /// `what at line L column C`, for the byte at `i` (or the last byte at the end).
    #[inline(never)]
    fn error(&self, what: &str) -> String {
        let before = self.b.get(..self.i).unwrap_or(self.b);
        let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |n| n + 1);
        let end = self.b.len().min(self.i + 1);
        let column = self
            .b
            .get(line_start..end)
            .unwrap_or_default()
            .iter()
            .filter(|&&c| c & 0xC0 != 0x80) // not a UTF-8 continuation byte
            .count();
        format!("{what} at line {line} column {column}")
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// The value at the cursor (after whitespace), `depth` arrays/objects deep.
    fn value(&mut self, depth: usize) -> Res<Json> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return Err("unexpected end of input, expected a value");
        };
        match c {
            b'n' => self.literal(b"null", Json::Null),
            b't' => self.literal(b"true", Json::Bool(true)),
            b'f' => self.literal(b"false", Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'-' | b'0'..=b'9' => self.number(),
            b'[' | b'{' if depth >= MAX_DEPTH => Err("nesting too deep (more than 128 levels)"),
            b'[' => self.array(depth + 1),
            b'{' => self.object(depth + 1),
            _ => Err("expected a value"),
        }
    }

    fn literal(&mut self, word: &[u8], value: Json) -> Res<Json> {
        for &w in word {
            match self.peek() {
                Some(c) if c == w => self.i += 1,
                Some(_) => return Err("invalid literal, expected `null`, `true` or `false`"),
                None => return Err("unexpected end of input in a literal"),
            }
        }
        Ok(value)
    }

    /// After whitespace: consumes `,` (→ `true`) or `close` (→ `false`), else `err` (or
    /// `eof` at the end of the input).
    fn comma_or(&mut self, close: u8, err: &'static str, eof: &'static str) -> Res<bool> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(false)
            }
            Some(_) => Err(err),
            None => Err(eof),
        }
    }

    /// At `[`.
    fn array(&mut self, depth: usize) -> Res<Json> {
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            let (err, eof) = (
                "expected `,` or `]`",
                "unexpected end of input, expected `,` or `]`",
            );
            if !self.comma_or(b']', err, eof)? {
                return Ok(Json::Array(items));
            }
        }
    }

    /// At `{`.
    fn object(&mut self, depth: usize) -> Res<Json> {
        self.i += 1;
        let mut entries = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Json::Object(entries));
        }
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'"') => {}
                Some(_) => return Err("expected a string key"),
                None => return Err("unexpected end of input, expected a string key"),
            }
            let key = self.string()?;
            self.skip_ws();
            match self.peek() {
                Some(b':') => self.i += 1,
                Some(_) => return Err("expected `:`"),
                None => return Err("unexpected end of input, expected `:`"),
            }
            entries.push((key, self.value(depth)?));
            let (err, eof) = (
                "expected `,` or `}`",
                "unexpected end of input, expected `,` or `}`",
            );
            if !self.comma_or(b'}', err, eof)? {
                return Ok(Json::Object(entries));
            }
        }
    }

    /// At `"`: the string, unescaped.
    fn string(&mut self) -> Res<String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            // A run of plain characters, checked as UTF-8 as a whole.
            let start = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            let run = self.b.get(start..self.i).unwrap_or_default();
            match std::str::from_utf8(run) {
                Ok(s) => out.push_str(s),
                Err(e) => {
                    self.i = start + e.valid_up_to();
                    return Err("invalid UTF-8 in a string");
                }
            }
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.escape()?;
                    out.push(c);
                }
                Some(_) => return Err("control character (U+0000 to U+001F) in a string"),
                None => return Err("unexpected end of input in a string"),
            }
        }
    }

    /// After `\`: the escaped character (a `\u` surrogate pair taken whole).
    fn escape(&mut self) -> Res<char> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unicode_escape(),
            Some(_) => return Err("invalid escape"),
            None => return Err("unexpected end of input in a string"),
        };
        self.i += 1;
        Ok(c)
    }

    /// At the `u` of `\uXXXX`.
    fn unicode_escape(&mut self) -> Res<char> {
        let hi = self.hex4()?;
        let code = match hi {
            0xD800..=0xDBFF => {
                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                    return Err("unpaired surrogate in a \\u escape");
                }
                self.i += 1;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err("unpaired surrogate in a \\u escape");
                }
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err("unpaired surrogate in a \\u escape"),
            _ => hi,
        };
        char::from_u32(code).ok_or("invalid \\u escape")
    }

    /// At a `u`: consumes it and four hex digits.
    fn hex4(&mut self) -> Res<u32> {
        self.i += 1;
        let mut n = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                Some(_) => return Err("invalid \\u escape, expected four hex digits"),
                None => return Err("unexpected end of input in a string"),
            };
            n = n * 16 + u32::from(d);
            self.i += 1;
        }
        Ok(n)
    }

    /// Consumes a run of ASCII digits; returns how many, and their value if it fits a
    /// `u64`.
    fn digits(&mut self) -> (usize, Option<u64>) {
        let mut n: Option<u64> = Some(0);
        let mut count = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            n = n
                .and_then(|n| n.checked_mul(10))
                .and_then(|n| n.checked_add(u64::from(c - b'0')));
            count += 1;
            self.i += 1;
        }
        (count, n)
    }

    /// At `-` or a digit: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Res<Json> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let int_start = self.i;
        let (count, magnitude) = self.digits();
        if count == 0 {
            return Err("invalid number, expected a digit");
        }
        if count > 1 && self.b.get(int_start) == Some(&b'0') {
            self.i = int_start + 1;
            return Err("invalid number, leading zero");
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits().0 == 0 {
                return Err("invalid number, expected a digit after `.`");
            }
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits().0 == 0 {
                return Err("invalid number, expected a digit in the exponent");
            }
            integer = false;
        }
        Ok(match (integer, negative, magnitude) {
            (true, false, Some(m)) => Json::UInt(m),
            // `-0` and magnitudes beyond `i64::MIN` are floats, as in `serde_json`.
            (true, true, Some(m)) if m != 0 && m <= 1 << 63 => {
                Json::NegInt((m as i64).wrapping_neg())
            }
            _ => Json::Float,
        })
    }
}

/// `path: ` for an error message (nothing at the top level).
#[inline(never)]
fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// The error for a value of the wrong type, worded as serde words it.
#[inline(never)]
pub fn invalid_type(path: &str, value: &Json, expected: &str) -> String {
    let found = match value {
        Json::Null => "null".to_string(),
        Json::Bool(b) => format!("boolean `{b}`"),
        Json::UInt(n) => format!("integer `{n}`"),
        Json::NegInt(n) => format!("integer `{n}`"),
        Json::Float => "floating point number".to_string(),
        Json::Str(s) => format!("string {s:?}"),
        Json::Array(_) => "sequence".to_string(),
        Json::Object(_) => "map".to_string(),
    };
    format!("{}invalid type: {found}, expected {expected}", at(path))
}

/// The fields of an object, taken one by one by name.
#[derive(Debug)]
pub struct Fields {
    slots: Vec<(&'static str, Option<Json>)>,
}

impl Fields {
    /// The value of field `name` (one of the names given to [`fields`]), if present.
    pub fn take(&mut self, name: &str) -> Option<Json> {
        self.slots
            .iter_mut()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.take())
    }
}

/// The fields of an object: every key must be one of `names`, at most once.
#[inline(never)]
pub fn fields(value: Json, path: &str, names: &[&'static str]) -> Result<Fields, String> {
    let entries = match value {
        Json::Object(entries) => entries,
        // Like serde's derived impls, also accept the fields as an array, in order. (Here
        // every field would be required in that form, as there.)
        Json::Array(items) if items.len() == names.len() => {
            let slots = names.iter().copied().zip(items.into_iter().map(Some));
            return Ok(Fields {
                slots: slots.collect(),
            });
        }
        Json::Array(items) => {
            return Err(format!(
                "{}invalid length {}, expected {} fields",
                at(path),
                items.len(),
                names.len()
            ))
        }
        other => return Err(invalid_type(path, &other, "an object")),
    };
    let mut slots: Vec<(&'static str, Option<Json>)> = names.iter().map(|n| (*n, None)).collect();
    for (key, v) in entries {
        let Some((_, slot)) = slots.iter_mut().find(|(n, _)| *n == key) else {
            let expected = match names {
                [] => "there are no fields".to_string(),
                [a] => format!("expected `{a}`"),
                [a, b] => format!("expected `{a}` or `{b}`"),
                _ => format!("expected one of `{}`", names.join("`, `")),
            };
            return Err(format!("{}unknown field `{key}`, {expected}", at(path)));
        };
        if slot.is_some() {
            return Err(format!("{}duplicate field `{key}`", at(path)));
        }
        *slot = Some(v);
    }
    Ok(Fields { slots })
}

/// `path.field` (or `field` at the top level).
#[inline(never)]
pub fn field_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// A required string field.
#[inline(never)]
pub fn string(value: Option<Json>, path: &str, field: &str) -> Result<String, String> {
    match value {
        Some(Json::Str(s)) => Ok(s),
        Some(other) => Err(invalid_type(&field_path(path, field), &other, "a string")),
        None => Err(format!("{}missing field `{field}`", at(path))),
    }
}

/// An optional string: absent or `null` is `None`.
#[inline(never)]
pub fn opt_string(value: Option<Json>, path: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) => Ok(Some(s)),
        Some(other) => Err(invalid_type(path, &other, "a string")),
    }
}

/// An optional unsigned integer no greater than `max` (named `ty` in errors).
#[inline(never)]
fn opt_uint(value: Option<Json>, path: &str, max: u64, ty: &str) -> Result<Option<u64>, String> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::UInt(n)) if n <= max => Ok(Some(n)),
        Some(Json::UInt(n)) => Err(format!(
            "{}invalid value: integer `{n}`, expected {ty}",
            at(path)
        )),
        Some(Json::NegInt(n)) => Err(format!(
            "{}invalid value: integer `{n}`, expected {ty}",
            at(path)
        )),
        Some(other) => Err(invalid_type(path, &other, ty)),
    }
}

/// An optional boolean: absent or `null` is `None`.
#[inline(never)]
pub fn opt_bool(value: Option<Json>, path: &str) -> Result<Option<bool>, String> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(b)),
        Some(other) => Err(invalid_type(path, &other, "a boolean")),
    }
}

/// An optional `u64`: absent or `null` is `None`.
pub fn opt_u64(value: Option<Json>, path: &str) -> Result<Option<u64>, String> {
    opt_uint(value, path, u64::MAX, "u64")
}

/// An optional `usize` (32 bits in wasm32): absent or `null` is `None`.
pub fn opt_usize(value: Option<Json>, path: &str) -> Result<Option<usize>, String> {
    // A `usize` always fits a `u64` on the targets Rust supports, and the bound keeps `n`
    // within `usize`.
    Ok(opt_uint(value, path, usize::MAX as u64, "usize")?.map(|n| n as usize))
}

/// An optional array: absent is `None`; `null` is `None` only if `null_is_absent`
/// (an `Option<Vec<_>>` field), else a type error (a `Vec<_>` field with a default).
#[inline(never)]
pub fn opt_array(
    value: Option<Json>,
    path: &str,
    null_is_absent: bool,
) -> Result<Option<Vec<Json>>, String> {
    match value {
        None => Ok(None),
        Some(Json::Null) if null_is_absent => Ok(None),
        Some(Json::Array(items)) => Ok(Some(items)),
        Some(other) => Err(invalid_type(path, &other, "a sequence")),
    }
}

/// An array of strings (absent: empty; `null` is a type error).
#[inline(never)]
pub fn strings(value: Option<Json>, path: &str) -> Result<Vec<String>, String> {
    let items = opt_array(value, path, false)?.unwrap_or_default();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Json::Str(s) => Ok(s),
            other => Err(invalid_type(&format!("{path}[{i}]"), &other, "a string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_document() {
        let v = parse(br#"{"a": [null, true, 1, -2, 1.5, "s"], "a": {}}"#).unwrap();
        assert_eq!(
            v,
            Json::Object(vec![
                (
                    "a".into(),
                    Json::Array(vec![
                        Json::Null,
                        Json::Bool(true),
                        Json::UInt(1),
                        Json::NegInt(-2),
                        Json::Float,
                        Json::Str("s".into()),
                    ])
                ),
                ("a".into(), Json::Object(vec![])),
            ])
        );
        assert!(parse(b"{").unwrap_err().contains("line 1 column 1"));
        assert!(parse(b"{} x").is_err());
        assert_eq!(parse(b"18446744073709551616").unwrap(), Json::Float);
    }

    #[test]
    fn numbers() {
        let n = |s: &str| parse(s.as_bytes());
        assert_eq!(n("0"), Ok(Json::UInt(0)));
        assert_eq!(n(" 42 "), Ok(Json::UInt(42)));
        assert_eq!(n("18446744073709551615"), Ok(Json::UInt(u64::MAX)));
        assert_eq!(n("-1"), Ok(Json::NegInt(-1)));
        assert_eq!(n("-9223372036854775808"), Ok(Json::NegInt(i64::MIN)));
        assert_eq!(n("-9223372036854775809"), Ok(Json::Float));
        assert_eq!(n("-0"), Ok(Json::Float));
        for f in [
            "1.5",
            "-0.0",
            "1e3",
            "1E+3",
            "2e-7",
            "0.1e1",
            "1e400",
            "123456789012345678901234567890",
        ] {
            assert_eq!(n(f), Ok(Json::Float), "{f}");
        }
        for bad in [
            "-", "01", "-01", "1.", ".5", "1e", "1e+", "+1", "1.e3", "0x10", "1_000", "NaN",
            "Infinity",
        ] {
            assert!(n(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn strings_and_escapes() {
        let s = |doc: &str| parse(doc.as_bytes());
        let ok = |doc: &str, want: &str| assert_eq!(s(doc), Ok(Json::Str(want.into())), "{doc}");
        ok(r#""""#, "");
        ok(r#""plain ü 日本 🎉""#, "plain ü 日本 🎉");
        ok(r#""\"\\\/\b\f\n\r\t""#, "\"\\/\u{8}\u{c}\n\r\t");
        ok(r#""\u0041\u00e9\u65E5\u0000""#, "Aé日\0");
        ok(r#""a\ud83c\udf89b""#, "a🎉b");
        ok(r#""\uD83D\uDE00""#, "😀");
        ok(r#""\uffff""#, "\u{ffff}");
        let bad = [
            (r#""abc"#, "unexpected end of input in a string"),
            (r#""\"#, "unexpected end of input in a string"),
            (r#""\x""#, "invalid escape"),
            (r#""\u12""#, "expected four hex digits"),
            (r#""\u12g4""#, "expected four hex digits"),
            (r#""\ud800""#, "unpaired surrogate"),
            (r#""\ud800x""#, "unpaired surrogate"),
            (r#""\ud800\u0041""#, "unpaired surrogate"),
            (r#""\ud800\ud800""#, "unpaired surrogate"),
            (r#""\udc00""#, "unpaired surrogate"),
            ("\"tab\there\"", "control character"),
            ("\"a\nb\"", "control character"),
        ];
        for (doc, want) in bad {
            let err = s(doc).unwrap_err();
            assert!(err.contains(want), "{doc}: {err:?} should contain {want:?}");
        }
        // Invalid UTF-8, in a string or outside one.
        assert!(parse(b"\"\xff\"").unwrap_err().contains("invalid UTF-8"));
        assert!(parse(b"\"a\xc3\"").unwrap_err().contains("invalid UTF-8"));
        assert!(parse(b"\"\xed\xa0\x80\"").is_err()); // an encoded surrogate
        assert!(parse(b"\xef\xbb\xbf{}").is_err()); // a byte-order mark is not JSON
                                                    // A key is unescaped the same way.
        assert_eq!(
            parse(br#"{"k\u0065y": 1}"#),
            Ok(Json::Object(vec![("key".into(), Json::UInt(1))]))
        );
    }

    #[test]
    fn invalid_documents_say_what_and_where() {
        let cases: &[(&str, &str)] = &[
            (
                "",
                "unexpected end of input, expected a value at line 1 column 0",
            ),
            (
                "   ",
                "unexpected end of input, expected a value at line 1 column 3",
            ),
            (
                "{",
                "unexpected end of input, expected a string key at line 1 column 1",
            ),
            (
                "[",
                "unexpected end of input, expected a value at line 1 column 1",
            ),
            (
                "[1",
                "unexpected end of input, expected `,` or `]` at line 1 column 2",
            ),
            (
                "{\"a\":1",
                "unexpected end of input, expected `,` or `}` at line 1 column 6",
            ),
            (
                "{\"a\"",
                "unexpected end of input, expected `:` at line 1 column 4",
            ),
            ("[1 2]", "expected `,` or `]` at line 1 column 4"),
            ("[1,]", "expected a value at line 1 column 4"),
            ("{\"a\":1,}", "expected a string key at line 1 column 8"),
            ("{\"a\" 1}", "expected `:` at line 1 column 6"),
            (
                "{\"a\":1 \"b\":2}",
                "expected `,` or `}` at line 1 column 8",
            ),
            ("{a:1}", "expected a string key at line 1 column 2"),
            ("{\"a\":}", "expected a value at line 1 column 6"),
            ("[1}", "expected `,` or `]` at line 1 column 3"),
            (
                "{} x",
                "trailing characters after the JSON value at line 1 column 4",
            ),
            (
                "{}}",
                "trailing characters after the JSON value at line 1 column 3",
            ),
            (
                "1 2",
                "trailing characters after the JSON value at line 1 column 3",
            ),
            (
                "nul",
                "unexpected end of input in a literal at line 1 column 3",
            ),
            (
                "nulx",
                "invalid literal, expected `null`, `true` or `false` at line 1 column 4",
            ),
            ("True", "expected a value at line 1 column 1"),
            ("'a'", "expected a value at line 1 column 1"),
            (
                "{\n  \"a\": [1,\n   2,,]\n}",
                "expected a value at line 3 column 6",
            ),
            ("{\"é\": x}", "expected a value at line 1 column 7"),
            ("// c\n{}", "expected a value at line 1 column 1"),
            ("[1]\n\n", ""),
        ];
        for (doc, want) in cases {
            match parse(doc.as_bytes()) {
                Err(err) => assert_eq!(&err, want, "{doc:?}"),
                Ok(v) => assert!(want.is_empty(), "{doc:?} parsed as {v:?}"),
            }
        }
    }

    #[test]
    fn nesting_is_limited() {
        let nested = |n: usize, open: &str, close: &str| {
            format!("{}{}", open.repeat(n), close.repeat(n)).into_bytes()
        };
        assert!(parse(&nested(MAX_DEPTH, "[", "]")).is_ok());
        assert!(parse(&nested(MAX_DEPTH, "{\"a\":", "}").replace_last_null()).is_ok());
        let err = parse(&nested(MAX_DEPTH + 1, "[", "]")).unwrap_err();
        assert_eq!(
            err,
            "nesting too deep (more than 128 levels) at line 1 column 129"
        );
        // Far deeper input fails the same way, without exhausting the stack.
        assert!(parse(&nested(1_000_000, "[", "]"))
            .unwrap_err()
            .contains("nesting too deep"));
        assert!(parse(&nested(1_000_000, "{\"a\":", "}"))
            .unwrap_err()
            .contains("nesting too deep"));
        assert!(parse(&"[".repeat(1_000_000).into_bytes()).is_err());
    }

    /// `{"a":{"a":…}}` needs a value in the middle.
    trait ReplaceLastNull {
        fn replace_last_null(self) -> Vec<u8>;
    }

    impl ReplaceLastNull for Vec<u8> {
        fn replace_last_null(self) -> Vec<u8> {
            let s = String::from_utf8(self).unwrap();
            let i = s.rfind(':').unwrap();
            format!("{}:null{}", &s[..i], &s[i + 1..]).into_bytes()
        }
    }

    /// The tree `serde_json` gives, in this module's terms.
    fn from_serde(v: serde_json::Value) -> Json {
        use serde_json::Value;
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Json::UInt(u),
                (None, Some(i)) => Json::NegInt(i),
                _ => Json::Float,
            },
            Value::String(s) => Json::Str(s),
            Value::Array(items) => Json::Array(items.into_iter().map(from_serde).collect()),
            Value::Object(_) => unreachable!("objects are compared through a Vec"),
        }
    }

    /// Documents without objects (a `serde_json::Map` loses repeated keys and order),
    /// and byte-level mutations of them: wherever `serde_json` accepts, the trees agree;
    /// wherever it rejects, so does `parse` (but for numbers beyond `f64`, which are just
    /// [`Json::Float`] here).
    #[test]
    fn agrees_with_serde_json() {
        let seeds: &[&[u8]] = &[
            br#"[null, true, false, 0, -1, 1.5e3, "a\u00e9\ud83c\udf89\n", [], [[]], "x"]"#,
            br#"[18446744073709551615, -9223372036854775808, -0, 1e-5, "\\\"\/\b"]"#,
            br#"  [ 1 , [ 2 , [ "3" ] ] , "" ]  "#,
        ];
        let alphabet = b"[]{}\",:\\u0aez-.+1 \n\x01\xc3\xa9\xff";
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut checked = 0;
        for seed in seeds {
            for round in 0..3000 {
                let mut doc = seed.to_vec();
                for _ in 0..(round % 4) {
                    let at = (rand() as usize) % (doc.len() + 1);
                    let byte = alphabet[(rand() as usize) % alphabet.len()];
                    match rand() % 3 {
                        0 if at < doc.len() => doc[at] = byte,
                        1 if at < doc.len() => {
                            doc.remove(at);
                        }
                        _ => doc.insert(at, byte),
                    }
                }
                let ours = parse(&doc);
                match serde_json::from_slice::<serde_json::Value>(&doc) {
                    Ok(v) if !v.to_string().contains('{') => {
                        assert_eq!(ours, Ok(from_serde(v)), "{}", String::from_utf8_lossy(&doc));
                        checked += 1;
                    }
                    Ok(_) => {}
                    Err(e) if e.to_string().contains("number out of range") => {}
                    Err(e) => assert!(
                        ours.is_err(),
                        "{}: serde_json says {e}, parse says {ours:?}",
                        String::from_utf8_lossy(&doc)
                    ),
                }
            }
        }
        assert!(checked > 1000, "only {checked} accepted documents");
    }

    #[test]
    fn fields_are_checked() {
        let names = ["tag", "from"];
        let obj = |s: &str| parse(s.as_bytes()).unwrap();
        let mut f = fields(obj(r#"{"from": "x"}"#), "d[0]", &names).unwrap();
        assert_eq!(f.take("tag"), None);
        assert_eq!(f.take("from"), Some(Json::Str("x".into())));
        assert_eq!(f.take("from"), None);
        assert_eq!(
            fields(obj(r#"{"frm": 1}"#), "d[0]", &names).unwrap_err(),
            "d[0]: unknown field `frm`, expected `tag` or `from`"
        );
        assert_eq!(
            fields(obj(r#"{"x": 1}"#), "", &["a", "b", "c"]).unwrap_err(),
            "unknown field `x`, expected one of `a`, `b`, `c`"
        );
        assert_eq!(
            fields(obj(r#"{"tag": "a", "tag": "b"}"#), "", &names).unwrap_err(),
            "duplicate field `tag`"
        );
        assert_eq!(
            fields(obj("true"), "d[0]", &names).unwrap_err(),
            "d[0]: invalid type: boolean `true`, expected an object"
        );
        // The array form of serde's derived impls: every field, in order.
        let mut f = fields(obj(r#"["t", null]"#), "", &names).unwrap();
        assert_eq!(f.take("tag"), Some(Json::Str("t".into())));
        assert_eq!(f.take("from"), Some(Json::Null));
        assert_eq!(
            fields(obj(r#"["t"]"#), "d[0]", &names).unwrap_err(),
            "d[0]: invalid length 1, expected 2 fields"
        );
    }

    #[test]
    fn typed_reads() {
        let s = |v: &str| Some(Json::Str(v.into()));
        assert_eq!(string(s("a"), "p", "f").unwrap(), "a");
        assert_eq!(string(None, "p", "f").unwrap_err(), "p: missing field `f`");
        assert_eq!(
            string(Some(Json::Null), "p", "f").unwrap_err(),
            "p.f: invalid type: null, expected a string"
        );
        assert_eq!(opt_string(Some(Json::Null), "x").unwrap(), None);
        assert_eq!(
            opt_string(Some(Json::UInt(5)), "x").unwrap_err(),
            "x: invalid type: integer `5`, expected a string"
        );
        assert_eq!(opt_usize(Some(Json::UInt(7)), "n").unwrap(), Some(7));
        assert_eq!(
            opt_usize(Some(Json::NegInt(-1)), "n").unwrap_err(),
            "n: invalid value: integer `-1`, expected usize"
        );
        assert_eq!(
            opt_u64(Some(Json::Float), "n").unwrap_err(),
            "n: invalid type: floating point number, expected u64"
        );
        assert_eq!(
            opt_u64(s("1"), "n").unwrap_err(),
            "n: invalid type: string \"1\", expected u64"
        );
        assert_eq!(opt_array(Some(Json::Null), "a", true).unwrap(), None);
        assert!(opt_array(Some(Json::Null), "a", false).is_err());
        assert_eq!(
            strings(Some(Json::Array(vec![Json::Str("a".into())])), "l").unwrap(),
            ["a"]
        );
        assert_eq!(
            strings(Some(Json::Array(vec![Json::Bool(true)])), "l").unwrap_err(),
            "l[0]: invalid type: boolean `true`, expected a string"
        );
    }
}
