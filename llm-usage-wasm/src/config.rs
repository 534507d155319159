//! Plugin configuration: the JSON given to `on_configure`, parsed once per VM.
//!
//! Every field is optional; an empty configuration gives the ASM-compatible defaults.
//! Unknown fields are an error, so a typo is reported instead of silently ignored.
//! See the crate README for the reference.

use std::fmt;
use std::ops::Index;

use llm_usage_core::Provider;
use llm_usage_report::names::{Dimension as Shared, Metric, TimeUnit};
use llm_usage_report::select::RecordLabel;
use llm_usage_report::tokens::{TokenField, TOKEN_FIELDS};

use llm_usage_cost::{Budgets, PriceTable};

use crate::raw::{self, RawConfig, RawDimension};

/// Which names and dimensions the metrics use by default: the shared tables of
/// `llm_usage_report::names` (ASM or OpenTelemetry GenAI names).
pub use llm_usage_report::names::Profile;

/// How tags are embedded in a stat name, for Envoy's `stats_tags` to extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagFormat {
    /// `name|tag=value|tag=value`: the form the ASM bootstrap `stats_tags` regexes
    /// `(\|tag=([^|]*))` extract.
    Pipe,
    /// `tag=.=value;.;tag=.=value;.;name`: the form Istio renders for ProxyConfig
    /// `extraStatTags` (`(tag=\.=(.*?);\.;)`), so no bootstrap override is needed.
    Istio,
}

/// Where a dimension's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The proxy's own workload (`node.metadata.WORKLOAD_NAME`).
    SourceWorkload,
    /// The proxy's own namespace (`node.metadata.NAMESPACE`).
    SourceWorkloadNamespace,
    /// The request authority (`:authority`), else the upstream cluster name.
    DestinationService,
    /// The best model: response, else request, else path, else configured.
    Model,
    /// The request's model, else the configured one.
    RequestModel,
    /// The model the response reported.
    ResponseModel,
    /// The provider name (`gen_ai.provider.name` values).
    Provider,
    /// A request header (lower-case name).
    Header(String),
}

impl Source {
    /// Reads a dimension source as the configuration writes it.
    pub(crate) fn parse(s: &str) -> Result<Source, String> {
        Ok(match s {
            "source_workload" => Source::SourceWorkload,
            "source_workload_namespace" => Source::SourceWorkloadNamespace,
            "destination_service" => Source::DestinationService,
            "model" => Source::Model,
            "request_model" => Source::RequestModel,
            "response_model" => Source::ResponseModel,
            "provider" => Source::Provider,
            other => match other.strip_prefix("header:") {
                Some(h) if !h.is_empty() => Source::Header(h.to_ascii_lowercase()),
                _ => {
                    return Err(format!(
                        "unknown dimension source {other:?}; expected one of source_workload, \
                         source_workload_namespace, destination_service, model, request_model, \
                         response_model, provider, header:<name>"
                    ))
                }
            },
        })
    }

    /// Whether values come from a model field (and so fall under the model limits).
    pub fn is_model(&self) -> bool {
        self.record_label().is_some_and(RecordLabel::is_model)
    }

    /// The record-derived value this source reads, if it is one.
    pub fn record_label(&self) -> Option<RecordLabel> {
        Some(match self {
            Source::Model => RecordLabel::Model,
            Source::RequestModel => RecordLabel::RequestModel,
            Source::ResponseModel => RecordLabel::ResponseModel,
            Source::Provider => RecordLabel::Provider,
            _ => return None,
        })
    }

    /// Whether a client can choose the value (and so the value count must be capped).
    pub fn client_chosen(&self) -> bool {
        matches!(self, Source::DestinationService | Source::Header(_))
    }
}

/// One metric dimension: a tag name and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimension {
    /// The tag name, as the `stats_tags` entry names it.
    pub tag: String,
    /// Where the value comes from.
    pub source: Source,
}

/// The metric kinds the filter can emit; each has a configurable name (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricKind {
    /// Counter of input tokens.
    PromptTokens,
    /// Counter of output tokens.
    CompletionTokens,
    /// Counter of total tokens.
    TotalTokens,
    /// Counter of cached input tokens.
    CachedTokens,
    /// Counter of cache-creation input tokens.
    CacheCreationTokens,
    /// Counter of reasoning tokens.
    ReasoningTokens,
    /// Counter of the audio part of input tokens.
    InputAudioTokens,
    /// Counter of the image part of input tokens.
    InputImageTokens,
    /// Counter of the audio part of output tokens.
    OutputAudioTokens,
    /// Counter of the image part of output tokens.
    OutputImageTokens,
    /// Counter of the 5-minute part of cache-write input tokens.
    CacheCreation5mTokens,
    /// Counter of the 1-hour part of cache-write input tokens.
    CacheCreation1hTokens,
    /// Counter of LLM requests.
    Requests,
    /// Counter of LLM requests whose record holds an estimated token figure (the share
    /// of traffic measured from text, not reported by the provider).
    EstimatedRequests,
    /// Histogram of tokens per request with a token-type tag (OTel `gen_ai.client.token.usage`).
    TokenUsage,
    /// Histogram of time to the first response byte, in ms.
    TimeToFirstByte,
    /// Histogram of time to the first content-bearing response event, in ms.
    TimeToFirstToken,
    /// Histogram of time per output token after the first, in ms.
    TimePerOutputToken,
    /// Histogram of request duration, in ms.
    RequestDuration,
    /// Counter of `stream_options.include_usage` injections skipped, with the reason as a tag.
    InjectSkipped,
    /// Counter of cost, in micro-units of the price table's currency (with `prices`).
    CostMicros,
    /// Counter of exchanges whose model has no price (with `prices`).
    PriceLookupMisses,
    /// Counter of requests answered `429` by a token budget, with the limit as a tag.
    BudgetRejected,
    /// Counter of shared-data failures of the budgets (each failed open).
    BudgetStoreErrors,
    /// Counter of server-side web search requests.
    WebSearchRequests,
    /// Counter of server-side web fetch requests.
    WebFetchRequests,
}

