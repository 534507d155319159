//! The per-exchange state shared by the request body, the response future and the response body.

use std::io::IoSlice;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Buf;
use http::{HeaderMap, Method, StatusCode, Uri};
use llm_usage_core::{Exchange, Provider};
use llm_usage_cost::Bucket;
use llm_usage_report::{span, Tracker};

use crate::callback::{Injection, Outcome, UsageEvent};
use crate::layer::Config;

/// One observed exchange. Lives in an `Arc` held by the request body wrapper and by whichever
/// of the response future / response body currently exists.
pub(crate) struct Shared {
    config: Arc<Config>,
    start: Instant,
    method: Method,
    uri: Uri,
    request_values: Vec<Option<String>>,
    state: Mutex<State>,
}

struct State {
    /// The exchange's lifecycle and times (nanoseconds since `Shared::start`).
    tracker: Tracker,
    status: Option<StatusCode>,
    request_bytes: u64,
    response_bytes: u64,
    /// What the `stream_options.include_usage` injection did, if it was tried.
    injection: Option<Injection>,
    /// The exchange's `tracing` span (`tracing` feature; a no-op without it), closed
    /// when the record is emitted.
    span: span::Span,
    /// The budget buckets to charge when the exchange ends (empty: none apply).
    buckets: Vec<Bucket>,
    /// The runtime the request came in on, for charges that must wait for their store.
    runtime: Option<tokio::runtime::Handle>,
    /// Answered locally (a budget denied it): no exchange, nothing emitted.
    discarded: bool,
    /// The response upgraded the connection to a realtime session (a WebSocket).
    upgraded: bool,
    /// Whether an IO of the session was attached ([`crate::realtime::Session`]).
    attach: Attach,
    /// Records the session closed so far (one per `response.done` / `turnComplete`).
    closed: u64,
}

/// Whether an IO observes a realtime session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attach {
    /// None yet.
    None,
    /// One does.
    Attached,
    /// One did and is gone.
    Detached,
}

impl State {
    /// Runs `f` on the tracker. A panic in the parser retires the exchange (the record will
    /// be partial) instead of unwinding into the traffic path.
    fn feed<T>(&mut self, f: impl FnOnce(&mut Tracker) -> T) -> Option<T> {
        self.tracker.exchange()?;
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.tracker))) {
            Ok(v) => Some(v),
            Err(_) => {
                self.tracker.abandon();
                None
            }
        }
    }

    /// Retires the exchange after a gap, keeping what it knew before.
    fn freeze(&mut self) {
        if self.feed(Tracker::retire).is_none() {
            self.tracker.abandon();
        }
    }
}

/// A header's name and value, as the core reads them.
type Header = (&'static [u8], &'static [u8]);

