//! The [`OnRecord`] callback and the [`UsageEvent`] it receives.

use std::time::Duration;

use http::{Method, StatusCode, Uri};
use llm_usage_core::inject::Skip;
use llm_usage_core::UsageRecord;
use llm_usage_cost::{Amount, Pricing};
use metrics::SharedString;

/// How an observed exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The response body reached its end of stream.
    Complete,
    /// The response body was dropped before its end: the client hung up, a timeout fired, or the
    /// server shut the connection. The record is partial.
    Dropped,
    /// The inner response body yielded an error. The record is partial.
    BodyError,
    /// The inner service returned an error instead of a response.
    ServiceError,
    /// The response future was dropped before the inner service produced a response.
    Cancelled,
}

impl Outcome {
    /// A short lowercase name, usable as a label value: `complete`, `dropped`, `body_error`,
    /// `service_error` or `cancelled`.
    ///
    /// ```
    /// assert_eq!(llm_usage_tower::Outcome::Dropped.as_str(), "dropped");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Dropped => "dropped",
            Outcome::BodyError => "body_error",
            Outcome::ServiceError => "service_error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// What the `stream_options.include_usage` injection did for an exchange
/// ([`LlmUsageLayer::inject_include_usage`](crate::LlmUsageLayer::inject_include_usage)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Injection {
    /// The request was rewritten to ask for usage; the usage-only chunk was hidden from the
    /// client.
    Injected,
    /// The client asked for usage itself: request and stream untouched.
    ClientAsked,
    /// Something unexpected: the original bytes went untouched (see [`Skip`]).
    Skipped(Skip),
}

impl Injection {
    /// `injected`, `client_asked`, or the skip reason ([`Skip::as_str`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            Injection::Injected => "injected",
            Injection::ClientAsked => "client_asked",
            Injection::Skipped(s) => s.as_str(),
        }
    }
}

/// Everything known about one observed exchange, handed to [`OnRecord::on_record`] exactly once
/// (a realtime session also hands one per response it closes, see
/// [`realtime_response`](Self::realtime_response)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UsageEvent {
    /// The usage record from `llm-usage-core` (`complete == false` unless the response body ended
    /// cleanly and the core saw a clean end).
    pub record: UsageRecord,
    /// How the exchange ended.
    pub outcome: Outcome,
    /// The request method.
    pub method: Method,
    /// The request URI as the service saw it (absolute for client middleware).
    pub uri: Uri,
    /// The response status, when the inner service produced a response.
    pub status: Option<StatusCode>,
    /// From the call of the service to the end (or drop) of the response body.
    pub duration: Duration,
    /// From the call of the service to the first non-empty data frame of the response body.
    pub time_to_first_byte: Option<Duration>,
    /// From the call of the service to the first complete response event that carried
    /// generated text (content, reasoning or tool arguments: the core's
    /// `Exchange::response_content_events`), not the first event (Anthropic's
    /// `message_start` carries none); for a response that is one document, its end
    /// (`Exchange::first_token_seen`). `None` when neither came (a cut stream without text).
    pub time_to_first_token: Option<Duration>,
    /// Request body bytes that went through the layer.
    pub request_body_bytes: u64,
    /// Response body bytes that went through the layer.
    pub response_body_bytes: u64,
    /// The metric labels this exchange was counted under (empty when metrics are off).
    pub labels: Vec<(SharedString, String)>,
    /// What the `stream_options.include_usage` injection did (`None`: not tried, because it is
    /// off or the request is not one it applies to, or the request was not streamed).
    pub injection: Option<Injection>,
    /// What the exchange costs under the layer's price table
    /// ([`LlmUsageLayer::prices`](crate::LlmUsageLayer::prices)): `None` without a table;
    /// with one, a cost ([`Pricing::Cost`]) or why there is none (no price for the model,
    /// a needed count unknown). Unknown is never 0.
    pub pricing: Option<Pricing>,
    /// The price table's currency code (`USD`, …), with a table.
    pub currency: Option<String>,
    /// For a record a realtime session closed (one per OpenAI Realtime `response.done`,
    /// Gemini Live `turnComplete`; see [`realtime`](crate::realtime)): which one, from 1.
    /// Such a record is `complete`, carries that response's figures and the session's model;
    /// its times are `None` and [`duration`](Self::duration) runs from the session's start
    /// to its closing event; the byte counts are the session's so far. Its metrics are its
    /// tokens and cost, not a request nor durations (the session is one request, counted
    /// with its last record). `None` for every other record, including the session's last:
    /// what no closing event covered, emitted when the session ends.
    pub realtime_response: Option<u64>,
}

impl UsageEvent {
    /// The time per output token after the first, in the sense of the OpenTelemetry GenAI
    /// `gen_ai.server.time_per_output_token` metric: `(duration − ttft) / (output_tokens − 1)`
    /// with `ttft` = [`time_to_first_token`](Self::time_to_first_token). `None` unless the
    /// request was streamed, the first event time is known and more than one output token was
    /// produced.
    pub fn time_per_output_token(&self) -> Option<Duration> {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let timings = llm_usage_report::Timings {
            start: Some(0),
            first_byte: None,
            first_token: self.time_to_first_token.map(nanos),
            end: Some(nanos(self.duration)),
        };
        timings
            .time_per_output_token(&self.record)
            .map(Duration::from_nanos)
    }

    /// The exchange's cost in the table's [`currency`](Self::currency), when it has one
    /// (`None`: no price table, no price for the model, or a needed count unknown).
    ///
    /// ```
    /// # fn f(ev: &llm_usage_tower::UsageEvent) {
    /// if let (Some(cost), Some(currency)) = (ev.cost(), &ev.currency) {
    ///     println!("{cost} {currency}"); // an exact decimal, e.g. 0.00475 USD
    /// }
    /// # }
    /// ```
    pub fn cost(&self) -> Option<Amount> {
        self.pricing.as_ref().and_then(Pricing::amount)
    }

    /// The value of a label this exchange was counted under.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Called once per observed exchange with its [`UsageEvent`]: for access logs, billing,
/// budgets, or tests.
///
/// Implemented for closures `Fn(&UsageEvent)` and for `()` (does nothing). It runs inline on the
/// task that ends the exchange (the one polling or dropping the response body), so keep it cheap:
/// hand heavy work to a channel.
///
/// ```
/// use llm_usage_tower::{LlmUsageLayer, UsageEvent};
///
/// let layer = LlmUsageLayer::new().on_record(|ev: &UsageEvent| {
///     println!(
///         "{} {:?} in={:?} out={:?} complete={}",
///         ev.uri, ev.record.model, ev.record.input_tokens, ev.record.output_tokens, ev.record.complete
///     );
/// });
/// # let _ = layer;
/// ```
pub trait OnRecord: Send + Sync + 'static {
    /// Receives the event of one exchange.
    fn on_record(&self, event: &UsageEvent);
}

impl<F> OnRecord for F
where
    F: Fn(&UsageEvent) + Send + Sync + 'static,
{
    fn on_record(&self, event: &UsageEvent) {
        self(event)
    }
}

impl OnRecord for () {
    fn on_record(&self, _event: &UsageEvent) {}
}
