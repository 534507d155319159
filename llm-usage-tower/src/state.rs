//! The per-exchange state shared by the request body, the response future and the response body.

use std::io::IoSlice;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Buf;
use http::{HeaderMap, Method, StatusCode, Uri};
use llm_usage_core::Exchange;

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
    /// `None` once the parser panicked: observation stops, traffic goes on.
    exchange: Option<Exchange>,
    emitted: bool,
    request_ended: bool,
    /// Bytes were passed that the core could not be shown (a non-contiguous `Buf` with more
    /// segments than we look at): the exchange was retired and this is the record from before
    /// the gap, final and partial.
    frozen: Option<llm_usage_core::UsageRecord>,
    status: Option<StatusCode>,
    ttfb: Option<Duration>,
    ttft: Option<Duration>,
    request_bytes: u64,
    response_bytes: u64,
    /// What the `stream_options.include_usage` injection did, if it was tried.
    injection: Option<Injection>,
}

impl State {
    /// Runs `f` on the exchange. A panic in the parser retires the exchange (the record will be
    /// partial) instead of unwinding into the traffic path.
    fn feed<T>(&mut self, f: impl FnOnce(&mut Exchange) -> T) -> Option<T> {
        let ex = self.exchange.as_mut()?;
        match catch_unwind(AssertUnwindSafe(|| f(ex))) {
            Ok(v) => Some(v),
            Err(_) => {
                self.exchange = None;
                None
            }
        }
    }

    /// Retires the exchange after a gap, keeping what it knew before.
    fn freeze(&mut self) {
        self.frozen = Some(self.feed(|ex| ex.record()).unwrap_or_default());
        self.exchange = None;
    }

    fn note_first_event(&mut self, start: Instant) {
        if self.ttft.is_none() && self.feed(|ex| ex.first_token_seen()).unwrap_or(false) {
            self.ttft = Some(start.elapsed());
        }
    }
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
    ) -> Arc<Shared> {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let exchange = catch_unwind(AssertUnwindSafe(|| {
            let mut ex = Exchange::with_options(config.options.clone());
            // Client middleware sees absolute URIs and no `host` header yet (the client adds
            // it later): give the core the URI's authority so host-based detection works.
            let authority = match (headers.contains_key(http::header::HOST), uri.authority()) {
                (false, Some(a)) => Some((&b"host"[..], a.as_str().as_bytes())),
                _ => None,
            };
            let all = headers
                .iter()
                .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()))
                .chain(authority);
            ex.on_request_head(method.as_str(), path, all);
            ex
        }))
        .ok();
        let request_values = match &config.metrics {
            Some(m) => m.request_values(uri, headers, extensions),
            None => Vec::new(),
        };
        Arc::new(Shared {
            config,
            start: Instant::now(),
            method: method.clone(),
            uri: uri.clone(),
            request_values,
            state: Mutex::new(State {
                exchange,
                emitted: false,
                request_ended: false,
                frozen: None,
                status: None,
                ttfb: None,
                ttft: None,
                request_bytes: 0,
                response_bytes: 0,
                injection: None,
            }),
        })
    }

    /// The exchange's API dialect (`openai-chat`, …), if the exchange is alive.
    pub(crate) fn dialect(&self) -> Option<&'static str> {
        self.lock().feed(|ex| ex.dialect())
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
        if st.emitted || st.request_ended {
            return;
        }
        st.request_bytes += data.remaining() as u64;
        if st.feed(|ex| each_chunk(data, |c| ex.on_request_body(c))) == Some(false) {
            st.freeze();
        }
    }

    pub(crate) fn request_end(&self) {
        let mut st = self.lock();
        if st.emitted || st.request_ended {
            return;
        }
        st.request_ended = true;
        st.feed(|ex| ex.on_request_end());
    }

    pub(crate) fn response_head(&self, status: StatusCode, headers: &HeaderMap) {
        let mut st = self.lock();
        if st.emitted {
            return;
        }
        st.status = Some(status);
        st.feed(|ex| ex.on_response_head(status.as_u16(), headers.iter()));
    }

    pub(crate) fn response_data(&self, data: &impl Buf) {
        let n = data.remaining();
        if n == 0 {
            return;
        }
        let mut st = self.lock();
        if st.emitted {
            return;
        }
        if st.ttfb.is_none() {
            st.ttfb = Some(self.start.elapsed());
        }
        st.response_bytes += n as u64;
        if st.feed(|ex| each_chunk(data, |c| ex.on_response_body(c))) == Some(false) {
            st.freeze();
        }
        st.note_first_event(self.start);
    }

    /// Emits the record, once: later calls do nothing.
    pub(crate) fn finish(&self, outcome: Outcome) {
        let event = {
            let mut st = self.lock();
            if st.emitted {
                return;
            }
            st.emitted = true;
            if outcome == Outcome::Complete {
                st.feed(|ex| ex.on_response_end());
                st.note_first_event(self.start);
            }
            let mut record = match st.frozen.take() {
                Some(r) => r,
                None => st.feed(|ex| ex.finish()).unwrap_or_default(),
            };
            if st.exchange.is_none() {
                // Retired after a gap or a parser panic.
                record.complete = false;
            }
            UsageEvent {
                record,
                outcome,
                method: self.method.clone(),
                uri: self.uri.clone(),
                status: st.status,
                duration: self.start.elapsed(),
                time_to_first_byte: st.ttfb,
                time_to_first_token: st.ttft,
                request_body_bytes: st.request_bytes,
                response_body_bytes: st.response_bytes,
                labels: Vec::new(),
                injection: st.injection,
            }
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

    /// A `Buf` of many segments, like a rope.
    pub(crate) struct Segments(pub std::collections::VecDeque<bytes::Bytes>);

    impl Buf for Segments {
        fn remaining(&self) -> usize {
            self.0.iter().map(|b| b.len()).sum()
        }
        fn chunk(&self) -> &[u8] {
            self.0.front().map(|b| &b[..]).unwrap_or(&[])
        }
        fn advance(&mut self, mut cnt: usize) {
            while cnt > 0 {
                let front = self.0.front_mut().expect("advance past the end");
                let n = cnt.min(front.len());
                front.advance(n);
                cnt -= n;
                if front.is_empty() {
                    self.0.pop_front();
                }
            }
        }
        fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
            let mut n = 0;
            for (d, b) in dst.iter_mut().zip(self.0.iter()) {
                *d = IoSlice::new(b);
                n += 1;
            }
            n
        }
    }

    #[test]
    fn each_chunk_shows_all_of_a_short_rope_and_nothing_of_a_long_one() {
        let seg = |n: usize| {
            Segments(
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
