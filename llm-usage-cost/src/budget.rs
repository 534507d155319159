//! Token budgets: rate limits charged in tokens (or cost), the same in every frontend.
//!
//! A [`Limit`] says: per value of a key (an API key header, the model, the source
//! workload, ...), at most `tokens` of what it `count`s per window of `window_s` seconds.
//! This module holds the semantics as data and arithmetic; the counters live in a
//! [`BudgetStore`] the frontend brings (proxy-wasm shared data, an in-memory map, Redis).
//!
//! # Windows
//!
//! Windows are fixed and aligned on the Unix epoch: window `n` of a limit covers
//! `[n × window_s, (n + 1) × window_s)` seconds. Every replica and every worker agrees on
//! the window from the clock alone, a counter's key names its window (so an old window's
//! counter is never read again and can simply expire), and `retry-after` is the time to the
//! window's end. A burst straddling a boundary can use up to twice the budget within
//! `window_s` seconds: the price of needing no per-request history.
//!
//! # Checking and charging
//!
//! At the request ([`Budgets::check`]) the frontend asks whether each applicable limit's
//! counter is below its budget; a key already at or over its budget gets the local
//! [`LocalReply`] (`429`). Usage is charged when the response ends ([`Budgets::charge`]),
//! with what the record holds then, estimates and cut streams included. So requests
//! already in flight when a key crosses its budget still complete: the worst-case
//! overshoot of a window is what the requests in flight at that moment use, plus the one
//! that crossed. A request whose key is absent (no such header) is not limited by that
//! limit.
//!
//! # Failing open
//!
//! A store that fails (shared data refused, Redis down) never blocks traffic: the check
//! allows and says how many store errors it met, for the frontend to log (once) and count.
//!
//! # Keys
//!
//! A key's value (an API key!) never reaches the store or a log: the bucket name is the
//! limit's name and a 64-bit FNV-1a hash of the value, in hex. Any bytes are accepted (a
//! 1 MiB header, `|`, newlines): the hash is all that is kept.

use crate::amount::Amount;
use core::fmt;
use llm_usage_core::{Provider, UsageRecord};
use serde::Deserialize;

/// What a limit is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// A request header's value (name lowercased): `header:x-api-key`.
    Header(String),
    /// The request model.
    Model,
    /// The calling workload (the frontend's notion: Istio's source workload, ...).
    SourceWorkload,
    /// The destination service.
    DestinationService,
    /// One budget for all traffic.
    All,
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountKind {
    /// Total tokens (the provider's total, else input + output).
    Total,
    /// Input tokens.
    Input,
    /// Output tokens.
    Output,
    /// Cost in micro-units of the price table's currency (rounded up per exchange).
    CostMicros,
}

/// One limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The limit's name (`[A-Za-z0-9_.-]`, 1 to 64 bytes): in bucket names and replies.
    pub name: String,
    /// What the budget is per.
    pub key: KeySpec,
    /// The budget per window, in the unit of `count`.
    pub tokens: u64,
    /// The window length in seconds.
    pub window_s: u64,
    /// What is charged.
    pub count: CountKind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    name: String,
    key: String,
    tokens: u64,
    window_s: u64,
    #[serde(default = "total")]
    count: CountKind,
}

fn total() -> CountKind {
    CountKind::Total
}

/// Why a limits list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError(String);

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token limits: {}", self.0)
    }
}

impl std::error::Error for LimitError {}

/// The longest window: 31 days.
pub const MAX_WINDOW_S: u64 = 31 * 24 * 3600;

impl KeySpec {
    fn parse(s: &str) -> Option<KeySpec> {
        Some(match s {
            "model" => KeySpec::Model,
            "source_workload" => KeySpec::SourceWorkload,
            "destination_service" => KeySpec::DestinationService,
            "all" => KeySpec::All,
            _ => {
                let name = s.strip_prefix("header:")?.trim();
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                    return None;
                }
                KeySpec::Header(name.to_ascii_lowercase())
            }
        })
    }
}

/// The request facts a key is read from; `None` where the frontend does not know.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyFacts<'a> {
    /// The request headers (names in any case).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The request model.
    pub model: Option<&'a str>,
    /// The source workload.
    pub source_workload: Option<&'a str>,
    /// The destination service.
    pub destination_service: Option<&'a str>,
}

/// The budget counter of one limit for one key value: `<limit name>|<hash hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    /// The limit's index in its [`Budgets`].
    pub limit: usize,
    /// The counter's name, without the window: safe to store and log.
    pub name: String,
}

