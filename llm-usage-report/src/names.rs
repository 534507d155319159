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
    /// dimensions; durations in seconds by default (`…_seconds`), or in milliseconds
    /// under names ending `_milliseconds` (the Envoy filter, which records integers).
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
    /// Counter of cost in micro-units of the price table's currency (each exchange's
    /// exact cost rounded down to a micro-unit; exchanges without a cost add nothing).
    CostMicros,
    /// Counter of exchanges whose model has no entry in the price table (no cost).
    PriceLookupMisses,
    /// Counter of requests answered locally with `429` by a token budget, by limit name
    /// ([`Profile::budget_limit_label`]).
    BudgetRejected,
    /// Counter of budget store failures (the check allowed the request: fail open).
    BudgetStoreErrors,
    /// Counter of server-side web search requests (`web_search_requests`), billed per
    /// request: a count of its own, not a token type.
    WebSearchRequests,
    /// Counter of server-side web fetch requests (`web_fetch_requests`).
    WebFetchRequests,
}

impl Metric {
    /// Every metric, in a stable order.
    pub const ALL: [Metric; 15] = [
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
        Metric::BudgetRejected,
        Metric::BudgetStoreErrors,
        Metric::WebSearchRequests,
        Metric::WebFetchRequests,
    ];

    /// The name in `profile` with durations in the profile's unit
    /// ([`Profile::time_unit`]): [`Metric::name_in`] of that unit.
    ///
    /// ```
    /// use llm_usage_report::names::{Metric, Profile};
    /// assert_eq!(Metric::RequestDuration.name(Profile::Asm), Some("asm_llm_proxy_request_duration_ms"));
    /// assert_eq!(Metric::RequestDuration.name(Profile::Otel), Some("gen_ai_server_request_duration_seconds"));
    /// assert_eq!(Metric::TokenUsage.name(Profile::Otel), Some("gen_ai_client_token_usage"));
    /// ```
    pub const fn name(self, profile: Profile) -> Option<&'static str> {
        self.name_in(profile, profile.time_unit())
    }

    /// The name in `profile` when durations are recorded in `unit` (`None`: the profile
    /// has no such metric). One name, one unit: a duration's name ends with its unit
    /// ([`TimeUnit::suffix`]), so series in seconds and in milliseconds never share a
    /// name. In the `otel` profile the suffix is the one an OpenTelemetry → Prometheus
    /// exporter adds (`_seconds`, `_milliseconds`); in `asm`, ASM's fixed `_ms` (and
    /// `_seconds`, not an ASM name, for a frontend set to seconds). Counters carry no
    /// `_total` here: a sink whose exporter convention wants one adds it
    /// ([`Profile::counter_suffix`]).
    ///
    /// ```
    /// use llm_usage_report::names::{Metric, Profile, TimeUnit};
    /// assert_eq!(
    ///     Metric::TimeToFirstToken.name_in(Profile::Otel, TimeUnit::Milliseconds),
    ///     Some("gen_ai_server_time_to_first_token_milliseconds")
    /// );
    /// assert_eq!(
    ///     Metric::Requests.name_in(Profile::Otel, TimeUnit::Milliseconds),
    ///     Metric::Requests.name_in(Profile::Otel, TimeUnit::Seconds)
    /// );
    /// ```
    pub const fn name_in(self, profile: Profile, unit: TimeUnit) -> Option<&'static str> {
        use TimeUnit::{Milliseconds as Ms, Seconds as S};
        match profile {
            Profile::Asm => match (self, unit) {
                (Metric::TokenUsage | Metric::Tokens, _) => None,
                (Metric::Requests, _) => Some("asm_llm_proxy_requests"),
                (Metric::EstimatedRequests, _) => Some("asm_llm_proxy_estimated_requests"),
                (Metric::RequestDuration, Ms) => Some("asm_llm_proxy_request_duration_ms"),
                (Metric::RequestDuration, S) => Some("asm_llm_proxy_request_duration_seconds"),
                (Metric::TimeToFirstByte, Ms) => Some("asm_llm_proxy_time_to_first_byte_ms"),
                (Metric::TimeToFirstByte, S) => Some("asm_llm_proxy_time_to_first_byte_seconds"),
                (Metric::TimeToFirstToken, Ms) => Some("asm_llm_proxy_time_to_first_token_ms"),
                (Metric::TimeToFirstToken, S) => Some("asm_llm_proxy_time_to_first_token_seconds"),
                (Metric::TimePerOutputToken, Ms) => Some("asm_llm_proxy_time_per_output_token_ms"),
                (Metric::TimePerOutputToken, S) => {
                    Some("asm_llm_proxy_time_per_output_token_seconds")
                }
                (Metric::InjectSkipped, _) => Some("asm_llm_proxy_inject_skipped"),
                (Metric::CostMicros, _) => Some("asm_llm_proxy_cost_micros"),
                (Metric::PriceLookupMisses, _) => Some("asm_llm_proxy_price_lookup_misses"),
                (Metric::BudgetRejected, _) => Some("asm_llm_proxy_budget_rejected_requests"),
                (Metric::BudgetStoreErrors, _) => Some("asm_llm_proxy_budget_store_errors"),
                (Metric::WebSearchRequests, _) => Some("asm_llm_proxy_web_search_requests"),
                (Metric::WebFetchRequests, _) => Some("asm_llm_proxy_web_fetch_requests"),
            },
            Profile::Otel => Some(match (self, unit) {
                (Metric::TokenUsage, _) => "gen_ai_client_token_usage",
                (Metric::Tokens, _) => "llm_usage_tokens",
                (Metric::Requests, _) => "llm_usage_requests",
                (Metric::EstimatedRequests, _) => "llm_usage_estimated_requests",
                (Metric::RequestDuration, S) => "gen_ai_server_request_duration_seconds",
                (Metric::RequestDuration, Ms) => "gen_ai_server_request_duration_milliseconds",
                (Metric::TimeToFirstByte, S) => "llm_usage_time_to_first_byte_seconds",
                (Metric::TimeToFirstByte, Ms) => "llm_usage_time_to_first_byte_milliseconds",
                (Metric::TimeToFirstToken, S) => "gen_ai_server_time_to_first_token_seconds",
                (Metric::TimeToFirstToken, Ms) => "gen_ai_server_time_to_first_token_milliseconds",
                (Metric::TimePerOutputToken, S) => "gen_ai_server_time_per_output_token_seconds",
                (Metric::TimePerOutputToken, Ms) => {
                    "gen_ai_server_time_per_output_token_milliseconds"
                }
                (Metric::InjectSkipped, _) => "llm_usage_inject_skipped",
                (Metric::CostMicros, _) => "llm_usage_cost_micros",
                (Metric::PriceLookupMisses, _) => "llm_usage_price_lookup_misses",
                (Metric::BudgetRejected, _) => "llm_usage_budget_rejected_requests",
                (Metric::BudgetStoreErrors, _) => "llm_usage_budget_store_errors",
                (Metric::WebSearchRequests, _) => "llm_usage_web_search_requests",
                (Metric::WebFetchRequests, _) => "llm_usage_web_fetch_requests",
            }),
        }
    }

    /// Whether it is a histogram of durations (its name carries its unit).
    pub const fn is_duration(self) -> bool {
        matches!(
            self,
            Metric::RequestDuration
                | Metric::TimeToFirstByte
                | Metric::TimeToFirstToken
                | Metric::TimePerOutputToken
        )
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

    /// The bucket boundaries of a histogram whose durations are in `unit`: the
    /// OpenTelemetry ones ([`Metric::buckets`]), durations scaled to `unit` (`None`: a
    /// counter).
    ///
    /// ```
    /// use llm_usage_report::names::{Metric, TimeUnit};
    /// let ms = Metric::RequestDuration.buckets_in(TimeUnit::Milliseconds).unwrap();
    /// assert_eq!(ms[0], 10.0);
    /// ```
    pub fn buckets_in(self, unit: TimeUnit) -> Option<Vec<f64>> {
        let scale = if self.is_duration() {
            unit.per_second()
        } else {
            1.0
        };
        Some(self.buckets()?.iter().map(|b| b * scale).collect())
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
            Metric::PriceLookupMisses => "LLM exchanges whose model has no price (no cost).",
            Metric::BudgetRejected => "Requests answered 429 by a token budget, by limit.",
            Metric::BudgetStoreErrors => "Budget store failures (requests allowed: fail open).",
            Metric::WebSearchRequests => "Server-side web search requests of LLM exchanges.",
            Metric::WebFetchRequests => "Server-side web fetch requests of LLM exchanges.",
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

    /// What a duration's name in `profile` ends with: `_seconds` / `_milliseconds` in
    /// `otel` (the suffixes an OpenTelemetry → Prometheus exporter adds for units `s` and
    /// `ms`), `_seconds` / `_ms` in `asm` (ASM's names).
    pub const fn suffix(self, profile: Profile) -> &'static str {
        match (profile, self) {
            (_, TimeUnit::Seconds) => "_seconds",
            (Profile::Asm, TimeUnit::Milliseconds) => "_ms",
            (Profile::Otel, TimeUnit::Milliseconds) => "_milliseconds",
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

    /// The label carrying the limit's `name` on the budget-rejection counter.
    pub const fn budget_limit_label(self) -> &'static str {
        match self {
            Profile::Asm => "llmproxy_budget_limit",
            Profile::Otel => "budget_limit",
        }
    }

    /// The default unit of durations in this profile (a frontend may record in the other
    /// one, under the names of [`Metric::name_in`]).
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

/// The histograms of `profile` with durations in `unit`, each with its bucket boundaries
/// ([`Metric::buckets_in`]), for an exporter that takes buckets per name (a Prometheus
/// exporter's `set_buckets_for_metric`).
///
/// ```
/// use llm_usage_report::names::{histogram_buckets, Profile, TimeUnit};
/// let b = histogram_buckets(Profile::Otel, TimeUnit::Seconds);
/// assert!(b.iter().any(|(n, _)| *n == "gen_ai_server_request_duration_seconds"));
/// ```
pub fn histogram_buckets(profile: Profile, unit: TimeUnit) -> Vec<(&'static str, Vec<f64>)> {
    Metric::ALL
        .iter()
        .filter_map(|m| Some((m.name_in(profile, unit)?, m.buckets_in(unit)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNITS: [TimeUnit; 2] = [TimeUnit::Seconds, TimeUnit::Milliseconds];

    /// One name, one unit: every duration's name ends with its unit's suffix, a name is
    /// never used in two units, and only durations change name with the unit.
    #[test]
    fn a_name_carries_its_unit() {
        for p in [Profile::Asm, Profile::Otel] {
            for m in Metric::ALL {
                let (s, ms) = (
                    m.name_in(p, TimeUnit::Seconds),
                    m.name_in(p, TimeUnit::Milliseconds),
                );
                if !m.is_duration() {
                    assert_eq!(s, ms, "{m:?} in {p:?}");
                    continue;
                }
                let (s, ms) = (s.unwrap(), ms.unwrap());
                assert!(s.ends_with(TimeUnit::Seconds.suffix(p)), "{s}");
                assert!(ms.ends_with(TimeUnit::Milliseconds.suffix(p)), "{ms}");
                // The same base name, only the suffix differs.
                assert_eq!(
                    s.strip_suffix(TimeUnit::Seconds.suffix(p)),
                    ms.strip_suffix(TimeUnit::Milliseconds.suffix(p))
                );
                assert!(m.is_histogram());
            }
            // No name is used by two metrics, or by one metric in two units.
            let mut all: Vec<&str> = UNITS
                .iter()
                .flat_map(|u| Metric::ALL.iter().filter_map(move |m| m.name_in(p, *u)))
                .collect();
            all.sort_unstable();
            let n = all.len();
            all.dedup();
            let durations = Metric::ALL.iter().filter(|m| m.is_duration()).count();
            let present = Metric::ALL.iter().filter(|m| m.name(p).is_some()).count();
            assert_eq!(n, 2 * present);
            assert_eq!(all.len(), present + durations);
        }
        // The profiles' default units.
        assert_eq!(
            Metric::RequestDuration.name(Profile::Otel),
            Some("gen_ai_server_request_duration_seconds")
        );
        assert_eq!(
            Metric::TimePerOutputToken.name(Profile::Asm),
            Some("asm_llm_proxy_time_per_output_token_ms")
        );
    }

    #[test]
    fn buckets_follow_the_unit() {
        let s = histogram_buckets(Profile::Otel, TimeUnit::Seconds);
        let ms = histogram_buckets(Profile::Otel, TimeUnit::Milliseconds);
        assert_eq!(s.len(), 5);
        for ((ns, bs), (nms, bms)) in s.iter().zip(&ms) {
            if *ns == "gen_ai_client_token_usage" {
                assert_eq!((ns, bs), (nms, bms));
                assert_eq!(bs.as_slice(), TOKEN_USAGE_BUCKETS);
            } else {
                assert!(ns.ends_with("_seconds") && nms.ends_with("_milliseconds"));
                for (a, b) in bs.iter().zip(bms) {
                    assert!((a * 1000.0 - b).abs() < 1e-9, "{ns}: {a} vs {b}");
                }
            }
        }
        assert_eq!(
            histogram_buckets(Profile::Asm, TimeUnit::Milliseconds)[0],
            ("asm_llm_proxy_request_duration_ms", {
                REQUEST_DURATION_BUCKETS
                    .iter()
                    .map(|b| b * 1000.0)
                    .collect::<Vec<_>>()
            })
        );
    }
}
