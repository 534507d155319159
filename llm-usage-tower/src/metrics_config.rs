//! Metric names, label sets and profiles for the [`metrics`] facade.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::HeaderName;
use http::{Extensions, HeaderMap, Uri};
use metrics::SharedString;

use llm_usage_report::labels::{clean, Limiter, MAX_LABEL_LEN};
pub use llm_usage_report::labels::{OTHER, UNKNOWN};
pub use llm_usage_report::names::TimeUnit;
use llm_usage_report::names::{Dimension, Metric, Profile};
pub use llm_usage_report::names::{
    REQUEST_DURATION_BUCKETS, TIME_PER_OUTPUT_TOKEN_BUCKETS, TIME_TO_FIRST_TOKEN_BUCKETS,
    TOKEN_USAGE_BUCKETS,
};
use llm_usage_report::select::RecordLabel;
use llm_usage_report::series::UNKNOWN_MODALITY;

/// The label of the token modality on the `gen_ai.client.inference.usage.*` counters.
const MODALITY_LABEL: &str = Profile::Otel.token_modality_label();
use llm_usage_report::tokens::figures;
pub use llm_usage_report::tokens::TokenType;

use crate::callback::{Injection, Outcome, UsageEvent};

/// How token counts are laid out over metric names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenMetric {
    /// Not emitted.
    Off,
    /// One metric name; the token type is a label (`gen_ai_token_type="input"` …).
    Labelled {
        /// The metric name.
        name: SharedString,
        /// The label carrying the [`TokenType`].
        label: SharedString,
    },
    /// One metric name per token type (`None`: that type is not emitted), as Envoy-style
    /// counters such as `asm_llm_proxy_prompt_tokens` do.
    PerType {
        /// Name for [`TokenType::Input`].
        input: Option<SharedString>,
        /// Name for [`TokenType::Output`].
        output: Option<SharedString>,
        /// Name for [`TokenType::InputCacheRead`].
        input_cache_read: Option<SharedString>,
        /// Name for [`TokenType::InputCacheWrite`].
        input_cache_write: Option<SharedString>,
        /// Name for [`TokenType::Reasoning`].
        reasoning: Option<SharedString>,
    },
}

impl TokenMetric {
    /// A single metric with the token type in the label `label`.
    ///
    /// ```
    /// let m = llm_usage_tower::TokenMetric::labelled("llm_tokens_total", "type");
    /// assert_eq!(m.names(), vec!["llm_tokens_total".to_string()]);
    /// ```
    pub fn labelled(name: impl Into<SharedString>, label: impl Into<SharedString>) -> Self {
        TokenMetric::Labelled {
            name: name.into(),
            label: label.into(),
        }
    }

    /// The distinct metric names this layout emits.
    pub fn names(&self) -> Vec<String> {
        match self {
            TokenMetric::Off => Vec::new(),
            TokenMetric::Labelled { name, .. } => vec![name.to_string()],
            TokenMetric::PerType { .. } => TokenType::ALL
                .iter()
                .filter_map(|t| self.target(*t).map(|(n, _)| n.to_string()))
                .collect(),
        }
    }

    fn target(&self, t: TokenType) -> Option<(&SharedString, Option<&SharedString>)> {
        match self {
            TokenMetric::Off => None,
            TokenMetric::Labelled { name, label } => Some((name, Some(label))),
            TokenMetric::PerType {
                input,
                output,
                input_cache_read,
                input_cache_write,
                reasoning,
            } => {
                let n = match t {
                    TokenType::Input => input,
                    TokenType::Output => output,
                    TokenType::InputCacheRead => input_cache_read,
                    TokenType::InputCacheWrite => input_cache_write,
                    TokenType::Reasoning => reasoning,
                };
                n.as_ref().map(|n| (n, None))
            }
        }
    }
}

/// A duration in `unit`.
fn time_in(unit: TimeUnit, d: Duration) -> f64 {
    unit.of_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

type ExtensionFn = Arc<dyn Fn(&Extensions) -> Option<String> + Send + Sync>;

#[derive(Clone)]
enum Source {
    Record(RecordLabel),
    StatusClass,
    Status,
    Outcome,
    Authority,
    Header(HeaderName),
    Extension(ExtensionFn),
    Constant(String),
}

/// One metric label: a name and where its value comes from.
///
/// Values taken from the request (headers, extensions, authority) are read when the request
/// enters the layer; the others when the record is emitted. Client-chosen values (models,
/// headers) are cut to 128 bytes; model values are also subject to the allow-list and cap of
/// [`MetricsConfig`], and header or extension values to a cap set with [`Label::max_values`].
///
/// ```
/// use llm_usage_tower::Label;
///
/// let labels = vec![
///     Label::provider("gen_ai_provider_name"),
///     Label::model("model"),
///     Label::header("user_type", "user-type").max_values(8),
///     Label::constant("cluster", "eu-1"),
/// ];
/// assert_eq!(labels[2].name(), "user_type");
/// ```
#[derive(Clone)]
pub struct Label {
    name: SharedString,
    source: Source,
    cap: Option<Arc<ValueCap>>,
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let src = match &self.source {
            Source::Record(r) => format!("{r:?}"),
            Source::StatusClass => "status_class".to_string(),
            Source::Status => "status".to_string(),
            Source::Outcome => "outcome".to_string(),
            Source::Authority => "authority".to_string(),
            Source::Header(h) => format!("header({h})"),
            Source::Extension(_) => "extension".to_string(),
            Source::Constant(v) => format!("constant({v:?})"),
        };
        f.debug_struct("Label")
            .field("name", &self.name)
            .field("source", &src)
            .finish()
    }
}

