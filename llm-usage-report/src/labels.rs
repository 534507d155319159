//! Label values: cleaning client-chosen text, and bounding how many distinct values a
//! label takes.
//!
//! Label values come partly from clients (model names, headers, the authority). A metrics
//! backend keeps one series per distinct label set, so a client that can choose values
//! could make the process allocate without bound: every such label goes through a
//! [`Limiter`], which admits an allow-list and the first values up to a cap and reports the
//! rest as [`OTHER`]. Values are also cut to a bounded length and stripped of what would
//! break the sink: [`clean`] for label systems (the `metrics` facade), [`sanitize_tag`]
//! for Envoy, where a tag travels inside the stat name and a `|`, `=` or `;` could end it
//! early or forge another.

/// The label value used when a value is not known.
pub const UNKNOWN: &str = "unknown";
/// The label value used for a value past the allow-list and the cap.
pub const OTHER: &str = "other";
/// Longest label value kept by default; longer client-chosen values are cut.
pub const MAX_LABEL_LEN: usize = 128;

/// Cuts `v` to at most `max_len` bytes (on a char boundary) and replaces control
/// characters with `_`.
///
/// ```
/// assert_eq!(llm_usage_report::labels::clean("a\nb\u{0}", 128), "a_b_");
/// ```
pub fn clean(v: &str, max_len: usize) -> String {
    let mut end = v.len().min(max_len);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v[..end]
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect()
}

/// Makes `raw` safe as a tag value inside an Envoy stat name.
///
/// Kept: ASCII letters, digits and `-_:/@+~%`, and `.` between two kept characters (model
/// names like `qwen-1.8b-chat` and hosts need it; a leading, trailing or doubled `.` would
/// make an empty element in Envoy's dot-separated stat name). Everything else, including the
/// tag delimiters `|`, `=` and `;`, whitespace, quotes and non-ASCII bytes, becomes `_`. The
/// result is at most `max_len` bytes; an empty input gives [`UNKNOWN`].
///
/// ```
/// use llm_usage_report::labels::sanitize_tag;
/// assert_eq!(sanitize_tag(b"x|llmproxy_model=evil", 128), "x_llmproxy_model_evil");
/// assert_eq!(sanitize_tag(b"qwen-1.8b-chat", 128), "qwen-1.8b-chat");
/// ```
pub fn sanitize_tag(raw: &[u8], max_len: usize) -> String {
    let mut out = String::with_capacity(raw.len().min(max_len));
    sanitize_tag_into(raw, max_len, &mut out);
    out
}

/// [`sanitize_tag`] into `out`, replacing what it held: the same value, written into a
/// buffer the caller keeps (no allocation once it has the room).
///
/// ```
/// use llm_usage_report::labels::sanitize_tag_into;
/// let mut out = String::from("a longer old value");
/// sanitize_tag_into(b"x|y", 128, &mut out);
/// assert_eq!(out, "x_y");
/// ```
pub fn sanitize_tag_into(raw: &[u8], max_len: usize, out: &mut String) {
    let raw = &raw[..raw.len().min(max_len)];
    out.clear();
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
}

/// A bound on the distinct values of a label: an allow-list, whose values are always
/// kept, and at most `max_others` further distinct values, first come (`None`: no bound).
/// Values past both are reported as the limiter's `other` value. [`UNKNOWN`] is always
/// kept and never counted.
///
/// Not synchronised: a frontend shared across threads puts it behind its own lock.
///
/// ```
/// use llm_usage_report::labels::{Limiter, OTHER};
///
/// let mut l = Limiter::new(vec!["gpt-4o".into()], Some(1));
/// assert!(l.admit("gpt-4o"));
/// assert!(l.admit("claude-sonnet-4"));
/// assert!(!l.admit("qwen-turbo"));
/// assert_eq!(l.label("qwen-turbo"), OTHER);
/// assert_eq!(l.label("gpt-4o"), "gpt-4o");
/// ```
#[derive(Debug, Clone)]
pub struct Limiter {
    allow: Vec<String>,
    max_others: Option<usize>,
    /// The admitted values, sorted: a binary search to find one, an insertion (a move of
    /// at most `max_others` pointers) for each admitted value, and much less code in the
    /// `.wasm` than a `BTreeSet`.
    seen: Vec<String>,
    other: String,
}