impl MetricKind {
    /// Every kind, in config order.
    pub const ALL: [MetricKind; 26] = [
        MetricKind::PromptTokens,
        MetricKind::CompletionTokens,
        MetricKind::TotalTokens,
        MetricKind::CachedTokens,
        MetricKind::CacheCreationTokens,
        MetricKind::ReasoningTokens,
        MetricKind::InputAudioTokens,
        MetricKind::InputImageTokens,
        MetricKind::OutputAudioTokens,
        MetricKind::OutputImageTokens,
        MetricKind::CacheCreation5mTokens,
        MetricKind::CacheCreation1hTokens,
        MetricKind::Requests,
        MetricKind::EstimatedRequests,
        MetricKind::TokenUsage,
        MetricKind::TimeToFirstByte,
        MetricKind::TimeToFirstToken,
        MetricKind::TimePerOutputToken,
        MetricKind::RequestDuration,
        MetricKind::InjectSkipped,
        MetricKind::CostMicros,
        MetricKind::PriceLookupMisses,
        MetricKind::BudgetRejected,
        MetricKind::BudgetStoreErrors,
        MetricKind::WebSearchRequests,
        MetricKind::WebFetchRequests,
    ];

    /// The key of this kind in the `metrics` config object.
    pub fn key(self) -> &'static str {
        match self {
            MetricKind::PromptTokens => "prompt_tokens",
            MetricKind::CompletionTokens => "completion_tokens",
            MetricKind::TotalTokens => "total_tokens",
            MetricKind::CachedTokens => "cached_tokens",
            MetricKind::CacheCreationTokens => "cache_creation_tokens",
            MetricKind::ReasoningTokens => "reasoning_tokens",
            MetricKind::InputAudioTokens => "input_audio_tokens",
            MetricKind::InputImageTokens => "input_image_tokens",
            MetricKind::OutputAudioTokens => "output_audio_tokens",
            MetricKind::OutputImageTokens => "output_image_tokens",
            MetricKind::CacheCreation5mTokens => "cache_creation_5m_tokens",
            MetricKind::CacheCreation1hTokens => "cache_creation_1h_tokens",
            MetricKind::Requests => "requests",
            MetricKind::EstimatedRequests => "estimated_requests",
            MetricKind::TokenUsage => "token_usage",
            MetricKind::TimeToFirstByte => "time_to_first_byte",
            MetricKind::TimeToFirstToken => "time_to_first_token",
            MetricKind::TimePerOutputToken => "time_per_output_token",
            MetricKind::RequestDuration => "request_duration",
            MetricKind::InjectSkipped => "inject_skipped",
            MetricKind::CostMicros => "cost_micros",
            MetricKind::PriceLookupMisses => "price_lookup_misses",
            MetricKind::BudgetRejected => "budget_rejected",
            MetricKind::BudgetStoreErrors => "budget_store_errors",
            MetricKind::WebSearchRequests => "web_search_requests",
            MetricKind::WebFetchRequests => "web_fetch_requests",
        }
    }

    /// The kind whose `metrics` key is `key`.
    pub fn from_key(key: &str) -> Option<MetricKind> {
        MetricKind::ALL.iter().copied().find(|k| k.key() == key)
    }

    /// Every `metrics` key, comma-separated (for error messages).
    pub(crate) fn keys() -> String {
        let keys: Vec<&str> = MetricKind::ALL.iter().map(|k| k.key()).collect();
        keys.join(", ")
    }

    /// Whether the kind is a histogram (otherwise a counter).
    pub fn is_histogram(self) -> bool {
        matches!(
            self,
            MetricKind::TokenUsage
                | MetricKind::TimeToFirstByte
                | MetricKind::TimeToFirstToken
                | MetricKind::TimePerOutputToken
                | MetricKind::RequestDuration
        )
    }

    /// The token figure this kind counts (a row of the shared token table), if any.
    pub fn token_field(self) -> Option<&'static TokenField> {
        let key = self.key();
        TOKEN_FIELDS.iter().find(|f| f.metric_key == key)
    }

    /// The shared metric this kind is, when it is not a per-type token counter.
    fn metric(self) -> Option<Metric> {
        Some(match self {
            MetricKind::Requests => Metric::Requests,
            MetricKind::EstimatedRequests => Metric::EstimatedRequests,
            MetricKind::TokenUsage => Metric::TokenUsage,
            MetricKind::TimeToFirstByte => Metric::TimeToFirstByte,
            MetricKind::TimeToFirstToken => Metric::TimeToFirstToken,
            MetricKind::TimePerOutputToken => Metric::TimePerOutputToken,
            MetricKind::RequestDuration => Metric::RequestDuration,
            MetricKind::InjectSkipped => Metric::InjectSkipped,
            MetricKind::CostMicros => Metric::CostMicros,
            MetricKind::PriceLookupMisses => Metric::PriceLookupMisses,
            MetricKind::BudgetRejected => Metric::BudgetRejected,
            MetricKind::BudgetStoreErrors => Metric::BudgetStoreErrors,
            MetricKind::WebSearchRequests => Metric::WebSearchRequests,
            MetricKind::WebFetchRequests => Metric::WebFetchRequests,
            _ => return None,
        })
    }

    /// The default name of this kind in a profile (`None`: not emitted by default), from
    /// the shared tables, durations under their names in [`UNIT`] (Envoy histograms
    /// record integers). The `otel` profile's defaults in the filter are the
    /// OpenTelemetry histograms, the `gen_ai.client.inference.usage.*` counters (one per
    /// token type, subsets included), the estimate and injection counters: no request
    /// counter (the duration histogram's count carries it).
    pub fn default_name(self, profile: Profile) -> Option<&'static str> {
        match (profile, self.metric()) {
            (Profile::Asm, None) => self.token_field()?.asm_counter,
            (Profile::Otel, None) => self.token_field()?.otel_counter,
            (Profile::Otel, Some(Metric::Requests | Metric::TimeToFirstByte)) => None,
            (p, Some(m)) => m.name_in(p, UNIT),
        }
    }
}