impl Label {
    fn new(name: impl Into<SharedString>, source: Source) -> Self {
        Label {
            name: name.into(),
            source,
            cap: None,
        }
    }

    /// The label name.
    pub fn name(&self) -> &str {
        self.name.as_ref()
    }

    /// The provider (`openai`, `anthropic`, … as in the OpenTelemetry registry), or `unknown`.
    pub fn provider(name: impl Into<SharedString>) -> Self {
        Self::new(name, Source::Record(RecordLabel::Provider))
    }
    /// The best model (response model, else request model, else path model), capped.
    pub fn model(name: impl Into<SharedString>) -> Self {
        Self::new(name, Source::Record(RecordLabel::Model))
    }
    /// The model named in the request body, capped.
    pub fn request_model(name: impl Into<SharedString>) -> Self {
        Self::new(name, Source::Record(RecordLabel::RequestModel))
    }
    /// The model the response reported, capped.
    pub fn response_model(name: impl Into<SharedString>) -> Self {
        Self::new(name, Source::Record(RecordLabel::ResponseModel))
    }
    /// The status class: `1xx` … `5xx`, or `error` when the service failed or no response came.
    pub fn status_class(name: impl Into<SharedString>) -> Self {
        Self::new(name, Source::StatusClass)
    }
    /// The numeric status code, or `error`.
    pub fn status(name: impl Into<SharedString>) -> Self {
        Self::new(name, Source::Status)
    }
    /// The [`Outcome`] (`complete`, `dropped`, …).
    pub fn outcome(name: impl Into<SharedString>) -> Self {
        Self::new(name, Source::Outcome)
    }
    /// The request authority: the URI's (client middleware), else the `Host` header.
    pub fn authority(name: impl Into<SharedString>) -> Self {
        Self::new(name, Source::Authority)
    }
    /// A request header's value (`unknown` when absent or not visible ASCII).
    ///
    /// # Panics
    ///
    /// If `header` is not a valid header name (a configuration error).
    pub fn header<H>(name: impl Into<SharedString>, header: H) -> Self
    where
        H: TryInto<HeaderName>,
        H::Error: fmt::Debug,
    {
        let header = header.try_into().expect("a valid header name");
        Self::new(name, Source::Header(header))
    }
    /// A value from the request extensions (e.g. set by an auth layer), by type, through
    /// `Display`.
    ///
    /// ```
    /// #[derive(Clone)]
    /// struct Tenant(String);
    /// impl std::fmt::Display for Tenant {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) }
    /// }
    /// let label = llm_usage_tower::Label::extension::<Tenant>("tenant");
    /// # let _ = label;
    /// ```
    pub fn extension<T>(name: impl Into<SharedString>) -> Self
    where
        T: fmt::Display + Send + Sync + 'static,
    {
        Self::extension_with(name, |ext: &Extensions| {
            ext.get::<T>().map(|v| v.to_string())
        })
    }
    /// A value computed from the request extensions by a closure.
    pub fn extension_with<F>(name: impl Into<SharedString>, f: F) -> Self
    where
        F: Fn(&Extensions) -> Option<String> + Send + Sync + 'static,
    {
        Self::new(name, Source::Extension(Arc::new(f)))
    }
    /// A fixed value.
    pub fn constant(name: impl Into<SharedString>, value: impl Into<String>) -> Self {
        Self::new(name, Source::Constant(value.into()))
    }

    /// Caps the number of distinct values of this label: past `max` distinct values, new ones
    /// are counted as `other`. (Model labels are also under the cap of [`MetricsConfig`].)
    pub fn max_values(mut self, max: usize) -> Self {
        self.cap = Some(Arc::new(ValueCap::new(None, Some(max))));
        self
    }

    fn is_request_time(&self) -> bool {
        matches!(
            self.source,
            Source::Authority | Source::Header(_) | Source::Extension(_) | Source::Constant(_)
        )
    }

    fn request_value(&self, uri: &Uri, headers: &HeaderMap, ext: &Extensions) -> Option<String> {
        let v = match &self.source {
            Source::Authority => uri.authority().map(|a| a.as_str().to_owned()).or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            }),
            Source::Header(h) => headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            Source::Extension(f) => f(ext),
            Source::Constant(v) => return Some(v.clone()),
            _ => None,
        }?;
        let v = clean(&v, MAX_LABEL_LEN);
        Some(match &self.cap {
            Some(cap) => cap.admit(&v),
            None => v,
        })
    }
}

/// A [`Limiter`] shared by the exchanges of every thread.
#[derive(Debug)]
struct ValueCap(Mutex<Limiter>);

impl ValueCap {
    /// An allow-list and/or a cap on first-come values; an allow-list alone admits nothing
    /// else, neither admits everything.
    fn new(allow: Option<HashSet<String>>, max: Option<usize>) -> Self {
        let others = match (&allow, max) {
            (Some(_), None) => Some(0),
            (_, max) => max,
        };
        let allow = allow.map(|a| a.into_iter().collect()).unwrap_or_default();
        ValueCap(Mutex::new(Limiter::new(allow, others)))
    }

    fn admit(&self, v: &str) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).label(v)
    }
}

