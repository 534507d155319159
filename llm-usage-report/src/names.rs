//! The metric names of the two profiles, their units, default labels and bucket
//! boundaries: one table for every frontend.
//!
//! `asm` is Alibaba Cloud Service Mesh's LLM observability (names and `llmproxy_*`
//! dimensions that ASM's bootstrap `stats_tags` already extract); `otel` follows the
//! OpenTelemetry GenAI conventions where they name a metric, and `llm_usage_*` where they
//! do not. Per-type token counters of the `asm` profile are in [`crate::tokens`] (one per
//! token figure).

use crate::select::RecordLabel;

/// A naming profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Alibaba Cloud Service Mesh names: `asm_llm_proxy_prompt_tokens`, ... with the
    /// `llmproxy_*` dimensions; durations in milliseconds.
    Asm,
    /// OpenTelemetry GenAI names: `gen_ai_client_token_usage`, ... with `gen_ai_*`
    /// dimensions; durations in seconds.
    Otel,
}

/// The metrics other than the per-type token counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Histogram of tokens per exchange, by token type (`gen_ai.client.token.usage`).
    TokenUsage,
    /// Counter of tokens, by token type.
    Tokens,
    /// Counter of exchanges.
    Requests,
    /// Counter of exchanges whose record holds an estimated token figure.
    EstimatedRequests,
    /// Histogram of exchange durations.
    RequestDuration,
    /// Histogram of times to the first response byte.
    TimeToFirstByte,
    /// Histogram of times to the first generated token.
    TimeToFirstToken,
    /// Histogram of times per output token after the first (streams).
    TimePerOutputToken,
    /// Counter of skipped `stream_options.include_usage` injections, by reason.
    InjectSkipped,
    /// Counter of cost, in micro-units (10⁻⁶) of the price table's currency, each
    /// exchange's cost rounded down (`llm_usage_cost::Amount::micros_floor`).
    CostMicros,
    /// Counter of exchanges whose model has no price (no model, or no entry for it).
    PriceLookupMisses,
    /// Counter of requests answered locally with `429` by a token budget, by limit name
    /// ([`Profile::budget_limit_label`]).
    BudgetDenied,
}

impl Metric {
    /// Every metric, in a stable order.
    pub const ALL: [Metric; 12] = [
        Metric::TokenUsage,
        Metric::Tokens,
        Metric::Requests,
        Metric::EstimatedRequests,
        Metric::RequestDuration,
        Metric::TimeToFirstByte,
        Metric::TimeToFirstToken,
        Metric::TimePerOutputToken,
        Metric::InjectSkipped,
        Metric::CostMicros,
        Metric::PriceLookupMisses,
        Metric::BudgetDenied,
    ];