/// The unit the filter records durations in: milliseconds, in every profile. Envoy's
/// `proxy_record_metric` takes an unsigned integer (`Context::recordMetric(uint32_t,
/// uint64_t)` in `source/extensions/common/wasm/context.cc`, on a histogram defined with
/// `Stats::Histogram::Unit::Unspecified`), and the Prometheus output prints the recorded
/// values as they are: seconds would all be 0. The names say so (`…_milliseconds`,
/// `…_ms`), by the shared table ([`Metric::name_in`]).
pub const UNIT: TimeUnit = TimeUnit::Milliseconds;

/// Metric names by kind (absent kind: not emitted), iterated in kind order.
///
/// One slot per kind rather than a `BTreeMap<MetricKind, String>`: the same reads, in the
/// same order, without the map's insert/remove/rebalance code in the module (issue 6).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    names: [Option<String>; MetricKind::ALL.len()],
}

impl Metrics {
    /// The name of `kind`, if it is emitted.
    pub fn get(&self, kind: &MetricKind) -> Option<&String> {
        self.names[*kind as usize].as_ref()
    }

    /// Whether `kind` is emitted.
    pub fn contains_key(&self, kind: &MetricKind) -> bool {
        self.get(kind).is_some()
    }

    /// Names `kind` (replacing any name it had).
    pub fn insert(&mut self, kind: MetricKind, name: String) {
        self.names[kind as usize] = Some(name);
    }

    /// Stops emitting `kind`.
    pub fn remove(&mut self, kind: &MetricKind) {
        self.names[*kind as usize] = None;
    }

    /// How many kinds are emitted.
    pub fn len(&self) -> usize {
        self.names.iter().filter(|n| n.is_some()).count()
    }

    /// Whether no kind is emitted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The emitted kinds and their names, in kind order.
    pub fn iter(&self) -> impl Iterator<Item = (MetricKind, &String)> {
        MetricKind::ALL
            .iter()
            .zip(&self.names)
            .filter_map(|(k, n)| Some((*k, n.as_ref()?)))
    }
}

impl Index<&MetricKind> for Metrics {
    type Output = String;

    fn index(&self, kind: &MetricKind) -> &String {
        self.get(kind).expect("metric kind not emitted")
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Provider and default model for requests matching a path prefix and/or authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Matches when `:path` starts with this (`None`: any path).
    pub path_prefix: Option<String>,
    /// Matches when `:authority` equals this, case-insensitively, port ignored (`None`: any).
    pub authority: Option<String>,
    /// The provider to assume instead of detecting it.
    pub provider: Option<Provider>,
    /// The model to report when the traffic names none.
    pub default_model: Option<String>,
    /// `stream_options.include_usage` injection on this route (`None`: the global setting).
    pub inject_include_usage: Option<bool>,
}

/// A model chosen from a request header, for requests that name no model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRule {
    /// Lower-case header name.
    pub header: String,
    /// The header value that selects the model (`None`: any value, i.e. header present).
    pub equals: Option<String>,
    /// The model to report.
    pub model: String,
}