/// Which metrics the layer emits through the [`metrics`] facade, under which names and labels.
///
/// Two profiles: [`MetricsConfig::otel`] (the default; OpenTelemetry GenAI names) and
/// [`MetricsConfig::asm`] (the names and labels of the `llm-usage-wasm` filter's `asm` profile,
/// after Envoy tag extraction). Every name can be changed or switched off, and the label set
/// replaced.
///
/// | metric (otel profile) | kind | labels besides the common ones |
/// | --- | --- | --- |
/// | `gen_ai_client_token_usage` | histogram of tokens per exchange | `gen_ai_token_type` (`input`, `output` only: the subsets have the counters below) |
/// | `llm_usage_tokens_total` | counter of tokens | `gen_ai_token_type` (every type and part: subsets, sum `input` and `output` only) |
/// | `gen_ai_client_inference_usage_input_tokens_total`, `…_output_tokens_total`, `…_cache_read_input_tokens_total`, `…_cache_write_input_tokens_total`, `…_reasoning_output_tokens_total` | counters of tokens (OpenTelemetry `gen_ai.client.inference.usage.*`; cache and reasoning are subsets of input and output) | `gen_ai_token_modality` (`unknown`: the figures count every modality) |
/// | `llm_usage_requests_total` | counter of exchanges | |
/// | `llm_usage_estimated_requests_total` | counter of exchanges whose record holds an estimate | |
/// | `gen_ai_server_request_duration_seconds` | histogram, seconds | |
/// | `llm_usage_time_to_first_byte_seconds` | histogram, seconds | |
/// | `gen_ai_server_time_to_first_token_seconds` | histogram, seconds (first event with generated text) | |
/// | `gen_ai_server_time_per_output_token_seconds` | histogram, seconds (streams) | |
///
/// A name carries its unit: with [`time_unit`](Self::time_unit)`(TimeUnit::Milliseconds)`
/// the four duration histograms are `…_milliseconds` (the `llm-usage-wasm` filter's names).
/// | `llm_usage_inject_skipped_total` | counter of skipped `stream_options.include_usage` injections | `inject_skip_reason` |
/// | `llm_usage_cost_micros_total` | counter of cost in micro-units of the price table's currency (each exchange rounded down; with [`prices`](crate::LlmUsageLayer::prices)) | |
/// | `llm_usage_price_lookup_misses_total` | counter of exchanges whose model has no price | |
/// | `llm_usage_budget_rejected_requests_total` | counter of requests answered `429` by a token budget ([`budgets`](crate::LlmUsageLayer::budgets)) | `budget_limit` |
///
/// Common labels: `gen_ai_provider_name`, `gen_ai_request_model`, `gen_ai_response_model`,
/// `http_status_class`.
///
/// ```
/// use llm_usage_tower::{Label, MetricsConfig};
///
/// let metrics = MetricsConfig::otel()
///     .label(Label::header("user_type", "user-type"))
///     .model_allow_list(["gpt-4o", "claude-sonnet-4"])
///     .max_models(50)
///     .time_per_output_token_histogram(None::<&'static str>);
/// assert!(metrics.histogram_buckets().iter().any(|(n, _)| n == "gen_ai_server_time_to_first_token_seconds"));
/// ```
#[derive(Clone)]
pub struct MetricsConfig {
    token_histogram: TokenMetric,
    token_counter: TokenMetric,
    inference_usage: TokenMetric,
    requests: Option<SharedString>,
    estimated_requests: Option<SharedString>,
    request_duration: Option<SharedString>,
    time_to_first_byte: Option<SharedString>,
    time_to_first_token: Option<SharedString>,
    time_per_output_token: Option<SharedString>,
    inject_skipped: Option<SharedString>,
    skip_reason_label: SharedString,
    cost: Option<SharedString>,
    price_lookup_misses: Option<SharedString>,
    budget_denied: Option<SharedString>,
    budget_limit_label: SharedString,
    time_unit: TimeUnit,
    profile: Profile,
    labels: Vec<Label>,
    model_allow: Option<HashSet<String>>,
    max_models: Option<usize>,
    model_cap: Arc<ValueCap>,
}

impl fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("token_histogram", &self.token_histogram)
            .field("token_counter", &self.token_counter)
            .field("inference_usage", &self.inference_usage)
            .field("requests", &self.requests)
            .field("estimated_requests", &self.estimated_requests)
            .field("request_duration", &self.request_duration)
            .field("time_to_first_byte", &self.time_to_first_byte)
            .field("time_to_first_token", &self.time_to_first_token)
            .field("time_per_output_token", &self.time_per_output_token)
            .field("inject_skipped", &self.inject_skipped)
            .field("cost", &self.cost)
            .field("price_lookup_misses", &self.price_lookup_misses)
            .field("budget_denied", &self.budget_denied)
            .field("skip_reason_label", &self.skip_reason_label)
            .field("time_unit", &self.time_unit)
            .field("labels", &self.labels)
            .field("model_allow", &self.model_allow)
            .field("max_models", &self.max_models)
            .finish()
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self::otel()
    }
}

/// The default cap on distinct model label values.
pub const DEFAULT_MAX_MODELS: usize = 100;

impl MetricsConfig {
    /// OpenTelemetry GenAI names (see the type's table), durations in seconds, at most
    /// [`DEFAULT_MAX_MODELS`] distinct model values.
    pub fn otel() -> Self {
        let mut m = Self::profile(Profile::Otel, "", "");
        m.labels.push(Label::status_class("http_status_class"));
        m
    }

