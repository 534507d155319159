//! The configuration document as written, read by `serde` + `serde_json`.
//!
//! Why derived `Deserialize` and not a hand-written reader: the rules a user relies on
//! (unknown fields refused, a repeated field refused, `null` as "absent" only where a field
//! is optional, integers that must fit their type) are serde's own, and every error carries
//! the line and column `serde_json` reports, and the field path of the value at that
//! position (`routes[0].provider: unknown provider "x" … at line 3 column 24`), which
//! [`path_at`] tracks over the document's tokens up to the error. Values with a vocabulary (profile, tag format, provider, dimension source,
//! tag and metric names) are checked while they are read, so their errors carry the
//! position too; only checks across fields (a tag used twice) are made afterwards and name
//! the field without a position.
//!
//! `prices` and `token_limits` are kept as the raw JSON text of their value and handed to
//! `llm-usage-cost` (`PriceTable::from_json`, `Budgets::from_json`), which owns their
//! shape and rules: the CLI and the tower layer read the same files the same way. Their
//! errors name the value's line and column in the configuration, then the position inside
//! the value.

use std::fmt;

use llm_usage_core::Provider;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::{MetricKind, Profile, Source, TagFormat};

/// The whole document. Every field is optional; `deny_unknown_fields` turns a typo into an
/// error naming the field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a configuration object")]
pub(crate) struct RawConfig<'a> {
    pub profile: Option<ProfileName>,
    pub tag_format: Option<TagFormatName>,
    /// Absent: `None`; `null`: `Some(None)` (filter state off).
    #[serde(default, deserialize_with = "present")]
    pub property_prefix: Option<Option<String>>,
    #[serde(default)]
    pub metrics: MetricNames,
    pub dimensions: Option<Vec<RawDimension>>,
    #[serde(default)]
    pub extra_dimensions: Vec<RawDimension>,
    pub token_type_tag: Option<Tag>,
    pub provider: Option<ProviderName>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub default_model: Option<String>,
    #[serde(default)]
    pub model_rules: Vec<RawModelRule>,
    pub models: Option<RawModels>,
    pub max_label_values: Option<usize>,
    pub max_label_len: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub inject_include_usage: Option<bool>,
    pub max_inject_body_bytes: Option<u64>,
    /// The price table (`llm-usage-cost`'s JSON), read by `PriceTable::from_json`.
    #[serde(borrow)]
    pub prices: Option<&'a RawValue>,
    /// The token limits (`llm-usage-cost`'s JSON list), read by `Budgets::from_json`.
    #[serde(borrow)]
    pub token_limits: Option<&'a RawValue>,
}

/// `Some(value)` for a field that is present, `null` included.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `"asm"` or `"otel"`.
pub(crate) struct ProfileName(pub Profile);

impl<'de> Deserialize<'de> for ProfileName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match checked(d, |p| match p {
            "asm" => Ok(Word::Profile(Profile::Asm)),
            "otel" => Ok(Word::Profile(Profile::Otel)),
            _ => Err(format!(
                "unknown profile {p:?}; expected \"asm\" or \"otel\""
            )),
        })? {
            Word::Profile(p) => Ok(ProfileName(p)),
            _ => Err(mismatch()),
        }
    }
}

/// `"pipe"` or `"istio"`.
pub(crate) struct TagFormatName(pub TagFormat);

impl<'de> Deserialize<'de> for TagFormatName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match checked(d, |t| match t {
            "pipe" => Ok(Word::Format(TagFormat::Pipe)),
            "istio" => Ok(Word::Format(TagFormat::Istio)),
            _ => Err(format!(
                "unknown tag format {t:?}; expected \"pipe\" or \"istio\""
            )),
        })? {
            Word::Format(f) => Ok(TagFormatName(f)),
            _ => Err(mismatch()),
        }
    }
}

/// What a string with a vocabulary reads as: one type for every such string, so that
/// serde_json's string reader is instantiated once for all of them (each visitor type of
/// its own cost about a kilobyte of the module).
enum Word {
    Profile(Profile),
    Format(TagFormat),
    Provider(Provider),
    Tag(String),
    Source(Source),
    Metric(MetricKind),
}