/// Nanoseconds since `start`, the tracker's clock.
fn since(start: Instant) -> Option<u64> {
    Some(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// Shows every byte of `buf`, in order, to `f` without consuming it. When not every byte can
/// be seen (more than 64 segments), shows nothing and returns `false`.
fn each_chunk(buf: &impl Buf, mut f: impl FnMut(&[u8])) -> bool {
    let chunk = buf.chunk();
    if chunk.len() == buf.remaining() {
        f(chunk);
        return true;
    }
    let mut slices = [IoSlice::new(&[]); 64];
    let n = buf.chunks_vectored(&mut slices);
    if slices[..n].iter().map(|s| s.len()).sum::<usize>() != buf.remaining() {
        return false;
    }
    for s in &slices[..n] {
        f(s);
    }
    true
}

impl Shared {
    pub(crate) fn start(
        config: Arc<Config>,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        extensions: &http::Extensions,
        http2_websocket: bool,
    ) -> Arc<Shared> {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let start = Instant::now();
        let exchange = catch_unwind(AssertUnwindSafe(|| {
            let mut ex = Exchange::with_options(config.options.clone());
            // Client middleware sees absolute URIs and no `host` header yet (the client adds
            // it later): give the core the URI's authority so host-based detection works.
            let authority = match (headers.contains_key(http::header::HOST), uri.authority()) {
                (false, Some(a)) => Some((&b"host"[..], a.as_str().as_bytes())),
                _ => None,
            };
            // An HTTP/2 WebSocket (extended CONNECT, RFC 8441) in its HTTP/1.1 form, as the
            // core reads upgrades (and as Envoy hands it to its filters).
            const H1_UPGRADE: [Header; 2] =
                [(b"upgrade", b"websocket"), (b"connection", b"upgrade")];
            let (method, upgrade): (&str, &[Header]) = match http2_websocket {
                true => ("GET", &H1_UPGRADE),
                false => (method.as_str(), &[]),
            };
            let all = headers
                .iter()
                .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()))
                .chain(authority)
                .chain(upgrade.iter().copied());
            ex.on_request_head(method, path, all);
            ex
        }))
        .ok();
        let tracker = match exchange {
            Some(ex) => Tracker::new(ex, Some(0)),
            None => Tracker::without_exchange(Some(0)),
        };
        let operation = tracker.exchange().and_then(|ex| ex.operation());
        let span = span::start(operation.map(|o| o.as_str()));
        let request_values = match &config.metrics {
            Some(m) => m.request_values(uri, headers, extensions),
            None => Vec::new(),
        };
        Arc::new(Shared {
            config,
            start,
            method: method.clone(),
            uri: uri.clone(),
            request_values,
            state: Mutex::new(State {
                tracker,
                status: None,
                request_bytes: 0,
                response_bytes: 0,
                injection: None,
                span,
                buckets: Vec::new(),
                runtime: None,
                discarded: false,
                upgraded: false,
                attach: Attach::None,
                closed: 0,
            }),
        })
    }

    /// The layer's configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The exchange's API dialect (`openai-chat`, …), if the exchange is alive.
    pub(crate) fn dialect(&self) -> Option<&'static str> {
        self.lock()
            .feed(|t| t.exchange().map(|ex| ex.dialect()))
            .flatten()
    }

    /// The provider and the model known from the request head (path, headers), for budget
    /// keys and the shape of a local reply.
    pub(crate) fn head_facts(&self) -> (Option<Provider>, Option<String>) {
        self.lock()
            .feed(|t| {
                t.exchange()
                    .map(|ex| (ex.provider(), ex.model().map(str::to_owned)))
            })
            .flatten()
            .unwrap_or((None, None))
    }

    /// The buckets to charge when the exchange ends.
    pub(crate) fn set_buckets(&self, buckets: Vec<Bucket>) {
        let mut st = self.lock();
        st.buckets = buckets;
        st.runtime = tokio::runtime::Handle::try_current().ok();
    }

    /// Drops the exchange without emitting anything (the request was answered locally).
    pub(crate) fn discard(&self) {
        self.lock().discarded = true;
    }

    /// The labels a request was counted under, from what its head told (for the budget
    /// denial counter).
    pub(crate) fn head_labels(&self, status: StatusCode) -> Vec<(metrics::SharedString, String)> {
        let Some(m) = &self.config.metrics else {
            return Vec::new();
        };
        let record = self.lock().feed(|t| t.record()).unwrap_or_default();
        m.resolve(
            &self.request_values,
            &record,
            Some(status),
            Outcome::Complete,
        )
    }

    /// Notes what the injection did.
    pub(crate) fn set_injection(&self, injection: Injection) {
        self.lock().injection = Some(injection);
    }

    /// Whether the request was rewritten, so that the usage-only chunk must be hidden.
    pub(crate) fn injected(&self) -> bool {
        self.lock().injection == Some(Injection::Injected)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from the core; keep observing anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn request_data(&self, data: &impl Buf) {
        let mut st = self.lock();
        if st.tracker.finished() || st.tracker.request_ended() {
            return;
        }
        st.request_bytes += data.remaining() as u64;
        if st.feed(|t| each_chunk(data, |c| t.request_body(c))) == Some(false) {
            st.freeze();
        }
    }

    pub(crate) fn request_end(&self) {
        let mut st = self.lock();
        if st.tracker.finished() || st.tracker.request_ended() {
            return;
        }
        if st.feed(Tracker::request_end).is_none() {
            st.tracker.request_end();
        }
    }

    pub(crate) fn response_head(&self, status: StatusCode, headers: &HeaderMap) {
        let mut st = self.lock();
        if st.tracker.finished() {
            return;
        }
        st.status = Some(status);
        st.feed(|t| t.response_head(status.as_u16(), headers.iter()));
    }

    /// The response head of a request that asked for a realtime session. `as_seen`: the
    /// status and headers to give the core, in the HTTP/1.1 form of an upgrade (`101`,
    /// `upgrade: websocket`), when the response accepted an HTTP/2 extended CONNECT
    /// (RFC 8441) whose head says `200`. Answers whether the connection was upgraded: the
    /// session's bytes then pass through an IO ([`crate::realtime::Observed`]), not the
    /// response body. When the IO that observed them is already gone, the exchange ends here.
    pub(crate) fn upgrade_head(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        as_seen: Option<(StatusCode, &HeaderMap)>,
    ) -> bool {
        let detached = {
            let mut st = self.lock();
            if st.tracker.finished() {
                return false;
            }
            st.status = Some(status);
            let (code, head) = as_seen.unwrap_or((status, headers));
            st.feed(|t| t.response_head(code.as_u16(), head.iter()));
            st.upgraded = st
                .tracker
                .exchange()
                .is_some_and(llm_usage_core::Exchange::upgraded);
            st.upgraded && st.attach == Attach::Detached
        };
        if detached {
            self.finish(Outcome::Dropped);
        }
        self.lock().upgraded
    }

    /// An IO attaches to the session: `false` if one already did (or the exchange ended).
    pub(crate) fn attach(&self) -> bool {
        let mut st = self.lock();
        if st.attach != Attach::None || st.tracker.finished() {
            return false;
        }
        st.attach = Attach::Attached;
        true
    }

    /// The last handle of a session that no IO attached to is gone: nobody will see its
    /// bytes. An upgraded exchange ends now, partial; one not upgraded (yet) ends with its
    /// response (no upgrade: the response body; an upgrade: `upgrade_head`).
    pub(crate) fn unclaimed(&self) {
        let end = {
            let st = self.lock();
            st.upgraded && st.attach == Attach::None
        };
        if end {
            self.finish(Outcome::Dropped);
        }
    }

    /// The attached IO is done (`outcome`: how): an upgraded session ends with it.
    pub(crate) fn detach(&self, outcome: Outcome) {
        let end = {
            let mut st = self.lock();
            st.attach = Attach::Detached;
            st.upgraded
        };
        if end {
            self.finish(outcome);
        }
    }

    /// Bytes of a realtime session: the client's frames (`from_client`) or the server's.
    /// Each record the server's frames close is emitted at once. Bytes before the upgrade
    /// was seen cannot be placed: the exchange keeps what it knew and sees no more.
    pub(crate) fn session_data(&self, data: &[u8], from_client: bool) {
        if data.is_empty() {
            return;
        }
        let events = {
            let mut st = self.lock();
            if st.tracker.finished() {
                return;
            }
            if !st.upgraded {
                st.freeze();
                return;
            }
            if from_client {
                st.request_bytes += data.len() as u64;
                st.feed(|t| t.request_body(data));
                return;
            }
            st.response_bytes += data.len() as u64;
            let start = self.start;
            st.feed(|t| t.response_body(data, || since(start)));
            let records = st
                .feed(|t| t.exchange_mut().map(llm_usage_core::Exchange::take_records))
                .flatten()
                .unwrap_or_default();
            records
                .into_iter()
                .map(|record| {
                    st.closed += 1;
                    let n = st.closed;
                    self.event(&mut st, record, Outcome::Complete, Some(n))
                })
                .collect::<Vec<_>>()
        };
        for event in events {
            self.config.emit(event, &self.request_values);
        }
    }

    /// The event of `record`: priced, charged to the budgets. `response`: the number of a
    /// record a realtime session closed (then no times: they are the session's).
    fn event(
        &self,
        st: &mut State,
        record: llm_usage_core::UsageRecord,
        outcome: Outcome,
        response: Option<u64>,
    ) -> UsageEvent {
        let pricing = self.config.prices.as_ref().map(|t| t.price(&record));
        let currency = self.config.prices.as_ref().map(|t| t.currency().to_owned());
        if let (Some(e), false) = (&self.config.budgets, st.buckets.is_empty()) {
            let cost = pricing.as_ref().and_then(|p| p.amount());
            let charges = e
                .budgets
                .charges(&st.buckets, &record, cost, e.clock.now_s());
            crate::budget::apply_charges(e, charges, st.runtime.as_ref());
        }
        let nanos = |t: Option<u64>| t.map(Duration::from_nanos);
        let timings = *st.tracker.timings();
        let (ttfb, ttft) = match response {
            Some(_) => (None, None),
            None => (
                nanos(timings.time_to_first_byte()),
                nanos(timings.time_to_first_token()),
            ),
        };
        let duration = match response {
            Some(_) => None,
            None => nanos(timings.duration()),
        };
        UsageEvent {
            record,
            outcome,
            method: self.method.clone(),
            uri: self.uri.clone(),
            status: st.status,
            duration: duration.unwrap_or_else(|| self.start.elapsed()),
            time_to_first_byte: ttfb,
            time_to_first_token: ttft,
            request_body_bytes: st.request_bytes,
            response_body_bytes: st.response_bytes,
            labels: Vec::new(),
            injection: st.injection,
            pricing,
            currency,
            realtime_response: response,
        }
    }

    pub(crate) fn response_data(&self, data: &impl Buf) {
        let n = data.remaining();
        if n == 0 {
            return;
        }
        let mut st = self.lock();
        if st.tracker.finished() {
            return;
        }
        st.tracker.first_byte(since(self.start));
        st.response_bytes += n as u64;
        let start = self.start;
        if st.feed(|t| each_chunk(data, |c| t.response_body(c, || since(start)))) == Some(false) {
            st.freeze();
        }
    }

    /// Emits the record, once: later calls do nothing.
    pub(crate) fn finish(&self, outcome: Outcome) {
        let event = {
            let mut st = self.lock();
            if st.tracker.finished() || st.discarded {
                return;
            }
            let start = self.start;
            let ended = outcome == Outcome::Complete;
            let record = match st.feed(|t| t.finish(ended, || since(start))) {
                Some(r) => r,
                // Retired after a gap or a parser panic (then also in `finish`).
                None => st.tracker.finish(ended, || since(start)),
            }
            .unwrap_or_default();
            st.tracker.end(since(start));
            span::finish(span::take(&mut st.span), &record, None);
            self.event(&mut st, record, outcome, None)
        };
        self.config.emit(event, &self.request_values);
    }
}

