//! What one finished exchange adds to each metric of a profile, for a sink with real
//! labels (the `metrics` facade): the record's figures and the times, as data points.
//!
//! A sink walks [`points`] and records each point under its name with its labels plus,
//! where the point has one, the token type; it never names a record field or a metric.
//! (The Envoy filter encodes its labels into stat names and lets users rename every
//! metric, so it walks the same tables itself.)

use llm_usage_core::UsageRecord;

use crate::labels::{clean, Limiter, MAX_LABEL_LEN, UNKNOWN};
use crate::names::{Dimension, Metric, Profile, TimeUnit};
use crate::timings::Timings;
use crate::tokens::{figures, TokenType};

/// The `gen_ai.token.modality` of a figure that counts every modality.
pub const UNKNOWN_MODALITY: &str = "unknown";

/// How a point is recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Added to a counter.
    Count(u64),
    /// Recorded in a histogram (tokens, or a duration in the profile's unit).
    Sample(f64),
}

/// One data point of one exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The metric name, a counter with the profile's [`Profile::counter_suffix`].
    pub name: String,
    /// The shared metric it belongs to (`None`: a per-type token counter of `asm`).
    pub metric: Option<Metric>,
    /// The token type, to go into the profile's token-type label (`None`: no such label,
    /// or a part).
    pub token_type: Option<TokenType>,
    /// For a part of a token type (audio, image, a cache-write lifetime) on the counter by
    /// type: its [`part_type`](crate::tokens::TokenField::part_type), to go into the
    /// token-type label instead of a type. [`Point::type_label`] gives either.
    pub part_type: Option<&'static str>,
    /// The token modality, to go into the profile's modality label (`None`: no such label):
    /// the `gen_ai.client.inference.usage.*` counters carry it, [`UNKNOWN_MODALITY`] for
    /// a figure over every modality.
    pub modality: Option<&'static str>,
    /// The value.
    pub value: Value,
}

impl Point {
    /// The value of the profile's token-type label: the token type, or the part (`None`:
    /// no such label).
    pub fn type_label(&self) -> Option<&'static str> {
        self.token_type.map(TokenType::as_str).or(self.part_type)
    }
}

