//! The [`UsageEvent`] of one call, and how the call ended.

use std::time::Duration;

use http::{Method, StatusCode};
use llm_usage_core::UsageRecord;
use llm_usage_cost::{Amount, Pricing};
use reqwest::Url;

/// How an observed call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The response body reached its end.
    Complete,
    /// The response (or its body) was dropped before the end: the record is partial.
    Dropped,
    /// The response body yielded an error (a cut connection): the record is partial.
    BodyError,
    /// No response: the request failed (connection refused, timeout, an inner middleware).
    RequestError,
}

impl Outcome {
    /// `complete`, `dropped`, `body_error` or `request_error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Dropped => "dropped",
            Outcome::BodyError => "body_error",
            Outcome::RequestError => "request_error",
        }
    }
}

/// Everything known about one call, handed to the callback exactly once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UsageEvent {
    /// The usage record (`complete == false` unless the body ended and the core saw the
    /// provider's end).
    pub record: UsageRecord,
    /// How the call ended.
    pub outcome: Outcome,
    /// The request method.
    pub method: Method,
    /// The request URL.
    pub url: Url,
    /// The response status, when a response came.
    pub status: Option<StatusCode>,
    /// From the call to the end (or drop) of the response body.
    pub duration: Duration,
    /// From the call to the first non-empty chunk of the response body.
    pub time_to_first_byte: Option<Duration>,
    /// From the call to the first complete response event carrying generated text (for a
    /// response that is one document, its end).
    pub time_to_first_token: Option<Duration>,
    /// Response body bytes that went through.
    pub response_body_bytes: u64,
    /// The metric labels the call was counted under (empty without metrics).
    pub labels: Vec<(String, String)>,
    /// What the call costs under the middleware's price table
    /// ([`LlmUsageMiddleware::prices`](crate::LlmUsageMiddleware::prices)): `None` without a
    /// table; with one, a cost ([`Pricing::Cost`]) or why there is none (no price for the
    /// model, a needed count unknown). Unknown is never 0.
    pub pricing: Option<Pricing>,
    /// The price table's currency code (`USD`, …), with a table.
    pub currency: Option<String>,
}

impl UsageEvent {
    /// The call's cost in the table's [`currency`](Self::currency), when it has one.
    pub fn cost(&self) -> Option<Amount> {
        self.pricing.as_ref().and_then(Pricing::amount)
    }

    /// The value of a label the call was counted under.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
