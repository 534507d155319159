//! The price table: users' JSON, read strictly, and the model lookup.
//!
//! The shape is the one users write (issue 17):
//!
//! ```json
//! {"currency": "USD", "per_tokens": 1000000,
//!  "models": {"gpt-4o*": {"input": 2.5, "cached_input": 1.25, "output": 10.0},
//!             "text-embedding-3-large": {"input": 0.13}}}
//! ```
//!
//! Reading is strict because a price table fails silently otherwise: a misspelt field
//! (`"cache_input"`) would bill cache reads at the full input price, a duplicated key
//! would keep one of two prices unseen, a price finer than a nano-unit would be rounded.
//! Each of those is an error naming the model and the field.
//!
//! Entries stay in a `Vec` in the file's order: a table has tens of entries, a linear
//! lookup over them costs less than hashing, and the crate stays free of `HashMap` (it runs
//! in the proxy-wasm filter too).

use crate::amount::{parse_price_nanos, PriceTextError};
use core::fmt;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The prices of one model entry, each in nano-units of the table's currency per
/// `per_tokens` tokens (per request for [`web_search_request`](Prices::web_search_request)).
///
/// `input` is required; every other price is optional. A part of the input or output
/// without its own price is billed at its parent's price (see [`crate::price`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// Uncached input tokens (and every input part without its own price).
    #[serde(default, deserialize_with = "de_price")]
    pub input: Option<u64>,
    /// Input tokens read from the provider's cache.
    #[serde(default, deserialize_with = "de_price")]
    pub cached_input: Option<u64>,
    /// Input tokens written to the provider's cache (Anthropic: the 5-minute writes).
    #[serde(default, deserialize_with = "de_price")]
    pub cache_creation_input: Option<u64>,
    /// The part of the cache writes kept for one hour (Anthropic's 1 h TTL).
    #[serde(default, deserialize_with = "de_price")]
    pub cache_creation_1h_input: Option<u64>,
    /// Output tokens, reasoning included. Absent for models that generate no tokens
    /// (embeddings): their output count is then not needed.
    #[serde(default, deserialize_with = "de_price")]
    pub output: Option<u64>,
    /// Audio input tokens.
    #[serde(default, deserialize_with = "de_price")]
    pub input_audio: Option<u64>,
    /// Audio output tokens.
    #[serde(default, deserialize_with = "de_price")]
    pub output_audio: Option<u64>,
    /// Image input tokens.
    #[serde(default, deserialize_with = "de_price")]
    pub input_image: Option<u64>,
    /// Image output tokens.
    #[serde(default, deserialize_with = "de_price")]
    pub output_image: Option<u64>,
    /// One server-side web search, per request (not per `per_tokens`).
    #[serde(default, deserialize_with = "de_price")]
    pub web_search_request: Option<u64>,
}

/// A price is a JSON number, read from its decimal text (never through a float sum).
fn de_price<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    // serde_json prints a float as the shortest text that reads back to it: for every
    // price with up to 15 significant digits, the text the user wrote.
    parse_price_nanos(&n.to_string())
        .map(Some)
        .map_err(|e: PriceTextError| de::Error::custom(format_args!("price {n}: {e}")))
}

/// One entry of the table: the key as written and its prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key: a model name, or a prefix followed by `*`.
    pub key: String,
    /// The prices.
    pub prices: Prices,
}

impl Entry {
    /// The prefix of a `*` key, `None` for an exact key.
    pub fn prefix(&self) -> Option<&str> {
        self.key.strip_suffix('*')
    }
}

/// A price table (see the module docs for its JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    currency: String,
    per_tokens: u64,
    /// `10⁹ / per_tokens`: atto-units per (token × nano-unit price).
    atto_factor: u128,
    entries: Vec<Entry>,
}

/// Why a price table was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError(String);

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "price table: {}", self.0)
    }
}

impl std::error::Error for TableError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    currency: String,
    per_tokens: u64,
    models: Models,
}

struct Models(Vec<Entry>);