/// 64-bit FNV-1a: a fixed, portable hash (the same in every frontend and build).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Limit {
    /// The value of this limit's key in a request, `None` when absent.
    pub fn key_value<'a>(&self, facts: &KeyFacts<'a>) -> Option<&'a [u8]> {
        match &self.key {
            KeySpec::Header(name) => facts
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v),
            KeySpec::Model => facts.model.map(str::as_bytes),
            KeySpec::SourceWorkload => facts.source_workload.map(str::as_bytes),
            KeySpec::DestinationService => facts.destination_service.map(str::as_bytes),
            KeySpec::All => Some(b""),
        }
    }

    /// The window number at `now_s` (seconds since the Unix epoch).
    pub fn window(&self, now_s: u64) -> u64 {
        now_s / self.window_s
    }

    /// Seconds from `now_s` to the end of its window (at least 1).
    pub fn retry_after(&self, now_s: u64) -> u64 {
        ((self.window(now_s) + 1) * self.window_s - now_s).max(1)
    }

    /// What an exchange charges this limit: the record's counts, estimates included,
    /// unknown counts as 0 (nothing seen, nothing charged); for `cost_micros` the cost
    /// rounded up to a whole micro-unit (an exchange without a cost charges 0).
    pub fn amount(&self, record: &UsageRecord, cost: Option<Amount>) -> u64 {
        let known = |v: Option<u64>| v.unwrap_or(0);
        match self.count {
            CountKind::Input => known(record.input_tokens),
            CountKind::Output => known(record.output_tokens),
            CountKind::Total => record.total_tokens.unwrap_or_else(|| {
                known(record.input_tokens).saturating_add(known(record.output_tokens))
            }),
            CountKind::CostMicros => cost.map_or(0, |c| {
                let micros = c.attos().div_ceil(1_000_000_000_000);
                u64::try_from(micros).unwrap_or(u64::MAX)
            }),
        }
    }
}

/// A store failure: the check fails open, the charge is lost (and counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "budget store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Where budget counters live. Counters are per (bucket name, window); a counter never
/// read or charged is 0. Implementations must make [`charge`](BudgetStore::charge) atomic
/// (concurrent charges all count: no lost update).
pub trait BudgetStore {
    /// The amount charged so far to `bucket` in `window`.
    fn used(&self, bucket: &str, window: u64) -> Result<u64, StoreError>;
    /// Adds `amount` to `bucket` in `window` and returns the new total; the counter may be
    /// dropped `ttl_s` seconds later (its window is over by then).
    fn charge(&self, bucket: &str, window: u64, amount: u64, ttl_s: u64)
        -> Result<u64, StoreError>;
}

/// One counter increment, for the frontend to apply to its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The bucket's name.
    pub bucket: String,
    /// The window charged.
    pub window: u64,
    /// The amount.
    pub amount: u64,
    /// How long the counter must live, in seconds.
    pub ttl_s: u64,
}

/// A reply the frontend sends instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// The HTTP status: 429.
    pub status: u16,
    /// The headers (lowercase names).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body, shaped like the provider's own rate-limit error.
    pub body: String,
}

/// What the check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward the request; charge these buckets when the response ends.
    Allow {
        /// The buckets that apply to this request.
        buckets: Vec<Bucket>,
        /// Store errors met (each failed open): log once, count.
        store_errors: u32,
    },
    /// Answer locally with this reply.
    Deny {
        /// The limit that is spent.
        limit: usize,
        /// The reply.
        reply: LocalReply,
    },
}

/// The configured limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budgets {
    limits: Vec<Limit>,
}

