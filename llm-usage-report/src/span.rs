//! One `tracing` span per exchange, with the OpenTelemetry GenAI attributes.
//!
//! A frontend opens the span when the exchange starts ([`start`]) and fills it when the
//! record is final ([`finish`]); the span closes when the frontend drops it, so its
//! duration is the exchange's. With `tracing-opentelemetry` the span becomes an
//! OpenTelemetry span with these attributes. Attributes of figures the traffic did not
//! carry are left empty (unknown, never 0).
//!
//! Without the crate's `tracing` feature, [`Span`] is a no-op of size zero, so that the
//! frontends call this module unconditionally and their own `tracing` feature only turns
//! this one on.

use llm_usage_core::UsageRecord;

#[cfg(feature = "tracing")]
pub use tracing::Span;

/// A no-op span (the crate's `tracing` feature is off).
#[cfg(not(feature = "tracing"))]
#[derive(Debug, Clone, Default)]
pub struct Span(());

/// The span's name.
pub const NAME: &str = "gen_ai.exchange";

/// Opens the span of an exchange (at `info` level), every attribute still empty.
///
/// For `tracing-opentelemetry` the span carries `otel.kind = "client"` (the conventions'
/// kind for a call to a model, whichever side observes it) and, when `operation` (the
/// `gen_ai.operation.name` of the request path) is known, `otel.name` set to it: the
/// conventions name the span `{operation} {request model}`, but the model is in the
/// request body, read after the span opens, and `tracing-opentelemetry` ignores a new
/// name once the span has been entered, so the name is the operation alone.
#[cfg(feature = "tracing")]
pub fn start(operation: Option<&str>) -> Span {
    use tracing::field::Empty;
    let span = tracing::info_span!(
        "gen_ai.exchange",
        otel.name = Empty,
        otel.kind = "client",
        gen_ai.operation.name = Empty,
        gen_ai.provider.name = Empty,
        gen_ai.request.model = Empty,
        gen_ai.response.model = Empty,
        gen_ai.request.stream = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.usage.cache_read.input_tokens = Empty,
        gen_ai.usage.cache_write.input_tokens = Empty,
        gen_ai.usage.reasoning.output_tokens = Empty,
        complete = Empty,
        estimated = Empty,
    );
    if let Some(op) = operation {
        span.record("otel.name", op);
    }
    span
}

/// Opens nothing (the crate's `tracing` feature is off).
#[cfg(not(feature = "tracing"))]
pub fn start(operation: Option<&str>) -> Span {
    let _ = operation;
    Span(())
}

/// Takes the span out of `slot`, leaving a disabled one: a frontend that holds the span
/// in shared state closes it (drops it) as soon as its exchange ends.
pub fn take(slot: &mut Span) -> Span {
    #[cfg(feature = "tracing")]
    return std::mem::replace(slot, Span::none());
    #[cfg(not(feature = "tracing"))]
    return std::mem::take(slot);
}

/// Records what `record` knows on `span`: provider, models, stream flag, the token figures
/// of [`crate::tokens::TOKEN_FIELDS`] under their `gen_ai.usage.*` names, `complete` and
/// `estimated`, then closes the span (it is consumed: nothing can be recorded on it after
/// its record). `operation` is the `gen_ai.operation.name` when the frontend knows better
/// than the record (which has it from the API path).
#[cfg(feature = "tracing")]
pub fn finish(span: Span, record: &UsageRecord, operation: Option<&str>) {
    if let Some(op) = operation.or(record.operation.map(|o| o.as_str())) {
        span.record("gen_ai.operation.name", op);
    }
    if let Some(p) = record.provider {
        span.record("gen_ai.provider.name", p.as_str());
    }
    if let Some(m) = &record.request_model {
        span.record("gen_ai.request.model", m.as_str());
    }
    if let Some(m) = &record.response_model {
        span.record("gen_ai.response.model", m.as_str());
    }
    if let Some(s) = record.stream {
        span.record("gen_ai.request.stream", s);
    }
    for f in &crate::tokens::TOKEN_FIELDS {
        if let (Some(name), Some(v)) = (f.span_attribute, f.value(record)) {
            // As i64: OpenTelemetry attributes have no unsigned integers, and
            // `tracing-opentelemetry` exports a `u64` field as a string. A count past
            // `i64::MAX` stays empty (unknown rather than wrong).
            if let Ok(v) = i64::try_from(v) {
                span.record(name, v);
            }
        }
    }
    span.record("complete", record.complete);
    span.record("estimated", record.estimated);
}

/// Records nothing (the crate's `tracing` feature is off).
#[cfg(not(feature = "tracing"))]
pub fn finish(span: Span, record: &UsageRecord, operation: Option<&str>) {
    let _ = (span, record, operation);
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use super::*;

    /// Every token figure with a span attribute has it declared on the span (a new row of
    /// the table without a declaration would be dropped silently by `tracing`).
    #[test]
    fn every_span_attribute_is_declared() {
        let callsite = tracing_probe();
        assert!(callsite.contains(&"gen_ai.request.model"));
        for f in &crate::tokens::TOKEN_FIELDS {
            if let Some(name) = f.span_attribute {
                assert!(callsite.contains(&name), "{name} not declared");
            }
        }
    }

    /// The token figures reach a subscriber as `i64` (OpenTelemetry's integer type), the
    /// flags as `bool`, the names as `str`; a count past `i64::MAX` is left out.
    #[test]
    fn figures_are_recorded_as_signed_integers() {
        use std::sync::{Arc, Mutex};
        use tracing::field::{Field, Visit};

        /// `name: kind` of every value recorded on spans.
        #[derive(Clone, Default)]
        struct Kinds(Arc<Mutex<Vec<String>>>);
        impl Visit for Kinds {
            fn record_debug(&mut self, f: &Field, _: &dyn std::fmt::Debug) {
                self.push(f, "debug");
            }
            fn record_i64(&mut self, f: &Field, _: i64) {
                self.push(f, "i64");
            }
            fn record_u64(&mut self, f: &Field, _: u64) {
                self.push(f, "u64");
            }
            fn record_bool(&mut self, f: &Field, _: bool) {
                self.push(f, "bool");
            }
            fn record_str(&mut self, f: &Field, _: &str) {
                self.push(f, "str");
            }
        }
        impl Kinds {
            fn push(&self, f: &Field, kind: &str) {
                self.0.lock().unwrap().push(format!("{}: {kind}", f.name()));
            }
        }
        impl tracing::Subscriber for Kinds {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
                values.record(&mut self.clone());
            }
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, _: &tracing::Event<'_>) {}
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }

        let mut record = UsageRecord::default();
        record.provider = Some(llm_usage_core::Provider::OpenAi);
        record.input_tokens = Some(15);
        record.output_tokens = Some(u64::MAX);
        record.complete = true;
        let kinds = Kinds::default();
        tracing::subscriber::with_default(kinds.clone(), || finish(start(None), &record, None));
        let got = kinds.0.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                "gen_ai.provider.name: str",
                "gen_ai.usage.input_tokens: i64",
                "complete: bool",
                "estimated: bool",
            ],
        );
    }

    /// The field names the span of [`start`] declares (read from its metadata, which
    /// exists even without a subscriber).
    fn tracing_probe() -> Vec<&'static str> {
        struct All;
        impl tracing::Subscriber for All {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, _: &tracing::Event<'_>) {}
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        tracing::subscriber::with_default(All, || {
            let span = start(None);
            span.metadata()
                .map(|m| m.fields().iter().map(|f| f.name()).collect())
                .unwrap_or_default()
        })
    }
}