    /// The names of the `llm-usage-wasm` filter's `asm` profile (Alibaba Cloud Service Mesh):
    /// counters `asm_llm_proxy_prompt_tokens`, `asm_llm_proxy_completion_tokens`,
    /// `asm_llm_proxy_cached_tokens`, `asm_llm_proxy_cache_creation_tokens`,
    /// `asm_llm_proxy_reasoning_tokens`, `asm_llm_proxy_requests`,
    /// `asm_llm_proxy_estimated_requests`, and histograms (in
    /// milliseconds) `asm_llm_proxy_request_duration_ms`, `asm_llm_proxy_time_to_first_byte_ms`,
    /// `asm_llm_proxy_time_to_first_token_ms`, `asm_llm_proxy_time_per_output_token_ms`, and
    /// the counters `asm_llm_proxy_inject_skipped` (with `llmproxy_inject_skip_reason`),
    /// `asm_llm_proxy_cost_micros`, `asm_llm_proxy_price_lookup_misses` and
    /// `asm_llm_proxy_budget_rejected_requests` (with `llmproxy_budget_limit`),
    /// labelled `llmproxy_source_workload`, `llmproxy_source_workload_namespace`
    /// (the two values given), `llmproxy_destination_service` (the request authority) and
    /// `llmproxy_model`.
    ///
    /// ```
    /// let m = llm_usage_tower::MetricsConfig::asm("sleep", "default");
    /// assert!(m.metric_names().contains(&"asm_llm_proxy_prompt_tokens".to_string()));
    /// ```
    pub fn asm(source_workload: &str, source_namespace: &str) -> Self {
        Self::profile(Profile::Asm, source_workload, source_namespace)
    }

    /// A profile's names, units and dimensions, from the shared tables of
    /// `llm_usage_report::names`; counters get the profile's `_total` suffix.
    fn profile(p: Profile, source_workload: &str, source_namespace: &str) -> Self {
        let name = |m: Metric| {
            m.name(p).map(|n| {
                let suffix = if m.is_histogram() {
                    ""
                } else {
                    p.counter_suffix()
                };
                SharedString::from(format!("{n}{suffix}"))
            })
        };
        let token_metric = |m: Metric| match name(m) {
            Some(n) => TokenMetric::labelled(n, p.token_type_label()),
            None => TokenMetric::Off,
        };
        let token_counter = match name(Metric::Tokens) {
            Some(n) => TokenMetric::labelled(n, p.token_type_label()),
            None => {
                let per = |t: TokenType| t.field().asm_counter.map(SharedString::from);
                TokenMetric::PerType {
                    input: per(TokenType::Input),
                    output: per(TokenType::Output),
                    input_cache_read: per(TokenType::InputCacheRead),
                    input_cache_write: per(TokenType::InputCacheWrite),
                    reasoning: per(TokenType::Reasoning),
                }
            }
        };
        let labels = p
            .dimensions()
            .iter()
            .map(|(n, d)| match d {
                Dimension::SourceWorkload => Label::constant(*n, source_workload),
                Dimension::SourceWorkloadNamespace => Label::constant(*n, source_namespace),
                Dimension::DestinationService => Label::authority(*n),
                Dimension::Record(r) => Label::new(*n, Source::Record(*r)),
            })
            .collect();
        let inference_usage = match p {
            Profile::Otel => {
                let per = |t: TokenType| {
                    t.field()
                        .otel_counter
                        .map(|n| SharedString::from(format!("{n}{}", p.counter_suffix())))
                };
                TokenMetric::PerType {
                    input: per(TokenType::Input),
                    output: per(TokenType::Output),
                    input_cache_read: per(TokenType::InputCacheRead),
                    input_cache_write: per(TokenType::InputCacheWrite),
                    reasoning: per(TokenType::Reasoning),
                }
            }
            Profile::Asm => TokenMetric::Off,
        };
        MetricsConfig {
            token_histogram: token_metric(Metric::TokenUsage),
            token_counter,
            inference_usage,
            requests: name(Metric::Requests),
            estimated_requests: name(Metric::EstimatedRequests),
            request_duration: name(Metric::RequestDuration),
            time_to_first_byte: name(Metric::TimeToFirstByte),
            time_to_first_token: name(Metric::TimeToFirstToken),
            time_per_output_token: name(Metric::TimePerOutputToken),
            inject_skipped: name(Metric::InjectSkipped),
            skip_reason_label: p.skip_reason_label().into(),
            cost: name(Metric::CostMicros),
            price_lookup_misses: name(Metric::PriceLookupMisses),
            budget_denied: name(Metric::BudgetRejected),
            budget_limit_label: p.budget_limit_label().into(),
            time_unit: p.time_unit(),
            profile: p,
            labels,
            model_allow: None,
            max_models: Some(DEFAULT_MAX_MODELS),
            model_cap: Arc::new(ValueCap::new(None, Some(DEFAULT_MAX_MODELS))),
        }
    }