/// The parsed, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Metric naming profile.
    pub profile: Profile,
    /// Tag encoding in stat names.
    pub tag_format: TagFormat,
    /// Filter-state property prefix (one path element `<prefix>.<key>`); `None` disables.
    pub property_prefix: Option<String>,
    /// Metric names per kind (absent kind: not emitted).
    pub metrics: Metrics,
    /// The dimensions of every metric, in order.
    pub dimensions: Vec<Dimension>,
    /// The tag for the token type on the `token_usage` histogram.
    pub token_type_tag: String,
    /// The tag for the token modality on the per-type token counters (`otel`:
    /// `gen_ai_token_modality`, `unknown` for a figure over every modality; `None` in
    /// `asm`, whose counters have no such tag).
    pub token_modality_tag: Option<String>,
    /// Provider forced for all traffic (routes can override).
    pub provider: Option<Provider>,
    /// Per-route overrides, first match wins.
    pub routes: Vec<Route>,
    /// Model reported when the traffic names none and no rule matches.
    pub default_model: Option<String>,
    /// Header rules choosing a model when the traffic names none; first match wins.
    pub model_rules: Vec<ModelRule>,
    /// Models that get their own label value; others become `other_model`. Empty: any.
    pub model_allow: Vec<String>,
    /// The most distinct model label values per VM before new ones become `other_model`.
    pub max_models: usize,
    /// The label value for models beyond the allow-list or the cap.
    pub other_model: String,
    /// The most distinct values per client-chosen dimension (headers, authority).
    pub max_label_values: usize,
    /// Longest label value kept; longer values are cut.
    pub max_label_len: usize,
    /// Stop copying a body into the filter after this many bytes.
    pub max_body_bytes: Option<u64>,
    /// Inject `stream_options.include_usage` into streamed OpenAI-compatible requests (routes
    /// can override).
    pub inject_include_usage: bool,
    /// The largest request body held for injection; larger ones pass untouched.
    pub max_inject_body_bytes: u64,
    /// The tag carrying the reason on the `inject_skipped` counter.
    pub skip_reason_tag: String,
    /// The tag carrying the limit's name on the `budget_rejected` counter.
    pub budget_limit_tag: String,
    /// The price table (`prices`): each exchange's cost, when its model is priced.
    pub prices: Option<PriceTable>,
    /// The token limits (`token_limits`); none by default.
    pub budgets: Budgets,
}

impl Default for Config {
    fn default() -> Self {
        Config::for_profile(Profile::Asm)
    }
}

impl Config {
    /// The defaults of a profile.
    pub fn for_profile(profile: Profile) -> Config {
        let mut metrics = Metrics::default();
        for k in MetricKind::ALL {
            if let Some(n) = k.default_name(profile) {
                metrics.insert(k, n.to_string());
            }
        }
        Config {
            profile,
            tag_format: TagFormat::Pipe,
            property_prefix: Some("asm.llmproxy".to_string()),
            metrics,
            dimensions: profile
                .dimensions()
                .iter()
                .map(|(t, s)| Dimension {
                    tag: t.to_string(),
                    source: match s {
                        Shared::SourceWorkload => Source::SourceWorkload,
                        Shared::SourceWorkloadNamespace => Source::SourceWorkloadNamespace,
                        Shared::DestinationService => Source::DestinationService,
                        Shared::Record(RecordLabel::Model) => Source::Model,
                        Shared::Record(RecordLabel::RequestModel) => Source::RequestModel,
                        Shared::Record(RecordLabel::ResponseModel) => Source::ResponseModel,
                        Shared::Record(RecordLabel::Provider) => Source::Provider,
                    },
                })
                .collect(),
            token_type_tag: profile.token_type_label().to_string(),
            token_modality_tag: match profile {
                Profile::Asm => None,
                Profile::Otel => Some(profile.token_modality_label().to_string()),
            },
            provider: None,
            routes: Vec::new(),
            default_model: None,
            model_rules: Vec::new(),
            model_allow: Vec::new(),
            max_models: 100,
            other_model: "other".to_string(),
            max_label_values: 100,
            max_label_len: 128,
            max_body_bytes: None,
            inject_include_usage: false,
            max_inject_body_bytes: llm_usage_core::inject::DEFAULT_MAX_INJECT_BODY_BYTES,
            skip_reason_tag: profile.skip_reason_label().to_string(),
            budget_limit_tag: profile.budget_limit_label().to_string(),
            prices: None,
            budgets: Budgets::default(),
        }
    }

