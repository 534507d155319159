//! Body wrappers that show every data frame to the exchange and pass it on unchanged, or,
//! with `stream_options.include_usage` injection, hold and rewrite a request body and remove
//! the usage-only chunk from a response stream (the decisions are the core's).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use llm_usage_core::inject::{rewrite_request, Filtered, Rewrite, Skip, UsageChunkFilter};
use pin_project_lite::pin_project;

use crate::callback::{Injection, Outcome};
use crate::state::{Shared, Tap};

/// What `poll_frame` answers.
type Polled<D, E> = Poll<Option<Result<Frame<D>, E>>>;

/// What a wrapper still has to hand on, in order, before it polls its body again: bytes it
/// made, then trailers, then the end.
#[derive(Debug, Default)]
struct Pending {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    end: bool,
}

impl Pending {
    /// The next thing to hand on, if any.
    fn next<D: From<Bytes>, E>(&mut self) -> Option<Polled<D, E>> {
        if let Some(d) = self.data.take() {
            if !d.is_empty() {
                return Some(Poll::Ready(Some(Ok(Frame::data(D::from(d))))));
            }
        }
        if let Some(t) = self.trailers.take() {
            return Some(Poll::Ready(Some(Ok(Frame::trailers(t)))));
        }
        self.end.then_some(Poll::Ready(None))
    }

    /// Whether no bytes or trailers are waiting (the end may be).
    fn drained(&self) -> bool {
        self.data.as_ref().map_or(true, Bytes::is_empty) && self.trailers.is_none()
    }
}

/// A request body held for injection: its bytes until its end or the cap.
#[derive(Debug)]
struct Hold {
    held: Vec<u8>,
    max: u64,
    pending: Pending,
    /// Past the cap: what is left passes as it comes.
    passing: bool,
}

pin_project! {
    /// The request body handed to the inner service: the original body, observed.
    ///
    /// Frames (data and trailers), errors, [`Body::is_end_stream`] and [`Body::size_hint`]
    /// pass through untouched; data frames are also fed to the exchange's parser. With
    /// [`inject_include_usage`](crate::LlmUsageLayer::inject_include_usage), a request the
    /// injection applies to is held until its end (or the cap) and then handed on as one data
    /// frame, rewritten or not, followed by its trailers.
    ///
    /// ```
    /// use http_body::Body;
    /// use llm_usage_tower::RequestBody;
    ///
    /// // Outside the layer it is a transparent wrapper.
    /// let body = RequestBody::unobserved(String::from("{}"));
    /// assert_eq!(body.size_hint().exact(), Some(2));
    /// ```
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        shared: Option<Arc<Shared>>,
        hold: Option<Box<Hold>>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, shared: Option<Arc<Shared>>) -> Self {
        RequestBody {
            inner,
            shared,
            hold: None,
        }
    }

    /// A body held for injection (up to `max` bytes).
    pub(crate) fn holding(inner: B, shared: Option<Arc<Shared>>, max: u64) -> Self {
        RequestBody {
            inner,
            shared,
            hold: Some(Box::new(Hold {
                held: Vec::new(),
                max,
                pending: Pending::default(),
                passing: false,
            })),
        }
    }

    /// Wraps a body without observing it.
    pub fn unobserved(inner: B) -> Self {
        Self::new(inner, None)
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the body; the rest of it is not observed (nor held).
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: fmt::Debug> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("inner", &self.inner)
            .field("observed", &self.shared.is_some())
            .field("held", &self.hold.is_some())
            .finish()
    }
}

/// The held body is complete: what the core makes of it goes on, rewritten or as it came.
fn rewrite(hold: &mut Hold, shared: Option<&Arc<Shared>>) {
    let body = std::mem::take(&mut hold.held);
    let (out, injection) = match rewrite_request(&body) {
        Rewrite::Injected(new) => (new, Some(Injection::Injected)),
        Rewrite::ClientAsked => (body, Some(Injection::ClientAsked)),
        Rewrite::NotStreaming => (body, None),
        Rewrite::Skipped(why) => (body, Some(Injection::Skipped(why))),
    };
    if let (Some(s), Some(i)) = (shared, injection) {
        s.set_injection(i);
    }
    hold.pending.data = Some(Bytes::from(out));
}