    /// Sets the per-exchange token histogram layout.
    pub fn token_histogram(mut self, m: TokenMetric) -> Self {
        self.token_histogram = m;
        self
    }
    /// Sets the token counter layout.
    pub fn token_counter(mut self, m: TokenMetric) -> Self {
        self.token_counter = m;
        self
    }
    /// Sets the OpenTelemetry `gen_ai.client.inference.usage.*` counters (otel profile:
    /// one counter per token type, `gen_ai_client_inference_usage_input_tokens_total`, …,
    /// labelled `gen_ai_token_modality`; [`TokenMetric::Off`] switches them off). Cache and
    /// reasoning counters are subsets of the input and output ones.
    pub fn inference_usage_counters(mut self, m: TokenMetric) -> Self {
        self.inference_usage = m;
        self
    }
    /// Names (or, with `None`, switches off) the exchange counter.
    pub fn requests_counter(mut self, name: Option<impl Into<SharedString>>) -> Self {
        self.requests = name.map(Into::into);
        self
    }
    /// Names (or, with `None`, switches off) the counter of exchanges whose record holds an
    /// estimated token figure (`UsageRecord::estimated`): the estimated share of traffic.
    pub fn estimated_requests_counter(mut self, name: Option<impl Into<SharedString>>) -> Self {
        self.estimated_requests = name.map(Into::into);
        self
    }
    /// Names (or switches off) the request duration histogram.
    pub fn request_duration_histogram(mut self, name: Option<impl Into<SharedString>>) -> Self {
        self.request_duration = name.map(Into::into);
        self
    }
    /// Names (or switches off) the time-to-first-byte histogram (time from the call to the first
    /// non-empty response body frame).
    pub fn time_to_first_byte_histogram(mut self, name: Option<impl Into<SharedString>>) -> Self {
        self.time_to_first_byte = name.map(Into::into);
        self
    }
    /// Names (or switches off) the time-to-first-token histogram (time from the call to the
    /// first complete response event).
    pub fn time_to_first_token_histogram(mut self, name: Option<impl Into<SharedString>>) -> Self {
        self.time_to_first_token = name.map(Into::into);
        self
    }
    /// Names (or switches off) the time-per-output-token histogram.
    pub fn time_per_output_token_histogram(
        mut self,
        name: Option<impl Into<SharedString>>,
    ) -> Self {
        self.time_per_output_token = name.map(Into::into);
        self
    }
    /// Names (or switches off) the counter of skipped `stream_options.include_usage`
    /// injections ([`LlmUsageLayer::inject_include_usage`](crate::LlmUsageLayer::inject_include_usage)),
    /// counted once per skipped exchange with the common labels and the reason.
    ///
    /// ```
    /// let m = llm_usage_tower::MetricsConfig::otel().inject_skipped_counter(Some("llm_inject_skips_total"));
    /// assert!(m.metric_names().contains(&"llm_inject_skips_total".to_string()));
    /// ```
    pub fn inject_skipped_counter(mut self, name: Option<impl Into<SharedString>>) -> Self {
        self.inject_skipped = name.map(Into::into);
        self
    }
    /// The label carrying the skip reason ([`Skip::as_str`](crate::Skip::as_str)) on the
    /// skip counter: `inject_skip_reason` (otel) or `llmproxy_inject_skip_reason` (asm).
    pub fn skip_reason_label(mut self, label: impl Into<SharedString>) -> Self {
        self.skip_reason_label = label.into();
        self
    }
    /// Names (or switches off) the cost counter: each priced exchange adds its cost in
    /// micro-units of the price table's currency, rounded down
    /// ([`LlmUsageLayer::prices`](crate::LlmUsageLayer::prices)).
    pub fn cost_counter(mut self, name: Option<impl Into<SharedString>>) -> Self {
        self.cost = name.map(Into::into);
        self
    }
    /// Names (or switches off) the counter of exchanges whose model has no price (no
    /// model, or no entry of the table matches it).
    pub fn price_lookup_misses_counter(mut self, name: Option<impl Into<SharedString>>) -> Self {
        self.price_lookup_misses = name.map(Into::into);
        self
    }
    /// Names (or switches off) the counter of requests answered locally with `429` by a
    /// token budget ([`LlmUsageLayer::budgets`](crate::LlmUsageLayer::budgets)), labelled
    /// with the limit's name under [`budget_limit_label`](Self::budget_limit_label).
    pub fn budget_denied_counter(mut self, name: Option<impl Into<SharedString>>) -> Self {
        self.budget_denied = name.map(Into::into);
        self
    }
    /// The label carrying the limit's name on the denial counter: `budget_limit` (otel) or
    /// `llmproxy_budget_limit` (asm).
    pub fn budget_limit_label(mut self, label: impl Into<SharedString>) -> Self {
        self.budget_limit_label = label.into();
        self
    }
    /// The unit durations are recorded in. One name, one unit: the duration histograms
    /// that still have their profile's name are renamed to that unit's name
    /// ([`Metric::name_in`](llm_usage_report::names::Metric::name_in)): in the `otel`
    /// profile `gen_ai_server_request_duration_seconds` becomes
    /// `gen_ai_server_request_duration_milliseconds`, the name under which the
    /// `llm-usage-wasm` filter records, so a gateway and the filter share series. Names
    /// set with the `…_histogram` setters are yours and stay as they are.
    ///
    /// ```
    /// use llm_usage_tower::{MetricsConfig, TimeUnit};
    ///
    /// let m = MetricsConfig::otel().time_unit(TimeUnit::Milliseconds);
    /// let names = m.metric_names();
    /// assert!(names.contains(&"gen_ai_server_time_to_first_token_milliseconds".to_string()));
    /// assert!(!names.iter().any(|n| n.ends_with("_seconds")));
    /// ```
    pub fn time_unit(mut self, unit: TimeUnit) -> Self {
        let (p, old) = (self.profile, self.time_unit);
        for (slot, m) in [
            (&mut self.request_duration, Metric::RequestDuration),
            (&mut self.time_to_first_byte, Metric::TimeToFirstByte),
            (&mut self.time_to_first_token, Metric::TimeToFirstToken),
            (&mut self.time_per_output_token, Metric::TimePerOutputToken),
        ] {
            let is_default = slot
                .as_deref()
                .is_some_and(|n| Some(n) == m.name_in(p, old));
            if let (true, Some(new)) = (is_default, m.name_in(p, unit)) {
                *slot = Some(SharedString::from(new));
            }
        }
        self.time_unit = unit;
        self
    }
    /// Replaces the whole label set.
    pub fn labels(mut self, labels: impl IntoIterator<Item = Label>) -> Self {
        self.labels = labels.into_iter().collect();
        self
    }
    /// Adds a label (replacing one of the same name).
    pub fn label(mut self, label: Label) -> Self {
        self.labels.retain(|l| l.name != label.name);
        self.labels.push(label);
        self
    }
    /// Model values that always keep their own label value.
    pub fn model_allow_list<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.model_allow = Some(models.into_iter().map(Into::into).collect());
        self.rebuild_cap();
        self
    }
    /// At most `max` further distinct model values (first come), the rest `other`. With an
    /// allow-list, `0` means only allow-listed models.
    pub fn max_models(mut self, max: usize) -> Self {
        self.max_models = Some(max);
        self.rebuild_cap();
        self
    }
    /// No cap on distinct model values (only safe when clients cannot choose the model).
    pub fn unbounded_models(mut self) -> Self {
        self.max_models = None;
        self.rebuild_cap();
        self
    }

    fn rebuild_cap(&mut self) {
        self.model_cap = Arc::new(ValueCap::new(self.model_allow.clone(), self.max_models));
    }

    /// Every metric name emitted.
    pub fn metric_names(&self) -> Vec<String> {
        let mut v = self.token_histogram.names();
        v.extend(self.token_counter.names());
        v.extend(self.inference_usage.names());
        for n in [
            &self.requests,
            &self.estimated_requests,
            &self.request_duration,
            &self.time_to_first_byte,
            &self.time_to_first_token,
            &self.time_per_output_token,
            &self.inject_skipped,
            &self.cost,
            &self.price_lookup_misses,
            &self.budget_denied,
        ]
        .into_iter()
        .flatten()
        {
            v.push(n.to_string());
        }
        v
    }

    /// The histogram names with the OpenTelemetry bucket boundaries for them (scaled to
    /// milliseconds when the time unit is milliseconds), for an exporter that takes
    /// buckets per name. With a Prometheus exporter, [`install_buckets`](Self::install_buckets)
    /// (`prometheus` feature) sets them.
    pub fn histogram_buckets(&self) -> Vec<(String, Vec<f64>)> {
        let unit = self.time_unit;
        let mut v: Vec<(String, Vec<f64>)> = self
            .token_histogram
            .names()
            .into_iter()
            .map(|n| (n, TOKEN_USAGE_BUCKETS.to_vec()))
            .collect();
        for (n, m) in [
            (&self.request_duration, Metric::RequestDuration),
            (&self.time_to_first_byte, Metric::TimeToFirstByte),
            (&self.time_to_first_token, Metric::TimeToFirstToken),
            (&self.time_per_output_token, Metric::TimePerOutputToken),
        ] {
            if let (Some(n), Some(b)) = (n, m.buckets_in(unit)) {
                v.push((n.to_string(), b));
            }
        }
        v
    }

    /// Sets the buckets of every histogram this configuration emits
    /// ([`histogram_buckets`](Self::histogram_buckets)) on a Prometheus exporter's
    /// builder (`prometheus` feature), instead of a loop over
    /// `set_buckets_for_metric`. Without buckets that exporter renders histograms as
    /// summaries, which cannot be aggregated across replicas.
    ///
    /// ```
    /// use llm_usage_tower::prometheus::PrometheusBuilder;
    /// use llm_usage_tower::MetricsConfig;
    ///
    /// let metrics = MetricsConfig::otel();
    /// let builder = metrics.install_buckets(PrometheusBuilder::new())?;
    /// let recorder = builder.build_recorder();
    /// # let _ = recorder;
    /// # Ok::<(), llm_usage_tower::prometheus::BuildError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The builder's error for a histogram without boundaries (none of the tables has
    /// one).
    #[cfg(feature = "prometheus")]
    pub fn install_buckets(
        &self,
        builder: crate::prometheus::PrometheusBuilder,
    ) -> Result<crate::prometheus::PrometheusBuilder, crate::prometheus::BuildError> {
        llm_usage_report::prometheus::install_buckets(builder, self.histogram_buckets())
    }

    /// Registers descriptions and units of every metric with the installed recorder.
    pub fn describe(&self) {
        let unit = match self.time_unit {
            TimeUnit::Seconds => metrics::Unit::Seconds,
            TimeUnit::Milliseconds => metrics::Unit::Milliseconds,
        };
        for n in self.token_histogram.names() {
            metrics::describe_histogram!(n, "Tokens used per LLM exchange, by token type.");
        }
        for n in self.token_counter.names() {
            metrics::describe_counter!(n, "Tokens used by LLM exchanges.");
        }
        for n in self.inference_usage.names() {
            metrics::describe_counter!(
                n,
                "Tokens used by LLM inference, by modality (gen_ai.client.inference.usage)."
            );
        }
        if let Some(n) = &self.requests {
            metrics::describe_counter!(n.clone(), "LLM exchanges observed.");
        }
        if let Some(n) = &self.estimated_requests {
            metrics::describe_counter!(
                n.clone(),
                "LLM exchanges whose token figures include an estimate."
            );
        }
        if let Some(n) = &self.request_duration {
            metrics::describe_histogram!(n.clone(), unit, "LLM exchange duration.");
        }
        if let Some(n) = &self.time_to_first_byte {
            metrics::describe_histogram!(
                n.clone(),
                unit,
                "Time to the first byte of the response body."
            );
        }
        if let Some(n) = &self.time_to_first_token {
            metrics::describe_histogram!(
                n.clone(),
                unit,
                "Time to the first complete response event."
            );
        }
        if let Some(n) = &self.time_per_output_token {
            metrics::describe_histogram!(
                n.clone(),
                unit,
                "Time per output token after the first (streams)."
            );
        }
        for (n, m) in [
            (&self.cost, Metric::CostMicros),
            (&self.price_lookup_misses, Metric::PriceLookupMisses),
            (&self.budget_denied, Metric::BudgetRejected),
        ] {
            if let Some(n) = n {
                metrics::describe_counter!(n.clone(), m.description());
            }
        }
        if let Some(n) = &self.inject_skipped {
            metrics::describe_counter!(
                n.clone(),
                "stream_options.include_usage injections skipped, by reason."
            );
        }
    }

    pub(crate) fn request_values(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        ext: &Extensions,
    ) -> Vec<Option<String>> {
        self.labels
            .iter()
            .map(|l| {
                if l.is_request_time() {
                    l.request_value(uri, headers, ext)
                } else {
                    None
                }
            })
            .collect()
    }

    pub(crate) fn resolve(
        &self,
        request_values: &[Option<String>],
        record: &llm_usage_core::UsageRecord,
        status: Option<http::StatusCode>,
        outcome: Outcome,
    ) -> Vec<(SharedString, String)> {
        let model = |m: Option<&str>| match m {
            Some(m) if !m.is_empty() => self.model_cap.admit(&clean(m, MAX_LABEL_LEN)),
            _ => UNKNOWN.to_owned(),
        };
        self.labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let v = match &l.source {
                    Source::Record(r) if r.is_model() => model(r.value(record, None)),
                    Source::Record(r) => r
                        .value(record, None)
                        .map(str::to_owned)
                        .unwrap_or_else(|| UNKNOWN.to_owned()),
                    Source::StatusClass => match status {
                        Some(s) => format!("{}xx", s.as_u16() / 100),
                        None => "error".to_owned(),
                    },
                    Source::Status => match status {
                        Some(s) => s.as_u16().to_string(),
                        None => "error".to_owned(),
                    },
                    Source::Outcome => outcome.as_str().to_owned(),
                    _ => request_values
                        .get(i)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| UNKNOWN.to_owned()),
                };
                let v = match (&l.cap, &l.source) {
                    (Some(cap), Source::Record(r)) if r.is_model() && v != UNKNOWN => cap.admit(&v),
                    _ => v,
                };
                (l.name.clone(), v)
            })
            .collect()
    }

    /// Counts one request denied by the limit `limit`, with the labels the request had.
    pub(crate) fn emit_denied(&self, labels: &[(SharedString, String)], limit: &str) {
        let Some(n) = &self.budget_denied else {
            return;
        };
        let mut l: Vec<metrics::Label> = labels
            .iter()
            .map(|(k, v)| metrics::Label::new(k.clone(), v.clone()))
            .collect();
        l.push(metrics::Label::new(
            self.budget_limit_label.clone(),
            limit.to_owned(),
        ));
        metrics::counter!(n.clone(), l.iter()).increment(1);
    }

    pub(crate) fn emit(&self, ev: &UsageEvent) {
        let base: Vec<metrics::Label> = ev
            .labels
            .iter()
            .map(|(k, v)| metrics::Label::new(k.clone(), v.clone()))
            .collect();
        // A response a realtime session closed: its tokens and cost, not a request and not
        // durations (the session's, counted with its last record).
        let closed = ev.realtime_response.is_some();
        if let (Some(n), false) = (&self.requests, closed) {
            metrics::counter!(n.clone(), base.iter()).increment(1);
        }
        if let (Some(n), true) = (&self.estimated_requests, ev.record.estimated) {
            metrics::counter!(n.clone(), base.iter()).increment(1);
        }
        // The shared walk over the record's token figures: the types, and the parts of
        // input and output (audio, image, the cache writes' lifetimes). A part is a type of
        // its own where the type is a label, its own counter in the per-type (ASM)
        // layout, and on neither the histogram nor the usage counters (sums of types).
        for fig in figures(&ev.record) {
            let value = fig.value;
            let Some(t) = fig.token_type else {
                match &self.token_counter {
                    TokenMetric::Labelled { name, label } => {
                        let mut labels = base.clone();
                        labels.push(metrics::Label::new(label.clone(), fig.type_label));
                        metrics::counter!(name.clone(), labels.iter()).increment(value);
                    }
                    TokenMetric::PerType { .. } => {
                        if let Some(n) = fig.field.asm_counter {
                            metrics::counter!(n, base.iter()).increment(value);
                        }
                    }
                    TokenMetric::Off => {}
                }
                continue;
            };
            if let Some((name, label)) = self.token_counter.target(t) {
                let labels = with_type(&base, label, t);
                metrics::counter!(name.clone(), labels.iter()).increment(value);
            }
            if let Some((name, _)) = self.inference_usage.target(t) {
                let mut labels = base.clone();
                let modality = t.field().modality.unwrap_or(UNKNOWN_MODALITY);
                labels.push(metrics::Label::new(MODALITY_LABEL, modality));
                metrics::counter!(name.clone(), labels.iter()).increment(value);
            }
            // One name with the type as a label carries `input` and `output` only: a
            // subset there would be counted twice by a sum over types.
            let shared = matches!(self.token_histogram, TokenMetric::Labelled { .. });
            if let (Some((name, label)), false) =
                (self.token_histogram.target(t), shared && t.is_subset())
            {
                let labels = with_type(&base, label, t);
                metrics::histogram!(name.clone(), labels.iter()).record(value as f64);
            }
        }
        if closed {
            self.emit_costs_and_skips(ev, &base);
            return;
        }
        if let Some(n) = &self.request_duration {
            metrics::histogram!(n.clone(), base.iter())
                .record(time_in(self.time_unit, ev.duration));
        }
        if let (Some(n), Some(t)) = (&self.time_to_first_byte, ev.time_to_first_byte) {
            metrics::histogram!(n.clone(), base.iter()).record(time_in(self.time_unit, t));
        }
        if let (Some(n), Some(t)) = (&self.time_to_first_token, ev.time_to_first_token) {
            metrics::histogram!(n.clone(), base.iter()).record(time_in(self.time_unit, t));
        }
        if let (Some(n), Some(t)) = (&self.time_per_output_token, ev.time_per_output_token()) {
            metrics::histogram!(n.clone(), base.iter()).record(time_in(self.time_unit, t));
        }
        self.emit_costs_and_skips(ev, &base);
    }

    /// The cost, price lookup miss and injection skip counters of `ev`.
    fn emit_costs_and_skips(&self, ev: &UsageEvent, base: &[metrics::Label]) {
        if let Some(p) = &ev.pricing {
            if let (Some(n), true) = (&self.price_lookup_misses, p.is_miss()) {
                metrics::counter!(n.clone(), base.iter()).increment(1);
            }
            if let (Some(n), Some(a)) = (&self.cost, p.amount()) {
                let micros = u64::try_from(a.micros_floor()).unwrap_or(u64::MAX);
                metrics::counter!(n.clone(), base.iter()).increment(micros);
            }
        }
        if let (Some(n), Some(Injection::Skipped(why))) = (&self.inject_skipped, ev.injection) {
            let mut labels = base.to_vec();
            labels.push(metrics::Label::new(
                self.skip_reason_label.clone(),
                why.as_str(),
            ));
            metrics::counter!(n.clone(), labels.iter()).increment(1);
        }
    }
}