/// The points of an exchange in `profile` with durations in `unit` (names from
/// [`Metric::name_in`]): the token histogram for the known `input` and `output` figures
/// (subset types have no place on it: [`TokenType::is_subset`]); the counter by type
/// (`otel`) or the per-figure counters (`asm`) for every known type and part of a type
/// (audio, image, cache-write lifetimes: [`crate::tokens::figures`]); the `otel`
/// profile's `gen_ai.client.inference.usage.*` counters for every known type (unknown
/// figures add nothing, never 0: where the OpenTelemetry conventions ask for a `0` with
/// modality `unknown` when no usage came, nothing is added, since an absent figure is not
/// a zero one); one request, one estimated request when the record holds an estimate, and
/// the durations that are known.
///
/// ```
/// use llm_usage_report::names::{Profile, TimeUnit};
/// use llm_usage_report::series::{points, Value};
/// use llm_usage_report::{Timings, UsageRecord};
///
/// let mut r = UsageRecord::default();
/// r.input_tokens = Some(9);
/// let t = Timings { start: Some(0), end: Some(2_000_000), ..Timings::default() };
/// let p = points(Profile::Asm, TimeUnit::Milliseconds, &r, &t);
/// assert!(p.iter().any(|p| p.name == "asm_llm_proxy_prompt_tokens" && p.value == Value::Count(9)));
/// assert!(p.iter().any(|p| p.name == "asm_llm_proxy_request_duration_ms" && p.value == Value::Sample(2.0)));
/// assert!(!p.iter().any(|p| p.name == "asm_llm_proxy_completion_tokens"));
/// ```
pub fn points(
    profile: Profile,
    unit: TimeUnit,
    record: &UsageRecord,
    timings: &Timings,
) -> Vec<Point> {
    let mut out = Vec::new();
    let named = |m: Metric| {
        let suffix = if m.is_histogram() {
            ""
        } else {
            profile.counter_suffix()
        };
        m.name_in(profile, unit).map(|n| format!("{n}{suffix}"))
    };
    // The types and the parts (`input_audio`, `input_cache_write_1h`, ...); the total has
    // no point of its own (it would double-count).
    for fig in figures(record) {
        let (f, v) = (fig.field, fig.value);
        if let Some(t) = fig.token_type {
            if let (Some(name), false) = (named(Metric::TokenUsage), t.is_subset()) {
                out.push(point(
                    name,
                    Metric::TokenUsage,
                    Some(t),
                    Value::Sample(v as f64),
                ));
            }
        }
        // Types and parts on the counter by type (a part: its own type label value) or,
        // in `asm`, on their own counters.
        if let Some(name) = named(Metric::Tokens) {
            out.push(Point {
                part_type: fig.token_type.is_none().then_some(fig.type_label),
                ..point(name, Metric::Tokens, fig.token_type, Value::Count(v))
            });
        } else if let (Profile::Asm, Some(name)) = (profile, f.asm_counter) {
            out.push(Point {
                name: name.to_owned(),
                metric: None,
                token_type: None,
                part_type: None,
                modality: None,
                value: Value::Count(v),
            });
        }
        // Types only: the parts have no usage counter (`otel_counter`), their parent's
        // `unknown`-modality series already counts them.
        if let (Profile::Otel, Some(name)) = (profile, f.otel_counter) {
            out.push(Point {
                name: format!("{name}{}", profile.counter_suffix()),
                metric: None,
                token_type: None,
                part_type: None,
                modality: Some(f.modality.unwrap_or(UNKNOWN_MODALITY)),
                value: Value::Count(v),
            });
        }
    }
    if let Some(name) = named(Metric::Requests) {
        out.push(point(name, Metric::Requests, None, Value::Count(1)));
    }
    if let (Some(name), true) = (named(Metric::EstimatedRequests), record.estimated) {
        out.push(point(
            name,
            Metric::EstimatedRequests,
            None,
            Value::Count(1),
        ));
    }
    for (m, ns) in [
        (Metric::RequestDuration, timings.duration()),
        (Metric::TimeToFirstByte, timings.time_to_first_byte()),
        (Metric::TimeToFirstToken, timings.time_to_first_token()),
        (
            Metric::TimePerOutputToken,
            timings.time_per_output_token(record),
        ),
    ] {
        if let (Some(name), Some(ns)) = (named(m), ns) {
            out.push(point(name, m, None, Value::Sample(unit.of_nanos(ns))));
        }
    }
    out
}

/// Where the labels of a call come from, besides its record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The workload the traffic comes from (`asm` profile).
    pub source_workload: Option<&'a str>,
    /// Its namespace (`asm` profile).
    pub source_namespace: Option<&'a str>,
    /// The host called (`asm`'s `llmproxy_destination_service`).
    pub destination: Option<&'a str>,
    /// The response status (`None`: no response; the `otel` profile's
    /// `http_status_class` is then `error`).
    pub status: Option<u16>,
}

/// The labels of one exchange in `profile`, for a sink with real labels: the profile's
/// dimensions (values cleaned, unknown ones [`UNKNOWN`], model values through `models`),
/// then, in the `otel` profile, `http_status_class` (`2xx` … `5xx`, or `error`).
///
/// ```
/// use llm_usage_report::labels::Limiter;
/// use llm_usage_report::names::Profile;
/// use llm_usage_report::series::{labels, Context};
/// use llm_usage_report::UsageRecord;
///
/// let mut r = UsageRecord::default();
/// r.request_model = Some("gpt-4o".into());
/// let mut models = Limiter::new(Vec::new(), Some(100));
/// let ctx = Context { status: Some(200), ..Context::default() };
/// let l = labels(Profile::Otel, &r, &ctx, &mut models);
/// assert_eq!(l[1], ("gen_ai_request_model", "gpt-4o".to_string()));
/// assert_eq!(l[3], ("http_status_class", "2xx".to_string()));
/// ```
pub fn labels(
    profile: Profile,
    record: &UsageRecord,
    ctx: &Context<'_>,
    models: &mut Limiter,
) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = profile
        .dimensions()
        .iter()
        .map(|(name, d)| {
            let raw = match d {
                Dimension::SourceWorkload => ctx.source_workload,
                Dimension::SourceWorkloadNamespace => ctx.source_namespace,
                Dimension::DestinationService => ctx.destination,
                Dimension::Record(r) => r.value(record, None),
            };
            let value = match raw.filter(|v| !v.is_empty()) {
                None => UNKNOWN.to_owned(),
                Some(v) => {
                    let v = clean(v, MAX_LABEL_LEN);
                    match d {
                        Dimension::Record(r) if r.is_model() => models.label(&v),
                        _ => v,
                    }
                }
            };
            (*name, value)
        })
        .collect();
    if profile == Profile::Otel {
        let class = ctx
            .status
            .map_or_else(|| "error".to_owned(), |s| format!("{}xx", s / 100));
        v.push(("http_status_class", class));
    }
    v
}