/// A string checked by `check` as it is read. The check runs in the visitor serde_json
/// calls for the string, so its error gets the string's position (an error returned after
/// `deserialize` would get the position of the end of the enclosing object).
fn checked<'de, D: Deserializer<'de>>(
    d: D,
    check: fn(&str) -> Result<Word, String>,
) -> Result<Word, D::Error> {
    struct Check(fn(&str) -> Result<Word, String>);
    impl Visitor<'_> for Check {
        type Value = Word;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Word, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Check(check))
}

/// A check that gave another kind of word than its caller reads (no check does).
fn mismatch<E: de::Error>() -> E {
    E::custom("a value of another kind")
}

/// A provider family name (`Provider::from_name`: `openai`, `qwen`, `bedrock`, ...).
pub(crate) struct ProviderName(pub Provider);

impl<'de> Deserialize<'de> for ProviderName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match checked(d, |name| {
            Provider::from_name(name)
                .map(Word::Provider)
                .ok_or_else(|| {
                    let known: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
                    format!(
                        "unknown provider {name:?}; expected one of {}",
                        known.join(", ")
                    )
                })
        })? {
            Word::Provider(p) => Ok(ProviderName(p)),
            _ => Err(mismatch()),
        }
    }
}

/// A tag name: `[A-Za-z0-9_]+` (it goes into a stat name and a `stats_tags` regex).
pub(crate) struct Tag(pub String);

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match checked(d, |t| {
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                Ok(Word::Tag(t.to_owned()))
            } else {
                Err(format!("tag {t:?} must match [A-Za-z0-9_]+"))
            }
        })? {
            Word::Tag(t) => Ok(Tag(t)),
            _ => Err(mismatch()),
        }
    }
}

/// A dimension source (`model`, `header:<name>`, ...).
pub(crate) struct SourceName(pub Source);

impl<'de> Deserialize<'de> for SourceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match checked(d, |s| Source::parse(s).map(Word::Source))? {
            Word::Source(s) => Ok(SourceName(s)),
            _ => Err(mismatch()),
        }
    }
}

/// A metric name, `null` or `""` to drop the metric.
pub(crate) struct MetricName(pub Option<String>);