impl<'de> Deserialize<'de> for Models {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Models;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of model keys to prices")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Models, A::Error> {
                let mut v: Vec<Entry> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if v.iter().any(|e| e.key == key) {
                        return Err(de::Error::custom(format_args!(
                            "model key {key:?} appears twice"
                        )));
                    }
                    let prices: Prices = map
                        .next_value()
                        .map_err(|e| de::Error::custom(format_args!("model {key:?}: {e}")))?;
                    v.push(Entry { key, prices });
                }
                Ok(Models(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl PriceTable {
    /// Reads a table from its JSON text.
    pub fn from_json(text: &str) -> Result<PriceTable, TableError> {
        let raw: RawTable = serde_json::from_str(text).map_err(|e| TableError(e.to_string()))?;
        let c = raw.currency.as_str();
        if c.is_empty() || c.len() > 16 || !c.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TableError(format!(
                "currency {c:?}: expected a code such as \"USD\""
            )));
        }
        let atto_factor = match raw.per_tokens {
            p @ (1 | 10 | 100 | 1_000 | 10_000 | 100_000 | 1_000_000 | 10_000_000 | 100_000_000
            | 1_000_000_000) => u128::from(1_000_000_000 / p),
            p => {
                return Err(TableError(format!(
                    "per_tokens {p}: expected a power of ten from 1 to 1000000000"
                )))
            }
        };
        for e in &raw.models.0 {
            if e.key.is_empty() || e.key.len() > 256 {
                return Err(TableError(format!(
                    "model key {:?}: expected 1 to 256 bytes",
                    e.key
                )));
            }
            if e.key.trim_end_matches('*').contains('*') || e.key.ends_with("**") {
                return Err(TableError(format!(
                    "model key {:?}: '*' may only end a key",
                    e.key
                )));
            }
            if e.prices.input.is_none() {
                return Err(TableError(format!(
                    "model {:?}: \"input\" is required",
                    e.key
                )));
            }
        }
        Ok(PriceTable {
            currency: raw.currency,
            per_tokens: raw.per_tokens,
            atto_factor,
            entries: raw.models.0,
        })
    }

    /// The currency code, as written.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// How many tokens a price is for.
    pub fn per_tokens(&self) -> u64 {
        self.per_tokens
    }

    /// The entries, in the file's order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Atto-units per token per nano-unit of a per-`per_tokens` price.
    pub(crate) fn atto_factor(&self) -> u128 {
        self.atto_factor
    }

    /// The entry pricing `model`: the exact key if there is one, else the `*` key with
    /// the longest prefix of `model`, else `None` (no price: a lookup miss).
    pub fn lookup(&self, model: &str) -> Option<&Entry> {
        if let Some(e) = self.entries.iter().find(|e| e.key == model) {
            return Some(e);
        }
        self.entries
            .iter()
            .filter(|e| e.prefix().is_some_and(|p| model.starts_with(p)))
            .max_by_key(|e| e.key.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE: &str = r#"{"currency": "USD", "per_tokens": 1000000, "models": {"gpt-4o*": {"input": 2.5, "cached_input": 1.25,
  "output": 10.0}, "claude-sonnet-4-5*": {"input": 3.0, "cached_input": 0.3, "cache_creation_input": 3.75,
  "cache_creation_1h_input": 6.0, "output": 15.0}, "text-embedding-3-large": {"input": 0.13}}}"#;

    #[test]
    fn the_issue_table_reads() {
        let t = PriceTable::from_json(ISSUE).unwrap();
        assert_eq!(t.currency(), "USD");
        assert_eq!(t.per_tokens(), 1_000_000);
        let keys: Vec<&str> = t.entries().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["gpt-4o*", "claude-sonnet-4-5*", "text-embedding-3-large"]
        );
        let s = &t.entries()[1].prices;
        assert_eq!(s.cache_creation_1h_input, Some(6_000_000_000));
        assert_eq!(s.cached_input, Some(300_000_000));
        assert_eq!(t.entries()[2].prices.output, None);
    }

    #[test]
    fn exact_key_wins_then_longest_prefix() {
        let t = PriceTable::from_json(
            r#"{"currency":"USD","per_tokens":1000000,"models":{
                "gpt-4o*":{"input":2.5},"gpt-4o-mini*":{"input":0.15},
                "gpt-4o-mini-2024-07-18":{"input":0.2},"*":{"input":9}}}"#,
        )
        .unwrap();
        let key = |m: &str| t.lookup(m).map(|e| e.key.as_str());
        assert_eq!(
            key("gpt-4o-mini-2024-07-18"),
            Some("gpt-4o-mini-2024-07-18")
        );
        assert_eq!(key("gpt-4o-mini-2025"), Some("gpt-4o-mini*"));
        assert_eq!(key("gpt-4o-2024-08-06"), Some("gpt-4o*"));
        assert_eq!(key("gpt-4o"), Some("gpt-4o*"), "a prefix matches itself");
        assert_eq!(key("claude"), Some("*"));
        let t = PriceTable::from_json(
            r#"{"currency":"USD","per_tokens":1000,"models":{"gpt-4o":{"input":2.5}}}"#,
        )
        .unwrap();
        assert!(
            t.lookup("gpt-4o-2024-08-06").is_none(),
            "an exact key is no prefix"
        );
        assert!(t.lookup("GPT-4O").is_none(), "keys are case-sensitive");
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let err = |s: &str| PriceTable::from_json(s).unwrap_err().to_string();
        let base = |models: &str| {
            format!(r#"{{"currency":"USD","per_tokens":1000000,"models":{{{models}}}}}"#)
        };
        assert!(err(&base(r#""a":{"input":1,"cache_input":2}"#)).contains("cache_input"));
        assert!(err(&base(r#""a":{"input":1},"a":{"input":2}"#)).contains("twice"));
        assert!(err(&base(r#""a":{"input":-1}"#)).contains("not a non-negative"));
        assert!(err(&base(r#""a":{"input":0.0000000001}"#)).contains("9 decimals"));
        assert!(err(&base(r#""a":{"input":"2.5"}"#)).contains("model \"a\""));
        assert!(err(&base(r#""a":{"output":1}"#)).contains("\"input\" is required"));
        assert!(err(&base(r#""a*b":{"input":1}"#)).contains("'*' may only end"));
        assert!(err(&base(r#""":{"input":1}"#)).contains("1 to 256"));
        assert!(err(r#"{"currency":"USD","per_tokens":3,"models":{}}"#).contains("power of ten"));
        assert!(err(r#"{"currency":"","per_tokens":1,"models":{}}"#).contains("currency"));
        assert!(
            err(r#"{"currency":"USD","per_tokens":1,"models":{},"x":1}"#).contains("unknown field")
        );
        assert!(err(r#"{"currency":"USD","models":{}}"#).contains("per_tokens"));
        assert!(err("[1,2").starts_with("price table: "));
    }
}