    /// Parses the plugin configuration. Empty (or whitespace-only) input gives the defaults.
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Config::default());
        }
        raw::read(bytes)
            .and_then(|raw: RawConfig<'_>| raw.validate(bytes))
            .map_err(|e| format!("invalid llm-usage plugin configuration: {e}"))
    }

    /// The provider and default model for a request.
    pub fn route_for(&self, path: &str, authority: &str) -> (Option<Provider>, Option<&str>) {
        match self.matching_route(path, authority) {
            Some(r) => (
                r.provider.or(self.provider),
                r.default_model.as_deref().or(self.default_model.as_deref()),
            ),
            None => (self.provider, self.default_model.as_deref()),
        }
    }

    /// Whether `stream_options.include_usage` injection is on for a request: the first
    /// matching route's setting, else the global one.
    pub fn inject_for(&self, path: &str, authority: &str) -> bool {
        self.matching_route(path, authority)
            .and_then(|r| r.inject_include_usage)
            .unwrap_or(self.inject_include_usage)
    }

    fn matching_route(&self, path: &str, authority: &str) -> Option<&Route> {
        let host = strip_port(authority);
        self.routes.iter().find(|r| {
            let path_ok = r
                .path_prefix
                .as_deref()
                .map_or(true, |p| path.starts_with(p));
            let auth_ok = r
                .authority
                .as_deref()
                .map_or(true, |a| strip_port(a).eq_ignore_ascii_case(host));
            path_ok && auth_ok
        })
    }
}

/// `host:port` → `host` (IPv6 literals in brackets keep their colons).
pub fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.find(']') {
            Some(i) => &authority[..i + 2],
            None => authority,
        };
    }
    match authority.rfind(':') {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &authority[..i],
        _ => authority,
    }
}