impl<B> Body for RequestBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        loop {
            if let Some(hold) = this.hold.as_deref_mut() {
                if let Some(ready) = hold.pending.next() {
                    return ready;
                }
                if hold.passing {
                    *this.hold = None;
                }
            }
            let res = ready!(inner.as_mut().poll_frame(cx));
            let ended = match &res {
                Some(Ok(_)) => inner.is_end_stream(),
                Some(Err(_)) => false,
                None => true,
            };
            if let Some(shared) = this.shared.as_ref() {
                match &res {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            shared.request_data(data);
                        }
                        if ended {
                            shared.request_end();
                        }
                    }
                    // An erroring request body leaves the request incomplete; the response
                    // (usually an error too) decides the record.
                    Some(Err(_)) => {}
                    None => shared.request_end(),
                }
            }
            // Observation ends with the body (the injection still notes its outcome).
            let shared = if ended || res.as_ref().is_some_and(|r| r.is_err()) {
                this.shared.take()
            } else {
                None
            };
            let Some(hold) = this.hold.as_deref_mut() else {
                return Poll::Ready(res);
            };
            let shared = shared.as_ref().or(this.shared.as_ref());
            match res {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        hold.held.extend_from_slice(&bytes);
                        if hold.held.len() as u64 > hold.max {
                            if let Some(s) = shared {
                                s.set_injection(Injection::Skipped(Skip::TooLarge));
                            }
                            hold.pending.data = Some(Bytes::from(std::mem::take(&mut hold.held)));
                            hold.passing = !ended;
                            hold.pending.end = ended;
                        } else if ended {
                            rewrite(hold, shared);
                            hold.pending.end = true;
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body.
                        rewrite(hold, shared);
                        hold.pending.trailers = frame.into_trailers().ok();
                        hold.pending.end = true;
                    }
                },
                // The request failed: what was held goes nowhere.
                Some(Err(e)) => {
                    *this.hold = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    rewrite(hold, shared);
                    hold.pending.end = true;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.hold {
            Some(h) if h.passing && h.pending.drained() => self.inner.is_end_stream(),
            Some(h) => h.pending.end && h.pending.drained(),
            None => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.hold {
            // The length may change.
            Some(_) => SizeHint::default(),
            None => self.inner.size_hint(),
        }
    }
}

pin_project! {
    /// The response body returned by the layer: the inner service's body, observed.
    ///
    /// Frames, errors, [`Body::is_end_stream`] and [`Body::size_hint`] pass through untouched.
    /// The exchange's record is emitted when the body ends (`complete` outcome), yields an error
    /// (`body_error`), or is dropped before its end (`dropped`, a partial record). When the
    /// request was rewritten by the injection, the usage-only chunk of the event stream is
    /// removed and every other byte passes unchanged, in order.
    ///
    /// ```
    /// use http_body::Body;
    /// use llm_usage_tower::ResponseBody;
    ///
    /// let body = ResponseBody::unobserved(String::new());
    /// assert!(body.is_end_stream());
    /// ```
    pub struct ResponseBody<B> {
        // `None`: a local reply (a spent token budget), whose bytes are `local`.
        #[pin]
        inner: Option<B>,
        tap: Tap,
        hide: Option<Box<Hide>>,
        local: Option<Bytes>,
    }
}

/// A response stream the usage-only chunk is removed from.
#[derive(Debug)]
struct Hide {
    filter: UsageChunkFilter,
    pending: Pending,
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, shared: Option<Arc<Shared>>) -> Self {
        ResponseBody {
            inner: Some(inner),
            tap: Tap::new(shared, Outcome::Dropped),
            hide: None,
            local: None,
        }
    }

    /// The body of a reply the layer made itself: these bytes, then the end.
    pub(crate) fn local(bytes: Bytes) -> Self {
        ResponseBody {
            inner: None,
            tap: Tap::new(None, Outcome::Dropped),
            hide: None,
            local: Some(bytes),
        }
    }

    /// A body whose usage-only chunk is removed.
    pub(crate) fn hiding(inner: B, shared: Option<Arc<Shared>>) -> Self {
        ResponseBody {
            inner: Some(inner),
            tap: Tap::new(shared, Outcome::Dropped),
            hide: Some(Box::new(Hide {
                filter: UsageChunkFilter::new(),
                pending: Pending::default(),
            })),
            local: None,
        }
    }

    /// Wraps a body without observing it.
    pub fn unobserved(inner: B) -> Self {
        Self::new(inner, None)
    }

    /// The wrapped body (`None` for a reply the layer made itself: a spent token budget's
    /// `429`).
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }
}