    /// The name in `profile` (`None`: the profile has no such metric). Counters carry no
    /// `_total` here: a sink whose exporter convention wants one adds it
    /// ([`Profile::counter_suffix`]).
    ///
    /// ```
    /// use llm_usage_report::names::{Metric, Profile};
    /// assert_eq!(Metric::RequestDuration.name(Profile::Asm), Some("asm_llm_proxy_request_duration_ms"));
    /// assert_eq!(Metric::TokenUsage.name(Profile::Otel), Some("gen_ai_client_token_usage"));
    /// ```
    pub const fn name(self, profile: Profile) -> Option<&'static str> {
        match profile {
            Profile::Asm => match self {
                Metric::TokenUsage | Metric::Tokens => None,
                Metric::Requests => Some("asm_llm_proxy_requests"),
                Metric::EstimatedRequests => Some("asm_llm_proxy_estimated_requests"),
                Metric::RequestDuration => Some("asm_llm_proxy_request_duration_ms"),
                Metric::TimeToFirstByte => Some("asm_llm_proxy_time_to_first_byte_ms"),
                Metric::TimeToFirstToken => Some("asm_llm_proxy_time_to_first_token_ms"),
                Metric::TimePerOutputToken => Some("asm_llm_proxy_time_per_output_token_ms"),
                Metric::InjectSkipped => Some("asm_llm_proxy_inject_skipped"),
                Metric::CostMicros => Some("asm_llm_proxy_cost_micros"),
                Metric::PriceLookupMisses => Some("asm_llm_proxy_price_lookup_misses"),
                Metric::BudgetDenied => Some("asm_llm_proxy_budget_denied"),
            },
            Profile::Otel => Some(match self {
                Metric::TokenUsage => "gen_ai_client_token_usage",
                Metric::Tokens => "llm_usage_tokens",
                Metric::Requests => "llm_usage_requests",
                Metric::EstimatedRequests => "llm_usage_estimated_requests",
                Metric::RequestDuration => "gen_ai_server_request_duration",
                Metric::TimeToFirstByte => "llm_usage_time_to_first_byte",
                Metric::TimeToFirstToken => "gen_ai_server_time_to_first_token",
                Metric::TimePerOutputToken => "gen_ai_server_time_per_output_token",
                Metric::InjectSkipped => "llm_usage_inject_skipped",
                Metric::CostMicros => "llm_usage_cost_micros",
                Metric::PriceLookupMisses => "llm_usage_price_lookup_misses",
                Metric::BudgetDenied => "llm_usage_budget_denied",
            }),
        }
    }

    /// Whether it is a histogram (otherwise a counter).
    pub const fn is_histogram(self) -> bool {
        matches!(
            self,
            Metric::TokenUsage
                | Metric::RequestDuration
                | Metric::TimeToFirstByte
                | Metric::TimeToFirstToken
                | Metric::TimePerOutputToken
        )
    }

    /// The OpenTelemetry bucket boundaries of a histogram, in tokens or in seconds
    /// (`None`: a counter).
    pub const fn buckets(self) -> Option<&'static [f64]> {
        match self {
            Metric::TokenUsage => Some(TOKEN_USAGE_BUCKETS),
            Metric::RequestDuration => Some(REQUEST_DURATION_BUCKETS),
            Metric::TimeToFirstByte | Metric::TimeToFirstToken => Some(TIME_TO_FIRST_TOKEN_BUCKETS),
            Metric::TimePerOutputToken => Some(TIME_PER_OUTPUT_TOKEN_BUCKETS),
            _ => None,
        }
    }

    /// A one-line description, for exporters that show one.
    pub const fn description(self) -> &'static str {
        match self {
            Metric::TokenUsage => "Tokens used per LLM exchange, by token type.",
            Metric::Tokens => "Tokens used by LLM exchanges.",
            Metric::Requests => "LLM exchanges observed.",
            Metric::EstimatedRequests => "LLM exchanges whose token figures include an estimate.",
            Metric::RequestDuration => "LLM exchange duration.",
            Metric::TimeToFirstByte => "Time to the first byte of the response body.",
            Metric::TimeToFirstToken => "Time to the first complete response event.",
            Metric::TimePerOutputToken => "Time per output token after the first (streams).",
            Metric::InjectSkipped => "stream_options.include_usage injections skipped, by reason.",
            Metric::CostMicros => {
                "Cost of LLM exchanges, in micro-units of the price table's currency."
            }
            Metric::PriceLookupMisses => "LLM exchanges whose model has no price.",
            Metric::BudgetDenied => "Requests answered with 429 by a token budget, by limit.",
        }
    }
}

/// Where a default dimension's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// The workload the traffic comes from (the proxy's own, in a mesh).
    SourceWorkload,
    /// Its namespace.
    SourceWorkloadNamespace,
    /// The request authority (host without port in a mesh).
    DestinationService,
    /// A value from the record.
    Record(RecordLabel),
}

/// The unit durations are recorded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Seconds (OpenTelemetry).
    Seconds,
    /// Milliseconds (Envoy, ASM).
    Milliseconds,
}

