//! The configuration document as a JSON tree, and typed reads from it with errors that name
//! the field.
//!
//! `serde_json` parses the document through one small [`Visitor`] into [`Json`]; the
//! configuration is then read from the tree by hand (`config.rs`). Derived `Deserialize`
//! impls for the configuration structs cost about 80 KB of the 433 KB module (one
//! monomorphised visitor per struct and field type, and the float formatting of serde's
//! "invalid type: floating point …" errors), against the 300 KiB budget of issue 6.
//!
//! Reads follow what the derived impls with `deny_unknown_fields` accepted: unknown and
//! repeated keys are errors, `null` is "absent" only where the field is optional, integers
//! must fit their type (`usize` is 32 bits in wasm32).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

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
    /// Any other number: only ever a type error here, so the value is not kept.
    Float,
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object.
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::UInt(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(if v < 0 {
            Json::NegInt(v)
        } else {
            Json::UInt(v as u64)
        })
    }

    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Float)
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Json::Object(entries))
    }
}

/// Parses a JSON document (syntax errors are `serde_json`'s, with line and column).
pub fn parse(bytes: &[u8]) -> Result<Json, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
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
