//! Deciding whether and how to rewrite a request body so that a stream reports its usage.

use super::json::{self, Kind, Member};
use super::Skip;

/// What [`rewrite_request`] decided for one request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// The body with `stream_options.include_usage` set to `true`: forward these bytes
    /// instead of the original ones. The client did not ask for usage, so the usage-only
    /// chunk is to be removed from the stream it receives ([`UsageChunkFilter`]).
    ///
    /// [`UsageChunkFilter`]: super::UsageChunkFilter
    Injected(Vec<u8>),
    /// The client asked for usage itself (`include_usage: true`): forward the original bytes,
    /// leave the stream untouched.
    ClientAsked,
    /// Not a streamed request (`stream` absent, `false` or `null`): nothing to do.
    NotStreaming,
    /// Something unexpected: forward the original bytes untouched, and count the skip.
    Skipped(Skip),
}

impl Rewrite {
    /// Whether the usage-only chunk must be removed from the response stream.
    pub fn hides_usage_chunk(&self) -> bool {
        matches!(self, Rewrite::Injected(_))
    }

    /// The skip reason, if the rewrite was skipped.
    pub fn skip(&self) -> Option<Skip> {
        match self {
            Rewrite::Skipped(s) => Some(*s),
            _ => None,
        }
    }
}

/// The one member named `key` among `members`: `Ok(None)` if absent, an error if repeated.
fn only<'a>(buf: &[u8], members: &'a [Member], key: &str) -> Result<Option<&'a Member>, Skip> {
    let mut found = None;
    for m in members {
        if json::key_is(&buf[m.key.clone()], key) {
            if found.is_some() {
                return Err(Skip::DuplicateKey);
            }
            found = Some(m);
        }
    }
    Ok(found)
}

/// The members of the object that is all of `buf[range]` (already validated).
fn members_of(buf: &[u8], range: core::ops::Range<usize>) -> (Vec<Member>, json::Braces) {
    let base = range.start;
    let mut v = Vec::new();
    let braces = json::object_members(&buf[range], |mut m| {
        m.key = m.key.start + base..m.key.end + base;
        m.value = m.value.start + base..m.value.end + base;
        v.push(m);
    })
    // The value was validated as an object when the root was read.
    .unwrap_or(json::Braces { open: 0, close: 0 });
    let braces = json::Braces {
        open: braces.open + base,
        close: braces.close + base,
    };
    (v, braces)
}

fn splice(buf: &[u8], at: core::ops::Range<usize>, with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len() - at.len() + with.len());
    out.extend_from_slice(&buf[..at.start]);
    out.extend_from_slice(with);
    out.extend_from_slice(&buf[at.end..]);
    out
}

/// Decides what to do with an OpenAI-compatible `chat/completions` or `completions` request
/// body so that a streamed response reports its usage, and builds the new body.
///
/// For a body that is one JSON object with `"stream": true` and no
/// `stream_options.include_usage: true`, the new body is the original with exactly one change:
///
/// | the body has | the change |
/// | --- | --- |
/// | no `stream_options` | `,"stream_options":{"include_usage":true}` after the last member |
/// | `"stream_options": null` | `null` becomes `{"include_usage":true}` |
/// | `stream_options` without `include_usage` | `"include_usage":true` after its last member (or inside `{}`) |
/// | `"include_usage": false` or `null` | the value becomes `true` |
///
/// Every other byte (whitespace, escapes, key order, numbers as written) is kept. Anything
/// unexpected gives [`Rewrite::Skipped`] with the reason: a body that is not one JSON object
/// (syntax, UTF-8, trailing bytes), `stream`, `stream_options` or `include_usage` given twice,
/// `stream` not a boolean, `stream_options` not an object, `include_usage` not a boolean, or
/// vLLM's `continuous_usage_stats: true` (with usage injected, every chunk would carry usage).
///
/// The caller decides the rest: the path, the size cap, the content encoding.
///
/// ```
/// use llm_usage_core::inject::{rewrite_request, Rewrite};
///
/// let body = br#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
/// let Rewrite::Injected(new) = rewrite_request(body) else { panic!() };
/// assert_eq!(new, br#"{"model":"gpt-4o","stream":true,"messages":[],"stream_options":{"include_usage":true}}"#);
///
/// let asked = br#"{"stream":true,"stream_options":{"include_usage":true}}"#;
/// assert_eq!(rewrite_request(asked), Rewrite::ClientAsked);
/// ```
pub fn rewrite_request(body: &[u8]) -> Rewrite {
    match plan(body) {
        Ok(r) => r,
        Err(skip) => Rewrite::Skipped(skip),
    }
}