impl TimeUnit {
    /// `ns` nanoseconds in this unit.
    ///
    /// ```
    /// use llm_usage_report::names::TimeUnit;
    /// assert_eq!(TimeUnit::Milliseconds.of_nanos(1_500_000), 1.5);
    /// ```
    pub fn of_nanos(self, ns: u64) -> f64 {
        match self {
            TimeUnit::Seconds => ns as f64 / 1e9,
            TimeUnit::Milliseconds => ns as f64 / 1e6,
        }
    }

    /// The factor from seconds (bucket boundaries are given in seconds).
    pub const fn per_second(self) -> f64 {
        match self {
            TimeUnit::Seconds => 1.0,
            TimeUnit::Milliseconds => 1000.0,
        }
    }
}

impl Profile {
    /// The common dimensions of every metric, in order.
    pub const fn dimensions(self) -> &'static [(&'static str, Dimension)] {
        match self {
            Profile::Asm => &[
                ("llmproxy_source_workload", Dimension::SourceWorkload),
                (
                    "llmproxy_source_workload_namespace",
                    Dimension::SourceWorkloadNamespace,
                ),
                (
                    "llmproxy_destination_service",
                    Dimension::DestinationService,
                ),
                ("llmproxy_model", Dimension::Record(RecordLabel::Model)),
            ],
            Profile::Otel => &[
                (
                    "gen_ai_provider_name",
                    Dimension::Record(RecordLabel::Provider),
                ),
                (
                    "gen_ai_request_model",
                    Dimension::Record(RecordLabel::RequestModel),
                ),
                (
                    "gen_ai_response_model",
                    Dimension::Record(RecordLabel::ResponseModel),
                ),
            ],
        }
    }

    /// The label carrying the token type on token metrics.
    pub const fn token_type_label(self) -> &'static str {
        "gen_ai_token_type"
    }

    /// The label carrying the token modality on the `gen_ai.client.inference.usage.*`
    /// counters.
    pub const fn token_modality_label(self) -> &'static str {
        "gen_ai_token_modality"
    }

    /// The label carrying the skip reason on the injection-skip counter.
    pub const fn skip_reason_label(self) -> &'static str {
        match self {
            Profile::Asm => "llmproxy_inject_skip_reason",
            Profile::Otel => "inject_skip_reason",
        }
    }

    /// The label carrying the limit's name on the budget-denial counter.
    ///
    /// ```
    /// use llm_usage_report::names::{Metric, Profile};
    /// assert_eq!(Metric::BudgetDenied.name(Profile::Asm), Some("asm_llm_proxy_budget_denied"));
    /// assert_eq!(Profile::Asm.budget_limit_label(), "llmproxy_budget_limit");
    /// ```
    pub const fn budget_limit_label(self) -> &'static str {
        match self {
            Profile::Asm => "llmproxy_budget_limit",
            Profile::Otel => "budget_limit",
        }
    }

    /// The unit of durations in this profile.
    pub const fn time_unit(self) -> TimeUnit {
        match self {
            Profile::Asm => TimeUnit::Milliseconds,
            Profile::Otel => TimeUnit::Seconds,
        }
    }

    /// What a sink whose exporter follows the OpenMetrics convention (the `metrics`
    /// facade with a Prometheus exporter) appends to counter names: `_total` for the
    /// `otel` names, nothing for ASM's fixed names.
    pub const fn counter_suffix(self) -> &'static str {
        match self {
            Profile::Asm => "",
            Profile::Otel => "_total",
        }
    }
}

/// OpenTelemetry GenAI bucket boundaries for `gen_ai.client.token.usage` (tokens).
pub const TOKEN_USAGE_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// OpenTelemetry GenAI bucket boundaries for `gen_ai.server.request.duration` (seconds).
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// OpenTelemetry GenAI bucket boundaries for `gen_ai.server.time_to_first_token` (seconds).
pub const TIME_TO_FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// OpenTelemetry GenAI bucket boundaries for `gen_ai.server.time_per_output_token` (seconds).
pub const TIME_PER_OUTPUT_TOKEN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