fn point(name: String, metric: Metric, token_type: Option<TokenType>, value: Value) -> Point {
    Point {
        name,
        metric: Some(metric),
        token_type,
        part_type: None,
        modality: None,
        value,
    }
}

// Field by field: `UsageRecord` may become `#[non_exhaustive]` (issue 18, part 4).
#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    #[test]
    fn otel_points_label_token_types_and_skip_unknowns() {
        let mut r = UsageRecord::default();
        r.input_tokens = Some(10);
        r.output_tokens = Some(0);
        r.total_tokens = Some(10);
        r.stream = Some(true);
        let t = Timings {
            start: Some(0),
            first_byte: Some(100_000_000),
            first_token: None,
            end: Some(1_500_000_000),
        };
        let p = points(Profile::Otel, TimeUnit::Seconds, &r, &t);
        let names: Vec<(&str, Option<&str>)> = p
            .iter()
            .map(|p| (p.name.as_str(), p.token_type.map(TokenType::as_str)))
            .collect();
        assert_eq!(
            names,
            [
                ("gen_ai_client_token_usage", Some("input")),
                ("llm_usage_tokens_total", Some("input")),
                ("gen_ai_client_inference_usage_input_tokens_total", None),
                ("gen_ai_client_token_usage", Some("output")),
                ("llm_usage_tokens_total", Some("output")),
                ("gen_ai_client_inference_usage_output_tokens_total", None),
                ("llm_usage_requests_total", None),
                ("gen_ai_server_request_duration_seconds", None),
                ("llm_usage_time_to_first_byte_seconds", None),
            ]
        );
        assert_eq!(p[2].value, Value::Count(10));
        assert_eq!(p[2].modality, Some(UNKNOWN_MODALITY));
        assert_eq!(p[4].value, Value::Count(0));
        assert_eq!(p[7].value, Value::Sample(1.5));
        assert_eq!(p[8].value, Value::Sample(0.1));
        assert!(p
            .iter()
            .filter(|p| p.modality.is_some())
            .all(|p| p.token_type.is_none()));
    }

    #[test]
    fn histogram_has_input_and_output_only_and_subsets_have_counters() {
        let mut r = UsageRecord::default();
        r.input_tokens = Some(100);
        r.output_tokens = Some(40);
        r.cached_input_tokens = Some(60);
        r.cache_creation_input_tokens = Some(20);
        r.reasoning_tokens = Some(30);
        r.input_audio_tokens = Some(5);
        let t = Timings {
            start: Some(0),
            end: Some(2_500_000),
            ..Timings::default()
        };
        let p = points(Profile::Otel, TimeUnit::Milliseconds, &r, &t);
        let on_histogram: Vec<(&str, f64)> = p
            .iter()
            .filter(|p| p.name == "gen_ai_client_token_usage")
            .map(|p| match p.value {
                Value::Sample(x) => (p.token_type.unwrap().as_str(), x),
                Value::Count(_) => panic!("a count on a histogram"),
            })
            .collect();
        assert_eq!(on_histogram, [("input", 100.0), ("output", 40.0)]);
        let counters: Vec<(&str, Value)> = p
            .iter()
            .filter(|p| p.modality.is_some())
            .map(|p| (p.name.as_str(), p.value))
            .collect();
        assert_eq!(
            counters,
            [
                (
                    "gen_ai_client_inference_usage_input_tokens_total",
                    Value::Count(100)
                ),
                (
                    "gen_ai_client_inference_usage_output_tokens_total",
                    Value::Count(40)
                ),
                (
                    "gen_ai_client_inference_usage_cache_read_input_tokens_total",
                    Value::Count(60)
                ),
                (
                    "gen_ai_client_inference_usage_cache_write_input_tokens_total",
                    Value::Count(20)
                ),
                (
                    "gen_ai_client_inference_usage_reasoning_output_tokens_total",
                    Value::Count(30)
                ),
            ]
        );
        let duration = p
            .iter()
            .find(|p| p.metric == Some(Metric::RequestDuration))
            .unwrap();
        assert_eq!(
            (duration.name.as_str(), duration.value),
            (
                "gen_ai_server_request_duration_milliseconds",
                Value::Sample(2.5)
            )
        );
    }

    #[test]
    fn parts_are_counted_by_type_and_per_figure_but_not_as_types() {
        let mut r = UsageRecord::default();
        r.input_tokens = Some(300);
        r.input_audio_tokens = Some(200);
        r.cache_creation_input_tokens = Some(40);
        r.cache_creation_1h_input_tokens = Some(30);
        let otel = points(Profile::Otel, TimeUnit::Seconds, &r, &Timings::default());
        let parts: Vec<(&str, Option<&str>, Option<&str>, Value)> = otel
            .iter()
            .filter(|p| p.part_type.is_some())
            .map(|p| (p.name.as_str(), p.part_type, p.type_label(), p.value))
            .collect();
        assert_eq!(
            parts,
            [
                (
                    "llm_usage_tokens_total",
                    Some("input_audio"),
                    Some("input_audio"),
                    Value::Count(200)
                ),
                (
                    "llm_usage_tokens_total",
                    Some("input_cache_write_1h"),
                    Some("input_cache_write_1h"),
                    Value::Count(30)
                ),
            ]
        );
        // A part is never a token type, nor a histogram or usage-counter series.
        assert!(otel
            .iter()
            .all(|p| p.part_type.is_none() || p.token_type.is_none()));
        // The histogram's `input`, the usage counters' input and cache write: no part.
        assert_eq!(
            otel.iter()
                .filter(|p| p.name.starts_with("gen_ai_client"))
                .count(),
            3
        );
        let asm = points(
            Profile::Asm,
            TimeUnit::Milliseconds,
            &r,
            &Timings::default(),
        );
        let counted: Vec<(&str, Value)> = asm
            .iter()
            .map(|p| (p.name.as_str(), p.value))
            .filter(|(n, _)| n.ends_with("_tokens"))
            .collect();
        assert_eq!(
            counted,
            [
                ("asm_llm_proxy_prompt_tokens", Value::Count(300)),
                ("asm_llm_proxy_cache_creation_tokens", Value::Count(40)),
                ("asm_llm_proxy_input_audio_tokens", Value::Count(200)),
                ("asm_llm_proxy_cache_creation_1h_tokens", Value::Count(30)),
            ]
        );
        assert!(asm.iter().all(|p| p.type_label().is_none()));
    }

    #[test]
    fn estimated_exchanges_are_counted() {
        let mut r = UsageRecord::default();
        r.estimated = true;
        let p = points(
            Profile::Asm,
            TimeUnit::Milliseconds,
            &r,
            &Timings::default(),
        );
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["asm_llm_proxy_requests", "asm_llm_proxy_estimated_requests"]
        );
    }

    #[test]
    fn asm_labels_clean_and_cap_models() {
        let mut models = Limiter::new(Vec::new(), Some(1));
        let ctx = Context {
            source_workload: Some("sleep"),
            source_namespace: Some(""),
            destination: Some("api.openai.com"),
            status: None,
        };
        let mut r = UsageRecord::default();
        r.model = Some("gpt-4o\n".into());
        let l = labels(Profile::Asm, &r, &ctx, &mut models);
        assert_eq!(
            l,
            [
                ("llmproxy_source_workload", "sleep".to_string()),
                ("llmproxy_source_workload_namespace", UNKNOWN.to_string()),
                ("llmproxy_destination_service", "api.openai.com".to_string()),
                ("llmproxy_model", "gpt-4o_".to_string()),
            ]
        );
        r.model = Some("claude-sonnet-4".into());
        let l = labels(Profile::Asm, &r, &ctx, &mut models);
        assert_eq!(l[3].1, crate::labels::OTHER);
        r.model = None;
        let l = labels(Profile::Otel, &r, &ctx, &mut models);
        assert_eq!(l[3], ("http_status_class", "error".to_string()));
        assert_eq!(l[1].1, UNKNOWN);
    }
}