impl<'de> Deserialize<'de> for MetricName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MetricName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metric name or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<MetricName, E> {
                Ok(MetricName(None))
            }
            fn visit_str<E: de::Error>(self, n: &str) -> Result<MetricName, E> {
                if n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                {
                    Ok(MetricName(Some(n.to_owned()).filter(|n| !n.is_empty())))
                } else {
                    Err(E::custom(format_args!(
                        "{n:?} is not a valid name (use [A-Za-z0-9_.])"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A key of `metrics`: a metric kind.
struct MetricKey(MetricKind);

impl<'de> Deserialize<'de> for MetricKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match checked(d, |key| {
            MetricKind::from_key(key).map(Word::Metric).ok_or_else(|| {
                format!(
                    "unknown key {key:?}; expected one of {}",
                    MetricKind::keys()
                )
            })
        })? {
            Word::Metric(k) => Ok(MetricKey(k)),
            _ => Err(mismatch()),
        }
    }
}

/// The `metrics` object: kind → name, in document order; of a repeated key the last one
/// counts. (A Vec, not a map: tens of entries at most.)
#[derive(Default)]
pub(crate) struct MetricNames(pub Vec<(MetricKind, Option<String>)>);

impl<'de> Deserialize<'de> for MetricNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetricNames;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of metric kinds to names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetricNames, A::Error> {
                let mut out = Vec::new();
                while let Some(MetricKey(kind)) = map.next_key()? {
                    let MetricName(name) = map.next_value()?;
                    out.push((kind, name));
                }
                Ok(MetricNames(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `{"tag": "...", "from": "<source>"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDimension {
    pub tag: Tag,
    pub from: SourceName,
}

/// One entry of `routes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub path_prefix: Option<String>,
    pub authority: Option<String>,
    pub provider: Option<ProviderName>,
    pub default_model: Option<String>,
    pub inject_include_usage: Option<bool>,
}

/// One entry of `model_rules`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModelRule {
    pub header: String,
    pub equals: Option<String>,
    pub model: String,
}

/// `models`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModels {
    #[serde(default)]
    pub allow: Vec<String>,
    pub max_distinct: Option<usize>,
    pub other: Option<String>,
}

/// Reads the document: errors as `<field path>: <serde_json's message with line and
/// column>` (no path for an error at the top level).
///
/// The document is read as a `str` (after a UTF-8 check, which JSON requires anyway), like
/// `llm-usage-cost` reads its tables: one instantiation of serde_json's reader in the
/// module instead of two (about 10 KB).
pub(crate) fn read(bytes: &[u8]) -> Result<RawConfig<'_>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(bytes, e.valid_up_to());
        format!("invalid UTF-8 at line {line} column {column}")
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    RawConfig::deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| match path_at(bytes, e.line(), e.column()) {
            p if p.is_empty() => e.to_string(),
            p => format!("{p}: {e}"),
        })
}

/// The field path (`routes[0].provider`) of the value that ends at `line`:`column` (as
/// serde_json reports an error: just after the token it was reading).
///
/// The path is tracked over the document's tokens before that point, which serde_json
/// has already read as valid JSON: `{`/`[` open a level, `}`/`]` close one, a string
/// followed by `:` is the current key, a `,` in an array moves to the next index. This
/// runs only for an error, over a configuration document; it reads no values (serde does).
/// (Tracking the path while deserializing, as `serde_path_to_error` does, wraps every
/// visitor: 27 KB of the module, against this function's few hundred bytes.)
fn path_at(document: &[u8], line: usize, column: usize) -> String {
    // The byte offset of the error: `column` bytes into line `line`.
    let mut start = 0;
    for _ in 1..line {
        match document[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    let end = (start + column).min(document.len());
    enum Level<'a> {
        Object(Option<&'a [u8]>),
        Array(usize),
    }
    let mut stack: Vec<Level> = Vec::new();
    let mut last_string: Option<&[u8]> = None;
    let mut i = 0;
    while i < end {
        match document[i] {
            b'"' => {
                let from = i + 1;
                i = from;
                while i < document.len() && document[i] != b'"' {
                    i += if document[i] == b'\\' { 2 } else { 1 };
                }
                last_string = document.get(from..i.min(document.len()));
            }
            b':' => {
                if let Some(Level::Object(key)) = stack.last_mut() {
                    *key = last_string;
                }
            }
            b',' => match stack.last_mut() {
                Some(Level::Array(n)) => *n += 1,
                Some(Level::Object(key)) => *key = None,
                None => {}
            },
            b'{' => stack.push(Level::Object(None)),
            b'[' => stack.push(Level::Array(0)),
            b'}' | b']' => {
                // A closed container stays in the path until its parent moves on: an
                // error just after `}` (a missing field) is about that object.
                if i + 1 < end {
                    stack.pop();
                } else if let Some(Level::Object(key)) = stack.last_mut() {
                    *key = None;
                }
            }
            _ => {}
        }
        i += 1;
    }
    // A key read but not yet followed by `:` (an unknown field) is the path's last part.
    if let (Some(Level::Object(key @ None)), Some(s)) = (stack.last_mut(), last_string) {
        if document[..end].trim_ascii_end().ends_with(b"\"") {
            *key = Some(s);
        }
    }
    let mut path = String::new();
    for level in &stack {
        match level {
            Level::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&String::from_utf8_lossy(key));
            }
            Level::Object(None) => {}
            Level::Array(n) => {
                path.push('[');
                path.push_str(&n.to_string());
                path.push(']');
            }
        }
    }
    path
}

/// Line and column (1-based, columns in bytes) of `value` inside `document`, which it
/// borrows from: where a `prices` or `token_limits` error starts.
pub(crate) fn position(document: &[u8], value: &RawValue) -> (usize, usize) {
    let offset = (value.get().as_ptr() as usize).saturating_sub(document.as_ptr() as usize);
    line_column(document, offset)
}

/// Line and column (1-based, columns in bytes) of byte `offset` of `document`.
fn line_column(document: &[u8], offset: usize) -> (usize, usize) {
    let before = &document[..offset.min(document.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
    (line, column)
}
