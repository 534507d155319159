//! One call's state, and the sinks: the callback and the [`metrics`] facade, fed from the
//! shared tables of `llm-usage-report` (labels, caps, names, data points).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode};
use llm_usage_core::Options;
use llm_usage_cost::PriceTable;
use llm_usage_report::labels::Limiter;
use llm_usage_report::names::{Metric, Profile, TimeUnit};
use llm_usage_report::series::{labels, points, Context, Value};
use llm_usage_report::{span, Timings, Tracker};
use reqwest::Url;

use crate::{Outcome, UsageEvent};

type Callback = Arc<dyn Fn(&UsageEvent) + Send + Sync>;

/// What the middleware reports to, shared by its calls.
pub(crate) struct Reporter {
    /// `None`: no metrics.
    pub(crate) profile: Option<Profile>,
    /// The unit durations are recorded in (`None`: the profile's).
    pub(crate) time_unit: Option<TimeUnit>,
    /// The source workload and namespace (the `asm` labels).
    pub(crate) source: (String, String),
    pub(crate) models: Mutex<Limiter>,
    pub(crate) on_record: Option<Callback>,
    pub(crate) options: Options,
    pub(crate) prices: Option<Arc<PriceTable>>,
}

impl Reporter {
    fn emit(&self, mut ev: UsageEvent, timings: &Timings) {
        if let Some(p) = self.profile {
            let ctx = Context {
                source_workload: Some(&self.source.0),
                source_namespace: Some(&self.source.1),
                destination: ev.url.host_str(),
                status: ev.status.map(|s| s.as_u16()),
            };
            let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
            ev.labels = labels(p, &ev.record, &ctx, &mut models)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            drop(models);
            let unit = self.time_unit.unwrap_or(p.time_unit());
            for point in points(p, unit, &ev.record, timings) {
                let mut labels: Vec<metrics::Label> = ev
                    .labels
                    .iter()
                    .map(|(k, v)| metrics::Label::new(k.clone(), v.clone()))
                    .collect();
                if let Some(t) = point.type_label() {
                    labels.push(metrics::Label::new(p.token_type_label(), t));
                }
                if let Some(m) = point.modality {
                    labels.push(metrics::Label::new(p.token_modality_label(), m));
                }
                match point.value {
                    Value::Count(n) => metrics::counter!(point.name, labels).increment(n),
                    Value::Sample(x) => metrics::histogram!(point.name, labels).record(x),
                }
            }
            if let Some(pricing) = &ev.pricing {
                let counter = |m: Metric| {
                    let name = format!("{}{}", m.name(p)?, p.counter_suffix());
                    let labels: Vec<metrics::Label> = ev
                        .labels
                        .iter()
                        .map(|(k, v)| metrics::Label::new(k.clone(), v.clone()))
                        .collect();
                    Some(metrics::counter!(name, labels))
                };
                if pricing.is_miss() {
                    if let Some(c) = counter(Metric::PriceLookupMisses) {
                        c.increment(1);
                    }
                }
                if let (Some(a), Some(c)) = (pricing.amount(), counter(Metric::CostMicros)) {
                    c.increment(u64::try_from(a.micros_floor()).unwrap_or(u64::MAX));
                }
            }
        }
        if let Some(f) = &self.on_record {
            f(&ev);
        }
    }
}

/// One observed call: its tracker (times in nanoseconds since `start`) behind a lock,
/// shared by the middleware and the response body.
pub(crate) struct Call {
    reporter: Arc<Reporter>,
    start: Instant,
    method: Method,
    url: Url,
    state: Mutex<State>,
}

struct State {
    tracker: Tracker,
    status: Option<StatusCode>,
    response_bytes: u64,
    /// The call's `tracing` span (`tracing` feature; a no-op without it), closed when
    /// the call is reported.
    span: span::Span,
}

impl State {
    /// Runs `f` on the tracker; a panic in the parser abandons the exchange (a partial
    /// record) instead of unwinding into the caller's read of the body.
    fn feed<T>(&mut self, f: impl FnOnce(&mut Tracker) -> T) -> Option<T> {
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.tracker))) {
            Ok(v) => Some(v),
            Err(_) => {
                self.tracker.abandon();
                None
            }
        }
    }
}

fn since(start: Instant) -> Option<u64> {
    Some(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

impl Call {
    pub(crate) fn new(
        reporter: Arc<Reporter>,
        tracker: Tracker,
        start: Instant,
        method: Method,
        url: Url,
    ) -> Call {
        let operation = tracker.exchange().and_then(|ex| ex.operation());
        let span = span::start(operation.map(|o| o.as_str()));
        Call {
            reporter,
            start,
            method,
            url,
            state: Mutex::new(State {
                tracker,
                status: None,
                response_bytes: 0,
                span,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn response_head(&self, status: StatusCode, headers: &HeaderMap) {
        let mut st = self.lock();
        st.status = Some(status);
        st.feed(|t| t.response_head(status.as_u16(), headers.iter()));
    }

    pub(crate) fn response_data(&self, data: &[u8]) {
        let mut st = self.lock();
        st.response_bytes += data.len() as u64;
        let start = self.start;
        st.feed(|t| t.response_body(data, || since(start)));
    }

    /// Ends the call and reports it, once.
    pub(crate) fn finish(&self, outcome: Outcome) {
        let (event, timings) = {
            let mut st = self.lock();
            let start = self.start;
            let ended = outcome == Outcome::Complete;
            let record = match st.feed(|t| t.finish(ended, || since(start))) {
                Some(r) => r,
                // The parser panicked: the exchange is abandoned, the record empty.
                None => st.tracker.finish(ended, || since(start)),
            };
            let Some(record) = record else {
                return;
            };
            st.tracker.end(since(start));
            let timings = *st.tracker.timings();
            span::finish(span::take(&mut st.span), &record, None);
            let nanos = |t: Option<u64>| t.map(Duration::from_nanos);
            let event = UsageEvent {
                outcome,
                method: self.method.clone(),
                url: self.url.clone(),
                status: st.status,
                duration: nanos(timings.duration()).unwrap_or_default(),
                time_to_first_byte: nanos(timings.time_to_first_byte()),
                time_to_first_token: nanos(timings.time_to_first_token()),
                response_body_bytes: st.response_bytes,
                labels: Vec::new(),
                pricing: self.reporter.prices.as_ref().map(|t| t.price(&record)),
                currency: self
                    .reporter
                    .prices
                    .as_ref()
                    .map(|t| t.currency().to_owned()),
                record,
            };
            (event, timings)
        };
        self.reporter.emit(event, &timings);
    }
}