/// Owns one reference to the exchange; dropping it while still armed ends the exchange with
/// the outcome given at construction (partial record).
pub(crate) struct Tap {
    shared: Option<Arc<Shared>>,
    on_drop: Outcome,
}

impl Tap {
    pub(crate) fn new(shared: Option<Arc<Shared>>, on_drop: Outcome) -> Self {
        Tap { shared, on_drop }
    }

    pub(crate) fn get(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    pub(crate) fn take(&mut self) -> Option<Arc<Shared>> {
        self.shared.take()
    }

    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if let Some(s) = self.shared.take() {
            s.finish(outcome);
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(s) = self.shared.take() {
            s.finish(self.on_drop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chunk_sees_all_segments_of_a_chain() {
        let buf = bytes::Bytes::from_static(b"hello ").chain(bytes::Bytes::from_static(b"world"));
        let mut seen = Vec::new();
        assert!(each_chunk(&buf, |c| seen.extend_from_slice(c)));
        assert_eq!(seen, b"hello world");
        assert_eq!(buf.remaining(), 11);
    }

    #[test]
    fn each_chunk_shows_all_of_a_short_rope_and_nothing_of_a_long_one() {
        let seg = |n: usize| {
            llm_usage_testkit::Rope(
                (0..n)
                    .map(|i| bytes::Bytes::from(vec![i as u8; 2]))
                    .collect(),
            )
        };
        let short = seg(64);
        let mut seen = Vec::new();
        assert!(each_chunk(&short, |c| seen.extend_from_slice(c)));
        assert_eq!(seen.len(), 128);
        let long = seg(65);
        let mut calls = 0;
        assert!(!each_chunk(&long, |_| calls += 1));
        assert_eq!(calls, 0);
    }
}