impl<B: Body> ResponseBody<B> {
    /// Ends the exchange now if the body is already at its end (one nobody may ever poll).
    pub(crate) fn finish_if_ended(&self) {
        if self.inner.as_ref().is_some_and(Body::is_end_stream) {
            if let Some(shared) = self.tap.get() {
                shared.finish(Outcome::Complete);
            }
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("observed", &self.tap.get().is_some())
            .field("hiding", &self.hide.is_some())
            .field("local", &self.local.as_ref().map(Bytes::len))
            .finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(mut inner) = this.inner.as_pin_mut() else {
            let local = this.local.take().filter(|b| !b.is_empty());
            return Poll::Ready(local.map(|b| Ok(Frame::data(B::Data::from(b)))));
        };
        loop {
            if let Some(hide) = this.hide.as_deref_mut() {
                if let Some(ready) = hide.pending.next() {
                    return ready;
                }
            }
            let res = ready!(inner.as_mut().poll_frame(cx));
            let ended = match &res {
                Some(Ok(_)) => inner.is_end_stream(),
                Some(Err(_)) => false,
                None => true,
            };
            if let Some(shared) = this.tap.get() {
                match &res {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            shared.response_data(data);
                        }
                        if ended {
                            this.tap.finish(Outcome::Complete);
                        }
                    }
                    Some(Err(_)) => this.tap.finish(Outcome::BodyError),
                    None => this.tap.finish(Outcome::Complete),
                }
            }
            let Some(hide) = this.hide.as_deref_mut() else {
                return Poll::Ready(res);
            };
            let mut out = Vec::new();
            match res {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        match hide.filter.push(&bytes, &mut out) {
                            Filtered::Unchanged if !ended => {
                                return Poll::Ready(Some(Ok(Frame::data(B::Data::from(bytes)))))
                            }
                            Filtered::Unchanged => out.extend_from_slice(&bytes),
                            Filtered::Changed => {}
                        }
                        if ended {
                            hide.filter.finish(&mut out);
                            hide.pending.end = true;
                        }
                    }
                    Err(frame) => {
                        // Trailers end the stream: what is held goes first.
                        hide.filter.finish(&mut out);
                        hide.pending.trailers = frame.into_trailers().ok();
                        hide.pending.end = true;
                    }
                },
                // The stream broke: what was held goes nowhere.
                Some(Err(e)) => {
                    *this.hide = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    hide.filter.finish(&mut out);
                    hide.pending.end = true;
                }
            }
            hide.pending.data = Some(Bytes::from(out));
        }
    }

    fn is_end_stream(&self) -> bool {
        let Some(inner) = &self.inner else {
            return self.local.as_ref().map_or(true, Bytes::is_empty);
        };
        let end = match &self.hide {
            // Nothing left to hand on, and either the end was reached or the inner body is
            // done with nothing held.
            Some(h) => {
                h.pending.drained()
                    && (h.pending.end || (h.filter.held_bytes() == 0 && inner.is_end_stream()))
            }
            None => inner.is_end_stream(),
        };
        if end {
            // A server may stop polling as soon as this says so, then drop the body: that is a
            // clean end, not a hang-up. Finishing is idempotent.
            if let Some(shared) = self.tap.get() {
                shared.finish(Outcome::Complete);
            }
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        let Some(inner) = &self.inner else {
            return SizeHint::with_exact(self.local.as_ref().map_or(0, |b| b.len() as u64));
        };
        match &self.hide {
            // Bytes may be removed: no exact size, and nothing more than the inner's upper bound.
            Some(hide) => {
                let mut h = SizeHint::default();
                if let Some(upper) = inner.size_hint().upper() {
                    let waiting = hide.pending.data.as_ref().map_or(0, Bytes::len);
                    h.set_upper(upper + (hide.filter.held_bytes() + waiting) as u64);
                }
                h
            }
            None => inner.size_hint(),
        }
    }
}
