//! Label values in stat names: sanitising, encoding, and bounding their number.
//!
//! A metric's dimensions travel inside its Envoy stat name (Envoy has no labels at
//! definition time); bootstrap `stats_tags` regexes cut them out again. Values come partly
//! from clients (model names, headers, the authority), so they are sanitised before they go
//! into a name — a `|`, `=`, `;` or control byte could otherwise end a tag early or forge
//! another one — and the number of distinct values is capped, so that no client can make
//! the proxy allocate unbounded stats.

use std::collections::BTreeMap;

use crate::config::TagFormat;

/// The label value used when a dimension has no value.
pub const UNKNOWN: &str = "unknown";

/// Makes `raw` safe as a tag value inside a stat name.
///
/// Kept: ASCII letters, digits and `-_:/@+~%`, and `.` between two kept characters (model
/// names like `qwen-1.8b-chat` and hosts need it; a leading, trailing or doubled `.` would
/// make an empty element in Envoy's dot-separated stat name). Everything else, including the
/// tag delimiters `|`, `=` and `;`, whitespace, quotes and non-ASCII bytes, becomes `_`. The
/// result is at most `max_len` bytes; an empty input gives [`UNKNOWN`].
pub fn sanitize(raw: &[u8], max_len: usize) -> String {
    let raw = &raw[..raw.len().min(max_len)];
    let mut out = String::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b':' | b'/' | b'@' | b'+' | b'~' | b'%');
        let c = if keep {
            b as char
        } else if b == b'.' {
            let prev_ok = i > 0 && raw[i - 1] != b'.';
            let next_ok = raw.get(i + 1).is_some_and(|&n| n != b'.');
            if prev_ok && next_ok {
                '.'
            } else {
                '_'
            }
        } else {
            '_'
        };
        out.push(c);
    }
    if out.is_empty() {
        out.push_str(UNKNOWN);
    }
    out
}

/// Builds the stat name for `name` with `tags` (already sanitised) in `format`.
///
/// - with [`TagFormat::Pipe`], `name|tag1=v1|tag2=v2`;
/// - with [`TagFormat::Istio`], `tag1=.=v1;.;tag2=.=v2;.;name`.
pub fn stat_name(format: TagFormat, name: &str, tags: &[(&str, &str)]) -> String {
    let len = name.len()
        + tags
            .iter()
            .map(|(t, v)| t.len() + v.len() + 6)
            .sum::<usize>();
    let mut s = String::with_capacity(len);
    match format {
        TagFormat::Pipe => {
            s.push_str(name);
            for (t, v) in tags {
                s.push('|');
                s.push_str(t);
                s.push('=');
                s.push_str(v);
            }
        }
        TagFormat::Istio => {
            for (t, v) in tags {
                s.push_str(t);
                s.push_str("=.=");
                s.push_str(v);
                s.push_str(";.;");
            }
            s.push_str(name);
        }
    }
    s
}

/// Admits at most `cap` distinct values (plus an optional allow-list); the rest map to
/// `other`.
#[derive(Debug, Clone)]
pub struct Limiter {
    allow: Vec<String>,
    cap: usize,
    /// The admitted values. (A map to an unused `u32` rather than a set: the filter's metric
    /// ids are a `BTreeMap<String, u32>` too, so both share one copy of the map code.)
    seen: BTreeMap<String, u32>,
    other: String,
}

impl Limiter {
    /// A limiter with an allow-list (empty: any value) and a cap on distinct values.
    pub fn new(allow: Vec<String>, cap: usize, other: String) -> Limiter {
        Limiter {
            allow,
            cap,
            seen: BTreeMap::new(),
            other,
        }
    }

    /// The label value to use for `value` (already sanitised).
    pub fn admit(&mut self, value: String) -> String {
        if value == UNKNOWN {
            return value;
        }
        if !self.allow.is_empty() && !self.allow.contains(&value) {
            return self.other.clone();
        }
        if self.seen.contains_key(&value) {
            return value;
        }
        if self.seen.len() >= self.cap {
            return self.other.clone();
        }
        self.seen.insert(value.clone(), 0);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_ordinary_names() {
        for ok in [
            "qwen-1.8b-chat",
            "dashscope.aliyuncs.com",
            "gpt-4o-2024-08-06",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            "models/gemini-2.0-flash",
            "sleep",
        ] {
            assert_eq!(sanitize(ok.as_bytes(), 128), ok);
        }
    }

    #[test]
    fn sanitize_defuses_delimiters() {
        assert_eq!(
            sanitize(b"x|llmproxy_model=evil", 128),
            "x_llmproxy_model_evil"
        );
        assert_eq!(sanitize(b"a;.;b=.=c", 128), "a_._b_._c");
        assert_eq!(sanitize(b"line\nbreak\r\t\"q\"\\", 128), "line_break___q__");
        assert_eq!(sanitize(b".lead..dots.", 128), "_lead__dots_");
        assert_eq!(sanitize("modèle".as_bytes(), 128), "mod__le");
        assert_eq!(sanitize(b"", 128), UNKNOWN);
        assert_eq!(sanitize(b"abcdef", 3), "abc");
        assert_eq!(sanitize(b"ab.c", 3), "ab_");
    }

    #[test]
    fn stat_names() {
        let tags = [
            ("llmproxy_source_workload", "sleep"),
            ("llmproxy_model", "qwen-turbo"),
        ];
        assert_eq!(
            stat_name(TagFormat::Pipe, "asm_llm_proxy_prompt_tokens", &tags),
            "asm_llm_proxy_prompt_tokens|llmproxy_source_workload=sleep|llmproxy_model=qwen-turbo"
        );
        assert_eq!(
            stat_name(TagFormat::Istio, "llm_tokens", &tags),
            "llmproxy_source_workload=.=sleep;.;llmproxy_model=.=qwen-turbo;.;llm_tokens"
        );
        assert_eq!(stat_name(TagFormat::Pipe, "n", &[]), "n");
    }

    #[test]
    fn limiter_caps_and_allows() {
        let mut l = Limiter::new(vec![], 2, "other".into());
        assert_eq!(l.admit("a".into()), "a");
        assert_eq!(l.admit("b".into()), "b");
        assert_eq!(l.admit("c".into()), "other");
        assert_eq!(l.admit("a".into()), "a");
        assert_eq!(l.admit(UNKNOWN.into()), UNKNOWN);
        let mut l = Limiter::new(vec!["gpt-4o".into()], 10, "other".into());
        assert_eq!(l.admit("gpt-4o".into()), "gpt-4o");
        assert_eq!(l.admit("gpt-5".into()), "other");
    }
}