fn with_type(
    base: &[metrics::Label],
    label: Option<&SharedString>,
    t: TokenType,
) -> Vec<metrics::Label> {
    let mut v = base.to_vec();
    if let Some(l) = label {
        v.push(metrics::Label::new(l.clone(), t.as_str()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_admits_first_values_then_other() {
        let cap = ValueCap::new(None, Some(2));
        assert_eq!(cap.admit("a"), "a");
        assert_eq!(cap.admit("b"), "b");
        assert_eq!(cap.admit("c"), OTHER);
        assert_eq!(cap.admit("a"), "a");
    }

    #[test]
    fn allow_list_alone_and_with_cap() {
        let allow: HashSet<String> = ["x".to_string()].into_iter().collect();
        let only = ValueCap::new(Some(allow.clone()), None);
        assert_eq!(only.admit("x"), "x");
        assert_eq!(only.admit("y"), OTHER);
        let both = ValueCap::new(Some(allow), Some(1));
        assert_eq!(both.admit("y"), "y");
        assert_eq!(both.admit("z"), OTHER);
        assert_eq!(both.admit("x"), "x");
    }

    #[test]
    fn profiles_name_their_metrics() {
        let o = MetricsConfig::otel();
        assert!(o
            .metric_names()
            .contains(&"gen_ai_client_token_usage".to_string()));
        let b = o.histogram_buckets();
        assert_eq!(b.len(), 5);
        let a = MetricsConfig::asm("w", "ns");
        let names = a.metric_names();
        assert!(names.contains(&"asm_llm_proxy_completion_tokens".to_string()));
        assert!(!names.iter().any(|n| n.starts_with("gen_ai")));
        let ttft = a
            .histogram_buckets()
            .into_iter()
            .find(|(n, _)| n == "asm_llm_proxy_time_to_first_token_ms")
            .unwrap();
        assert_eq!(ttft.1[0], 1.0);
    }

    /// The durations' names follow the unit, by the shared table; a name the user chose
    /// stays.
    #[test]
    fn time_unit_renames_the_profile_durations() {
        let s = MetricsConfig::otel();
        let ms = MetricsConfig::otel()
            .time_to_first_byte_histogram(Some("my_ttfb"))
            .time_unit(TimeUnit::Milliseconds);
        let durations = |m: &MetricsConfig| {
            let mut v: Vec<(String, f64)> = m
                .histogram_buckets()
                .into_iter()
                .filter(|(n, _)| n != "gen_ai_client_token_usage")
                .map(|(n, b)| (n, b[0]))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(
            durations(&s),
            [
                ("gen_ai_server_request_duration_seconds".to_string(), 0.01),
                (
                    "gen_ai_server_time_per_output_token_seconds".to_string(),
                    0.01
                ),
                (
                    "gen_ai_server_time_to_first_token_seconds".to_string(),
                    0.001
                ),
                ("llm_usage_time_to_first_byte_seconds".to_string(), 0.001),
            ]
        );
        assert_eq!(
            durations(&ms),
            [
                (
                    "gen_ai_server_request_duration_milliseconds".to_string(),
                    10.0
                ),
                (
                    "gen_ai_server_time_per_output_token_milliseconds".to_string(),
                    10.0
                ),
                (
                    "gen_ai_server_time_to_first_token_milliseconds".to_string(),
                    1.0
                ),
                ("my_ttfb".to_string(), 1.0),
            ]
        );
        // Back to seconds: the table's names again.
        let back = ms.time_unit(TimeUnit::Seconds);
        assert!(back
            .metric_names()
            .contains(&"gen_ai_server_request_duration_seconds".to_string()));
        // The filter's otel names are the table's, in milliseconds.
        for m in [
            Metric::RequestDuration,
            Metric::TimeToFirstToken,
            Metric::TimePerOutputToken,
        ] {
            let want = m.name_in(Profile::Otel, TimeUnit::Milliseconds).unwrap();
            assert!(
                durations(&MetricsConfig::otel().time_unit(TimeUnit::Milliseconds))
                    .iter()
                    .any(|(n, _)| n == want)
            );
        }
    }
}