impl Limiter {
    /// A limiter keeping `allow` and at most `max_others` other values.
    pub fn new(allow: Vec<String>, max_others: Option<usize>) -> Limiter {
        Limiter {
            allow,
            max_others,
            seen: Vec::new(),
            other: OTHER.to_owned(),
        }
    }

    /// Reports values past the bound as `other` instead of [`OTHER`].
    pub fn other_value(mut self, other: impl Into<String>) -> Limiter {
        self.other = other.into();
        self
    }

    /// Whether `value` keeps its own label value (admitting it if there is room).
    pub fn admit(&mut self, value: &str) -> bool {
        if value == UNKNOWN || self.allow.iter().any(|a| a == value) {
            return true;
        }
        let Some(max) = self.max_others else {
            return true;
        };
        match self.seen.binary_search_by(|s| s.as_str().cmp(value)) {
            Ok(_) => true,
            Err(at) if self.seen.len() < max => {
                self.seen.insert(at, value.to_owned());
                true
            }
            Err(_) => false,
        }
    }

    /// The label value to use for `value`: itself, or the `other` value.
    pub fn label(&mut self, value: &str) -> String {
        if self.admit(value) {
            value.to_owned()
        } else {
            self.other.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_cuts_on_a_char_boundary_and_replaces_controls() {
        let long = "é".repeat(100);
        let c = clean(&long, MAX_LABEL_LEN);
        assert!(c.len() <= MAX_LABEL_LEN && c.chars().all(|ch| ch == 'é'));
        assert_eq!(c.len(), 128);
        assert_eq!(clean("a\nb\u{0}", MAX_LABEL_LEN), "a_b_");
    }

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
            assert_eq!(sanitize_tag(ok.as_bytes(), 128), ok);
        }
    }

    #[test]
    fn sanitize_defuses_delimiters() {
        assert_eq!(
            sanitize_tag(b"x|llmproxy_model=evil", 128),
            "x_llmproxy_model_evil"
        );
        assert_eq!(sanitize_tag(b"a;.;b=.=c", 128), "a_._b_._c");
        assert_eq!(
            sanitize_tag(b"line\nbreak\r\t\"q\"\\", 128),
            "line_break___q__"
        );
        assert_eq!(sanitize_tag(b".lead..dots.", 128), "_lead__dots_");
        assert_eq!(sanitize_tag("modèle".as_bytes(), 128), "mod__le");
        assert_eq!(sanitize_tag(b"", 128), UNKNOWN);
        assert_eq!(sanitize_tag(b"abcdef", 3), "abc");
        assert_eq!(sanitize_tag(b"ab.c", 3), "ab_");
    }

    #[test]
    fn sanitize_into_a_used_buffer_equals_sanitize() {
        let inputs: [&[u8]; 9] = [
            b"qwen-1.8b-chat",
            b"x|llmproxy_model=evil",
            b".lead..dots.",
            "modèle".as_bytes(),
            b"",
            b"abcdef",
            b"ab.c",
            b"a;.;b=.=c",
            b"line\nbreak\r\t\"q\"\\",
        ];
        let mut out = String::from("left over from before");
        for raw in inputs {
            for max in [0, 1, 3, 128] {
                sanitize_tag_into(raw, max, &mut out);
                assert_eq!(out, sanitize_tag(raw, max), "{raw:?} {max}");
            }
        }
    }

    #[test]
    fn limiter_admits_first_values_then_other() {
        let mut l = Limiter::new(Vec::new(), Some(2));
        assert_eq!(l.label("a"), "a");
        assert_eq!(l.label("b"), "b");
        assert_eq!(l.label("c"), OTHER);
        assert_eq!(l.label("a"), "a");
        assert_eq!(l.label(UNKNOWN), UNKNOWN);
    }

    #[test]
    fn allow_list_alone_with_cap_and_unbounded() {
        let mut only = Limiter::new(vec!["x".into()], Some(0)).other_value("rest");
        assert_eq!(only.label("x"), "x");
        assert_eq!(only.label("y"), "rest");
        let mut both = Limiter::new(vec!["x".into()], Some(1));
        assert_eq!(both.label("y"), "y");
        assert_eq!(both.label("z"), OTHER);
        assert_eq!(both.label("x"), "x");
        let mut free = Limiter::new(Vec::new(), None);
        assert!((0..1000).all(|i| free.admit(&i.to_string())));
    }
}