impl RawConfig<'_> {
    fn validate(mut self, document: &[u8]) -> Result<Config, String> {
        let profile = self.profile.as_ref().map_or(Profile::Asm, |p| p.0);
        let mut c = Config::for_profile(profile);
        self.apply(&mut c, document)?;
        Ok(c)
    }

    /// Applies the fields other than `profile` to `c`, the profile's defaults, and makes
    /// the checks that span fields.
    fn apply(&mut self, c: &mut Config, document: &[u8]) -> Result<(), String> {
        if let Some(t) = &self.tag_format {
            c.tag_format = t.0;
        }
        match self.property_prefix.take() {
            None => {}
            Some(None) => c.property_prefix = None,
            Some(Some(p)) if p.is_empty() => c.property_prefix = None,
            Some(Some(p)) => {
                if p.bytes().any(|b| b == 0) {
                    return Err("property_prefix: must not contain NUL".into());
                }
                c.property_prefix = Some(p)
            }
        }
        let metrics = std::mem::take(&mut self.metrics.0);
        for (i, (key, name)) in metrics.iter().enumerate() {
            // A repeated key: the last one wins.
            if metrics[i + 1..].iter().any(|(k, _)| k == key) {
                continue;
            }
            match name {
                None => c.metrics.remove(key),
                Some(n) => c.metrics.insert(*key, n.clone()),
            }
        }
        let to_dims = |raw: Vec<RawDimension>| -> Vec<Dimension> {
            raw.into_iter()
                .map(|d| Dimension {
                    tag: d.tag.0,
                    source: d.from.0,
                })
                .collect()
        };
        if let Some(dims) = self.dimensions.take() {
            c.dimensions = to_dims(dims);
        }
        c.dimensions
            .extend(to_dims(std::mem::take(&mut self.extra_dimensions)));
        if let Some(t) = self.token_type_tag.take() {
            c.token_type_tag = t.0;
        }
        // (A few dimensions: compared pairwise, without a set's code in the module.)
        for (i, d) in c.dimensions.iter().enumerate() {
            if c.dimensions[..i].iter().any(|e| e.tag == d.tag)
                || d.tag == c.token_type_tag
                || c.token_modality_tag.as_ref() == Some(&d.tag)
                || d.tag == c.skip_reason_tag
                || d.tag == c.budget_limit_tag
            {
                return Err(format!("dimensions: tag {:?} is used twice", d.tag));
            }
        }
        c.provider = self.provider.as_ref().map(|p| p.0);
        for r in std::mem::take(&mut self.routes) {
            c.routes.push(Route {
                path_prefix: r.path_prefix,
                authority: r.authority,
                provider: r.provider.map(|p| p.0),
                default_model: r.default_model.filter(|m| !m.is_empty()),
                inject_include_usage: r.inject_include_usage,
            });
        }
        c.default_model = self.default_model.take().filter(|m| !m.is_empty());
        for (i, r) in std::mem::take(&mut self.model_rules)
            .into_iter()
            .enumerate()
        {
            if r.header.is_empty() || r.model.is_empty() {
                return Err(format!(
                    "model_rules[{i}]: header and model must not be empty"
                ));
            }
            c.model_rules.push(ModelRule {
                header: r.header.to_ascii_lowercase(),
                equals: r.equals,
                model: r.model,
            });
        }
        if let Some(m) = self.models.take() {
            c.model_allow = m.allow;
            if let Some(n) = m.max_distinct {
                c.max_models = n;
            }
            if let Some(o) = m.other {
                if o.is_empty() {
                    return Err("models.other: must not be empty".into());
                }
                c.other_model = o;
            }
        }
        if let Some(n) = self.max_label_values {
            c.max_label_values = n;
        }
        if let Some(n) = self.max_label_len {
            if n == 0 {
                return Err("max_label_len: must be at least 1".into());
            }
            c.max_label_len = n;
        }
        c.max_body_bytes = self.max_body_bytes;
        if let Some(b) = self.inject_include_usage {
            c.inject_include_usage = b;
        }
        if let Some(n) = self.max_inject_body_bytes {
            c.max_inject_body_bytes = n;
        }
        if let Some(v) = self.prices {
            c.prices = Some(PriceTable::from_json(v.get()).map_err(|e| {
                let (line, column) = raw::position(document, v);
                format!("prices (value at line {line} column {column}): {e}")
            })?);
        }
        if let Some(v) = self.token_limits {
            c.budgets = Budgets::from_json(v.get()).map_err(|e| {
                let (line, column) = raw::position(document, v);
                format!("token_limits (value at line {line} column {column}): {e}")
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_asm() {
        let c = Config::parse(b"").unwrap();
        assert_eq!(c.profile, Profile::Asm);
        assert_eq!(c.tag_format, TagFormat::Pipe);
        assert_eq!(c.property_prefix.as_deref(), Some("asm.llmproxy"));
        assert_eq!(
            c.metrics[&MetricKind::PromptTokens],
            "asm_llm_proxy_prompt_tokens"
        );
        assert_eq!(
            c.metrics[&MetricKind::CompletionTokens],
            "asm_llm_proxy_completion_tokens"
        );
        let tags: Vec<&str> = c.dimensions.iter().map(|d| d.tag.as_str()).collect();
        assert_eq!(
            tags,
            [
                "llmproxy_source_workload",
                "llmproxy_source_workload_namespace",
                "llmproxy_destination_service",
                "llmproxy_model"
            ]
        );
        assert!(Config::parse(b" \n").is_ok());
        assert!(Config::parse(b"{}").is_ok());
    }

    #[test]
    fn otel_profile() {
        let c = Config::parse(br#"{"profile":"otel","tag_format":"istio"}"#).unwrap();
        assert_eq!(c.tag_format, TagFormat::Istio);
        assert_eq!(
            c.metrics[&MetricKind::TokenUsage],
            "gen_ai_client_token_usage"
        );
        assert_eq!(
            c.metrics[&MetricKind::PromptTokens],
            "gen_ai_client_inference_usage_input_tokens"
        );
        assert_eq!(
            c.metrics[&MetricKind::ReasoningTokens],
            "gen_ai_client_inference_usage_reasoning_output_tokens"
        );
        assert!(!c.metrics.contains_key(&MetricKind::InputAudioTokens));
        assert_eq!(
            c.token_modality_tag.as_deref(),
            Some("gen_ai_token_modality")
        );
        // One name, one unit: the filter records milliseconds, under the names that say so.
        assert_eq!(
            c.metrics[&MetricKind::RequestDuration],
            "gen_ai_server_request_duration_milliseconds"
        );
        assert_eq!(
            c.metrics[&MetricKind::TimePerOutputToken],
            Metric::TimePerOutputToken
                .name_in(Profile::Otel, TimeUnit::Milliseconds)
                .unwrap()
        );
        assert_eq!(c.dimensions[0].source, Source::Provider);
        assert_eq!(Config::default().token_modality_tag, None);
        // The modality tag is not a dimension too.
        let e = Config::parse(
            br#"{"profile":"otel","extra_dimensions":[{"tag":"gen_ai_token_modality","from":"model"}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn full_config() {
        let c = Config::parse(
            br#"{
              "property_prefix": "llm",
              "metrics": {"requests": null, "total_tokens": "llm_total"},
              "extra_dimensions": [{"tag": "llmproxy_user_type", "from": "header:User-Type"}],
              "provider": "qwen",
              "routes": [{"path_prefix": "/compatible-mode/", "provider": "openai"}],
              "default_model": "qwen-1.8b-chat",
              "model_rules": [{"header": "User-Type", "equals": "subscriber", "model": "qwen-turbo"}],
              "models": {"allow": ["a"], "max_distinct": 5, "other": "misc"},
              "max_body_bytes": 1024
            }"#,
        )
        .unwrap();
        assert_eq!(c.property_prefix.as_deref(), Some("llm"));
        assert!(!c.metrics.contains_key(&MetricKind::Requests));
        assert_eq!(c.metrics[&MetricKind::TotalTokens], "llm_total");
        assert_eq!(c.dimensions[4].source, Source::Header("user-type".into()));
        assert_eq!(c.provider, Some(Provider::DashScope));
        assert_eq!(
            c.route_for("/compatible-mode/v1/chat", "x").0,
            Some(Provider::OpenAi)
        );
        assert_eq!(
            c.route_for("/api/v1", "x"),
            (Some(Provider::DashScope), Some("qwen-1.8b-chat"))
        );
        assert_eq!(c.model_rules[0].header, "user-type");
        assert_eq!(c.other_model, "misc");
        assert_eq!(c.max_models, 5);
        assert_eq!(c.max_body_bytes, Some(1024));
    }

    #[test]
    fn bad_configs_say_why() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "invalid llm-usage plugin configuration"),
            (
                br#"{"profil":"asm"}"#,
                "profil: unknown field `profil`, expected one of `profile`,",
            ),
            (br#"{"profile":"x"}"#, "profile"),
            (br#"{"tag_format":"x"}"#, "tag_format"),
            (br#"{"metrics":{"nope":"x"}}"#, "metrics.nope: unknown key"),
            (br#"{"metrics":{"requests":"a|b"}}"#, "not a valid name"),
            (
                br#"{"dimensions":[{"tag":"a=b","from":"model"}]}"#,
                "must match",
            ),
            (
                br#"{"dimensions":[{"tag":"a","from":"nope"}]}"#,
                "unknown dimension source",
            ),
            (
                br#"{"dimensions":[{"tag":"a","from":"model"},{"tag":"a","from":"provider"}]}"#,
                "twice",
            ),
            (br#"{"provider":"nope"}"#, "unknown provider"),
            (br#"{"routes":[{"provider":"nope"}]}"#, "routes[0].provider"),
            (
                br#"{"profile":"asm","profile":"otel"}"#,
                "duplicate field `profile`",
            ),
            (
                br#"{"max_label_len":1.5}"#,
                "max_label_len: invalid type: floating point `1.5`, expected usize at line 1 column 20",
            ),
            (
                br#"{"max_body_bytes":-1}"#,
                "max_body_bytes: invalid value: integer `-1`, expected u64",
            ),
            (
                br#"{"routes":[{"provider":5}]}"#,
                "routes[0].provider: invalid type: integer `5`, expected a string",
            ),
            (
                br#"{"dimensions":[{"tag":"a"}]}"#,
                "dimensions[0]: missing field `from`",
            ),
            (
                br#"{"extra_dimensions":null}"#,
                "extra_dimensions: invalid type: null, expected a sequence",
            ),
            (
                br#"{"models":{"allow":[1]}}"#,
                "models.allow[0]: invalid type: integer `1`, expected a string",
            ),
            (br#"{"metrics":[]}"#, "metrics: invalid type: sequence"),
            (br#"[]"#, "invalid length 0, expected a configuration object at line 1 column 2"),
            // Line, column and field path, also for values checked as they are read.
            (
                b"{\n  \"routes\": [\n    {\"provider\": \"nope\"}\n  ]\n}",
                "routes[0].provider: unknown provider \"nope\"; expected one of",
            ),
            (
                b"{\n  \"routes\": [\n    {\"provider\": \"nope\"}\n  ]\n}",
                "at line 3 column 23",
            ),
            (
                b"{\"dimensions\": [{\"tag\": \"x\", \"from\": \"header:\"}]}",
                "dimensions[0].from: unknown dimension source \"header:\"",
            ),
            (
                b"{\"metrics\": {\"requests\": \"a b\"}}",
                "metrics.requests: \"a b\" is not a valid name (use [A-Za-z0-9_.]) at line 1 column 30",
            ),
            (
                b"{\"profile\": \"asm\",\n \"tag_format\": \"csv\"}",
                "tag_format: unknown tag format \"csv\"; expected \"pipe\" or \"istio\" at line 2 column 20",
            ),
            (
                b"{\"models\": {\"allow\": [], \"max\": 3}}",
                "models.max: unknown field `max`, expected one of `allow`, `max_distinct`, `other` at line 1 column 30",
            ),
            (
                b"{\"profile\": \"asm\"} {}",
                "trailing characters at line 1 column 20",
            ),
            (
                b"{\n \"prices\": {\"currency\": \"USD\", \"per_tokens\": 1000000,\n  \"models\": {\"gpt-4o*\": {\"input\": 2.5, \"outptu\": 10}}}}",
                "prices (value at line 2 column 12): price table: model \"gpt-4o*\": unknown field `outptu`",
            ),
            (
                b"{\"prices\": {\"currency\": \"USD\", \"per_tokens\": 3, \"models\": {}}}",
                "prices (value at line 1 column 12): price table: per_tokens 3",
            ),
            (
                b"{\"token_limits\": [{\"name\": \"k\", \"key\": \"cookie\", \"tokens\": 1, \"window_s\": 60}]}",
                "token_limits (value at line 1 column 18): token limits: limit \"k\": key \"cookie\"",
            ),
            (
                b"{\"token_limits\": {\"name\": \"k\"}}",
                "token_limits (value at line 1 column 18): token limits: invalid type: map, expected a sequence",
            ),
            (
                br#"{"inject_include_usage":"yes"}"#,
                "inject_include_usage: invalid type: string \"yes\", expected a boolean",
            ),
            (
                br#"{"routes":[{"inject_include_usage":1}]}"#,
                "routes[0].inject_include_usage: invalid type: integer `1`, expected a boolean",
            ),
            (
                br#"{"dimensions":[{"tag":"llmproxy_inject_skip_reason","from":"model"}]}"#,
                "twice",
            ),
        ];
        for (input, want) in cases {
            let err = Config::parse(input).unwrap_err();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn null_is_absent_where_the_field_is_optional() {
        let c = Config::parse(
            br#"{"profile": null, "tag_format": null, "dimensions": null, "provider": null,
                 "default_model": null, "models": null, "max_label_values": null,
                 "max_label_len": null, "max_body_bytes": null, "token_type_tag": null,
                 "metrics": {"requests": null},
                 "routes": [{"path_prefix": null, "authority": null, "provider": null,
                             "default_model": null}],
                 "model_rules": [{"header": "h", "equals": null, "model": "m"}]}"#,
        )
        .unwrap();
        assert_eq!(c.profile, Profile::Asm);
        assert_eq!(c.dimensions.len(), 4);
        assert!(!c.metrics.contains_key(&MetricKind::Requests));
        assert_eq!(c.routes[0].provider, None);
        assert_eq!(c.model_rules[0].equals, None);
        // `property_prefix: null` turns filter state off (absent keeps the default).
        let c = Config::parse(br#"{"property_prefix": null}"#).unwrap();
        assert_eq!(c.property_prefix, None);
        // A repeated metrics key: the last one wins.
        let c = Config::parse(br#"{"metrics": {"requests": "a", "requests": "b"}}"#).unwrap();
        assert_eq!(c.metrics[&MetricKind::Requests], "b");
        // serde's array form of a struct: every field, in order.
        let c = Config::parse(br#"{"extra_dimensions": [["llmproxy_x", "model"]]}"#).unwrap();
        assert_eq!(c.dimensions[4].tag, "llmproxy_x");
    }

    #[test]
    fn injection_settings() {
        let c = Config::parse(b"{}").unwrap();
        assert!(!c.inject_include_usage);
        assert_eq!(c.max_inject_body_bytes, 1 << 20);
        assert!(!c.inject_for("/v1/chat/completions", "api.openai.com"));
        assert_eq!(
            c.metrics[&MetricKind::InjectSkipped],
            "asm_llm_proxy_inject_skipped"
        );
        assert_eq!(c.skip_reason_tag, "llmproxy_inject_skip_reason");
        let c = Config::parse(
            br#"{"inject_include_usage": true, "max_inject_body_bytes": 4096,
                 "routes": [{"authority": "api.mistral.ai", "inject_include_usage": false},
                            {"path_prefix": "/vllm/", "provider": "openai"},
                            {"authority": "x", "inject_include_usage": null}]}"#,
        )
        .unwrap();
        assert!(c.inject_for("/v1/chat/completions", "api.openai.com"));
        assert!(!c.inject_for("/v1/chat/completions", "api.mistral.ai:443"));
        assert!(c.inject_for("/vllm/v1/completions", "10.0.0.1"));
        assert!(c.inject_for("/v1/chat/completions", "x"));
        assert_eq!(c.max_inject_body_bytes, 4096);
        let c = Config::parse(
            br#"{"routes": [{"authority": "vllm.internal", "inject_include_usage": true}]}"#,
        )
        .unwrap();
        assert!(c.inject_for("/v1/chat/completions", "vllm.internal"));
        assert!(!c.inject_for("/v1/chat/completions", "api.mistral.ai"));
        let c =
            Config::parse(br#"{"profile": "otel", "metrics": {"inject_skipped": null}}"#).unwrap();
        assert!(!c.metrics.contains_key(&MetricKind::InjectSkipped));
        assert_eq!(c.skip_reason_tag, "inject_skip_reason");
        let c = Config::parse(br#"{"profile": "otel"}"#).unwrap();
        assert_eq!(
            c.metrics[&MetricKind::InjectSkipped],
            "llm_usage_inject_skipped"
        );
    }

    #[test]
    fn every_token_figure_has_a_metric_kind() {
        for f in &TOKEN_FIELDS {
            let kind = MetricKind::from_key(f.metric_key).expect(f.metric_key);
            assert!(std::ptr::eq(kind.token_field().unwrap(), f));
            // `asm` counts each figure under ASM's name; `otel` each token type under its
            // `gen_ai.client.inference.usage.*` counter (the parts and the total: none).
            assert_eq!(kind.default_name(Profile::Asm), f.asm_counter);
            assert_eq!(kind.default_name(Profile::Otel), f.otel_counter);
            assert_eq!(f.otel_counter.is_some(), f.token_type.is_some());
        }
        let c = Config::parse(br#"{"metrics": {"input_audio_tokens": "audio_in"}}"#).unwrap();
        assert_eq!(c.metrics[&MetricKind::InputAudioTokens], "audio_in");
    }

    #[test]
    fn ports() {
        assert_eq!(strip_port("a.b:8080"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("host:abc"), "host:abc");
    }
}