fn plan(body: &[u8]) -> Result<Rewrite, Skip> {
    let mut root = Vec::new();
    let braces = json::object_members(body, |m| root.push(m)).map_err(|_| Skip::InvalidJson)?;
    let stream = only(body, &root, "stream")?;
    let stream_options = only(body, &root, "stream_options")?;
    match stream.map(|m| m.kind) {
        Some(Kind::True) => {}
        None | Some(Kind::False) | Some(Kind::Null) => return Ok(Rewrite::NotStreaming),
        Some(_) => return Err(Skip::StreamNotBool),
    }
    const OPTIONS: &[u8] = br#"{"include_usage":true}"#;
    let Some(so) = stream_options else {
        // After the last member (there is one: `stream`).
        let end = root.last().map_or(braces.open + 1, |m| m.value.end);
        let mut with = b",\"stream_options\":".to_vec();
        with.extend_from_slice(OPTIONS);
        return Ok(Rewrite::Injected(splice(body, end..end, &with)));
    };
    match so.kind {
        Kind::Null => return Ok(Rewrite::Injected(splice(body, so.value.clone(), OPTIONS))),
        Kind::Object => {}
        _ => return Err(Skip::StreamOptionsNotObject),
    }
    let (inner, inner_braces) = members_of(body, so.value.clone());
    let include = only(body, &inner, "include_usage")?;
    match include.map(|m| m.kind) {
        Some(Kind::True) => return Ok(Rewrite::ClientAsked),
        None | Some(Kind::False) | Some(Kind::Null) => {}
        Some(_) => return Err(Skip::IncludeUsageNotBool),
    }
    if let Some(c) = only(body, &inner, "continuous_usage_stats")? {
        if c.kind == Kind::True {
            return Err(Skip::ContinuousUsageStats);
        }
    }
    match include {
        Some(m) => Ok(Rewrite::Injected(splice(body, m.value.clone(), b"true"))),
        None => Ok(Rewrite::Injected(match inner.last() {
            Some(last) => {
                let end = last.value.end;
                splice(body, end..end, b",\"include_usage\":true")
            }
            None => {
                let at = inner_braces.open + 1;
                splice(body, at..at, b"\"include_usage\":true")
            }
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injected(body: &str) -> String {
        match rewrite_request(body.as_bytes()) {
            Rewrite::Injected(b) => String::from_utf8(b).unwrap(),
            other => panic!("{body}: {other:?}"),
        }
    }

    /// The new body is valid JSON, has include_usage true, and differs from the original by
    /// one inserted or replaced span.
    fn check_minimal(before: &str, after: &str) {
        let v: serde_json::Value = serde_json::from_str(after).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true, "{after}");
        let (b, a) = (before.as_bytes(), after.as_bytes());
        let prefix = b.iter().zip(a).take_while(|(x, y)| x == y).count();
        let suffix = b[prefix..]
            .iter()
            .rev()
            .zip(a[prefix..].iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        let removed = &before[prefix..before.len() - suffix];
        // (`false` and `true` share their last byte.)
        assert!(
            removed.is_empty() || removed == "fals" || removed == "null",
            "{before} -> {after}: removed {removed:?}"
        );
    }

    #[test]
    fn absent_stream_options_is_appended_after_the_last_member() {
        let cases = [
            (
                r#"{"model":"m","stream":true,"messages":[]}"#,
                r#"{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}"#,
            ),
            (
                "{ \"stream\" : true }\n",
                "{ \"stream\" : true,\"stream_options\":{\"include_usage\":true} }\n",
            ),
            (
                "{\n  \"stream\": true,\n  \"messages\": [{\"role\": \"user\", \"content\": \"hi\\n\\u00e9\"}]\n}",
                "{\n  \"stream\": true,\n  \"messages\": [{\"role\": \"user\", \"content\": \"hi\\n\\u00e9\"}],\"stream_options\":{\"include_usage\":true}\n}",
            ),
        ];
        for (before, after) in cases {
            assert_eq!(injected(before), after);
            check_minimal(before, after);
        }
    }

    #[test]
    fn stream_options_without_include_usage() {
        let cases = [
            (
                r#"{"stream":true,"stream_options":{}}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            ),
            (
                r#"{"stream":true,"stream_options":{ }}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true }}"#,
            ),
            (
                r#"{"stream_options":{"include_obfuscation":false},"stream":true}"#,
                r#"{"stream_options":{"include_obfuscation":false,"include_usage":true},"stream":true}"#,
            ),
            (
                r#"{"stream":true,"stream_options":null,"n":1}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true},"n":1}"#,
            ),
        ];
        for (before, after) in cases {
            assert_eq!(injected(before), after);
            check_minimal(before, after);
        }
    }

    #[test]
    fn include_usage_false_or_null_becomes_true() {
        let cases = [
            (
                r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            ),
            (
                r#"{"stream":true,"stream_options":{ "include_usage" : null , "x":1}}"#,
                r#"{"stream":true,"stream_options":{ "include_usage" : true , "x":1}}"#,
            ),
            (
                r#"{"stream":true,"stream_options":{"include_\u0075sage":false}}"#,
                r#"{"stream":true,"stream_options":{"include_\u0075sage":true}}"#,
            ),
        ];
        for (before, after) in cases {
            assert_eq!(injected(before), after);
            check_minimal(before, after);
        }
    }

    #[test]
    fn untouched_requests() {
        for body in [
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"stream_options":{"include_usage":true},"stream":true}"#,
            r#"{"stream":true,"stream_options":{"x":[1],"include_usage":true}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#,
        ] {
            assert_eq!(
                rewrite_request(body.as_bytes()),
                Rewrite::ClientAsked,
                "{body}"
            );
        }
        for body in [
            r#"{"model":"m","messages":[]}"#,
            r#"{"stream":false}"#,
            r#"{"stream":null}"#,
            r#"{"stream":false,"stream_options":{"include_usage":true}}"#,
            // Not a stream: stream_options is not looked at.
            r#"{"stream":false,"stream_options":7}"#,
            "{}",
        ] {
            assert_eq!(
                rewrite_request(body.as_bytes()),
                Rewrite::NotStreaming,
                "{body}"
            );
        }
    }

    #[test]
    fn escaped_keys_are_keys() {
        let body = r#"{"stre\u0061m":true,"\u0073tream_options":{}}"#;
        assert_eq!(
            injected(body),
            r#"{"stre\u0061m":true,"\u0073tream_options":{"include_usage":true}}"#
        );
        // A key that only looks like one inside a string value does not count.
        let body = r#"{"content":"\"stream\":true","stream":true}"#;
        assert_eq!(
            injected(body),
            r#"{"content":"\"stream\":true","stream":true,"stream_options":{"include_usage":true}}"#
        );
        // Nested `stream` keys are not the request's.
        let body = r#"{"metadata":{"stream":true}}"#;
        assert_eq!(rewrite_request(body.as_bytes()), Rewrite::NotStreaming);
        let body = r#"{"stream":true,"x":{"stream_options":{"include_usage":true}}}"#;
        assert!(rewrite_request(body.as_bytes()).hides_usage_chunk());
    }

    #[test]
    fn skips_say_why() {
        let cases: &[(&[u8], Skip)] = &[
            (b"", Skip::InvalidJson),
            (b"{\"stream\":true", Skip::InvalidJson),
            (b"{\"stream\":true}}", Skip::InvalidJson),
            (b"{\"stream\":true} x", Skip::InvalidJson),
            (b"[{\"stream\":true}]", Skip::InvalidJson),
            (b"{\"stream\":true,}", Skip::InvalidJson),
            (b"{\"stream\":true,\"m\":\"\xff\"}", Skip::InvalidJson),
            (b"\xef\xbb\xbf{\"stream\":true}", Skip::InvalidJson),
            (b"{\"stream\":\"true\"}", Skip::StreamNotBool),
            (b"{\"stream\":1}", Skip::StreamNotBool),
            (b"{\"stream\":true,\"stream\":true}", Skip::DuplicateKey),
            (b"{\"stream\":true,\"stre\\u0061m\":false}", Skip::DuplicateKey),
            (
                b"{\"stream\":true,\"stream_options\":{},\"stream_options\":{}}",
                Skip::DuplicateKey,
            ),
            (
                b"{\"stream\":true,\"stream_options\":{\"include_usage\":false,\"include_usage\":true}}",
                Skip::DuplicateKey,
            ),
            (b"{\"stream\":true,\"stream_options\":[]}", Skip::StreamOptionsNotObject),
            (b"{\"stream\":true,\"stream_options\":\"x\"}", Skip::StreamOptionsNotObject),
            (b"{\"stream\":true,\"stream_options\":true}", Skip::StreamOptionsNotObject),
            (
                b"{\"stream\":true,\"stream_options\":{\"include_usage\":\"true\"}}",
                Skip::IncludeUsageNotBool,
            ),
            (
                b"{\"stream\":true,\"stream_options\":{\"include_usage\":1}}",
                Skip::IncludeUsageNotBool,
            ),
            (
                b"{\"stream\":true,\"stream_options\":{\"continuous_usage_stats\":true}}",
                Skip::ContinuousUsageStats,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                rewrite_request(body),
                Rewrite::Skipped(*want),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Duplicates elsewhere do not matter.
        assert!(rewrite_request(br#"{"model":"a","model":"b","stream":true}"#).hides_usage_chunk());
        let c = br#"{"stream":true,"stream_options":{"continuous_usage_stats":false}}"#;
        assert!(rewrite_request(c).hides_usage_chunk());
    }

    #[test]
    fn large_and_deep_bodies() {
        let big = format!(
            r#"{{"messages":[{{"content":"{}"}}],"stream":true}}"#,
            "x".repeat(1 << 20)
        );
        let out = injected(&big);
        assert_eq!(
            out.len(),
            big.len() + r#","stream_options":{"include_usage":true}"#.len()
        );
        let deep = format!(
            r#"{{"x":{}0{},"stream":true}}"#,
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        assert!(rewrite_request(deep.as_bytes()).hides_usage_chunk());
    }
}