impl Budgets {
    /// Reads the limits list, e.g.
    /// `[{"name": "per-key", "key": "header:x-api-key", "tokens": 100000, "window_s": 60,
    /// "count": "total"}]` (`count` defaults to `total`).
    pub fn from_json(text: &str) -> Result<Budgets, LimitError> {
        let raw: Vec<RawLimit> =
            serde_json::from_str(text).map_err(|e| LimitError(e.to_string()))?;
        let mut limits = Vec::with_capacity(raw.len());
        for r in raw {
            let n = &r.name;
            if n.is_empty()
                || n.len() > 64
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err(LimitError(format!(
                    "name {n:?}: expected 1 to 64 of [A-Za-z0-9_.-]"
                )));
            }
            if limits.iter().any(|l: &Limit| &l.name == n) {
                return Err(LimitError(format!("name {n:?} appears twice")));
            }
            let key = KeySpec::parse(&r.key).ok_or_else(|| {
                LimitError(format!(
                    "limit {n:?}: key {:?}: expected header:<name>, model, source_workload, \
                     destination_service or all",
                    r.key
                ))
            })?;
            if r.tokens == 0 {
                return Err(LimitError(format!(
                    "limit {n:?}: tokens must be at least 1"
                )));
            }
            if r.window_s == 0 || r.window_s > MAX_WINDOW_S {
                return Err(LimitError(format!(
                    "limit {n:?}: window_s must be 1 to {MAX_WINDOW_S}"
                )));
            }
            limits.push(Limit {
                name: r.name,
                key,
                tokens: r.tokens,
                window_s: r.window_s,
                count: r.count,
            });
        }
        Ok(Budgets { limits })
    }

    /// The limits, in the configured order.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The buckets that apply to a request (limits whose key is present).
    pub fn buckets(&self, facts: &KeyFacts<'_>) -> Vec<Bucket> {
        self.limits
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                l.key_value(facts).map(|v| Bucket {
                    limit: i,
                    name: format!("{}|{:016x}", l.name, fnv1a(v)),
                })
            })
            .collect()
    }

    /// Checks a request at `now_s` against a synchronous store: denies when a bucket's
    /// counter has reached its budget, else allows (also when the store fails: fail open).
    pub fn check(
        &self,
        store: &dyn BudgetStore,
        facts: &KeyFacts<'_>,
        provider: Option<Provider>,
        now_s: u64,
    ) -> Decision {
        let buckets = self.buckets(facts);
        let used: Vec<Result<u64, StoreError>> = buckets
            .iter()
            .map(|b| store.used(&b.name, self.limits[b.limit].window(now_s)))
            .collect();
        self.decide(buckets, &used, provider, now_s)
    }

    /// The decision, given what each bucket has used in its current window (as read by
    /// the frontend from any store, synchronous or not; `used[i]` is `buckets[i]`'s).
    /// The first spent bucket denies; a read that failed counts as a store error and
    /// fails open.
    pub fn decide(
        &self,
        buckets: Vec<Bucket>,
        used: &[Result<u64, StoreError>],
        provider: Option<Provider>,
        now_s: u64,
    ) -> Decision {
        let mut store_errors = 0;
        for (b, u) in buckets.iter().zip(used) {
            match u {
                Ok(used) if *used >= self.limits[b.limit].tokens => {
                    return Decision::Deny {
                        limit: b.limit,
                        reply: self.reply(b.limit, *used, provider, now_s),
                    }
                }
                Ok(_) => {}
                Err(_) => store_errors += 1,
            }
        }
        store_errors += buckets.len().saturating_sub(used.len()) as u32;
        Decision::Allow {
            buckets,
            store_errors,
        }
    }

    /// What a finished exchange charges at `now_s`: one [`Charge`] per bucket with a
    /// non-zero amount, for the frontend to apply to its store.
    pub fn charges(
        &self,
        buckets: &[Bucket],
        record: &UsageRecord,
        cost: Option<Amount>,
        now_s: u64,
    ) -> Vec<Charge> {
        buckets
            .iter()
            .filter_map(|b| {
                let l = self.limits.get(b.limit)?;
                let amount = l.amount(record, cost);
                (amount > 0).then(|| Charge {
                    bucket: b.name.clone(),
                    window: l.window(now_s),
                    amount,
                    // Kept one window past its own: a late reader still sees it.
                    ttl_s: l.retry_after(now_s) + l.window_s,
                })
            })
            .collect()
    }

    /// Charges a finished exchange to a synchronous store at `now_s`. Returns the store
    /// errors met (each charge that failed is lost: fail open).
    pub fn charge(
        &self,
        store: &dyn BudgetStore,
        buckets: &[Bucket],
        record: &UsageRecord,
        cost: Option<Amount>,
        now_s: u64,
    ) -> u32 {
        self.charges(buckets, record, cost, now_s)
            .iter()
            .filter(|c| {
                store
                    .charge(&c.bucket, c.window, c.amount, c.ttl_s)
                    .is_err()
            })
            .count() as u32
    }

    /// The local `429` for limit `limit` with `used` charged, shaped like `provider`'s
    /// own rate-limit error (Anthropic's for Anthropic traffic, Google's for Gemini and
    /// Vertex, OpenAI's otherwise).
    pub fn reply(
        &self,
        limit: usize,
        used: u64,
        provider: Option<Provider>,
        now_s: u64,
    ) -> LocalReply {
        let l = &self.limits[limit];
        let retry = l.retry_after(now_s);
        let unit = if l.count == CountKind::CostMicros {
            "cost micro-units"
        } else {
            "tokens"
        };
        let message = format!(
            "Token budget {:?} exhausted: {used} of {} {unit} used in this {}s window; retry in {retry}s.",
            l.name, l.tokens, l.window_s
        );
        let body = match provider {
            Some(Provider::Anthropic) => serde_json::json!({
                "type": "error",
                "error": {"type": "rate_limit_error", "message": message},
            }),
            Some(Provider::Gemini | Provider::VertexAi) => serde_json::json!({
                "error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"},
            }),
            _ => serde_json::json!({
                "error": {"message": message, "type": "tokens", "param": null,
                          "code": "rate_limit_exceeded"},
            }),
        };
        LocalReply {
            status: 429,
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("retry-after", retry.to_string()),
                ("x-ratelimit-limit-tokens", l.tokens.to_string()),
                (
                    "x-ratelimit-remaining-tokens",
                    l.tokens.saturating_sub(used).to_string(),
                ),
            ],
            body: body.to_string(),
        }
    }
}
