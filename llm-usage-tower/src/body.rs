//! Body wrappers that show every data frame to the exchange and pass it on unchanged.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::callback::Outcome;
use crate::state::{Shared, Tap};

pin_project! {
    /// The request body handed to the inner service: the original body, observed.
    ///
    /// Frames (data and trailers), errors, [`Body::is_end_stream`] and [`Body::size_hint`]
    /// pass through untouched; data frames are also fed to the exchange's parser.
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
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, shared: Option<Arc<Shared>>) -> Self {
        RequestBody { inner, shared }
    }

    /// Wraps a body without observing it.
    pub fn unobserved(inner: B) -> Self {
        RequestBody {
            inner,
            shared: None,
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the body; the rest of it is not observed.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: fmt::Debug> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("inner", &self.inner)
            .field("observed", &self.shared.is_some())
            .finish()
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let res = ready!(inner.as_mut().poll_frame(cx));
        if let Some(shared) = this.shared.as_ref() {
            match &res {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        shared.request_data(data);
                    }
                    if inner.is_end_stream() {
                        shared.request_end();
                        *this.shared = None;
                    }
                }
                // An erroring request body leaves the request incomplete; the response
                // (usually an error too) decides the record.
                Some(Err(_)) => *this.shared = None,
                None => {
                    shared.request_end();
                    *this.shared = None;
                }
            }
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response body returned by the layer: the inner service's body, observed.
    ///
    /// Frames, errors, [`Body::is_end_stream`] and [`Body::size_hint`] pass through untouched.
    /// The exchange's record is emitted when the body ends (`complete` outcome), yields an error
    /// (`body_error`), or is dropped before its end (`dropped`, a partial record).
    ///
    /// ```
    /// use http_body::Body;
    /// use llm_usage_tower::ResponseBody;
    ///
    /// let body = ResponseBody::unobserved(String::new());
    /// assert!(body.is_end_stream());
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        tap: Tap,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, shared: Option<Arc<Shared>>) -> Self {
        ResponseBody {
            inner,
            tap: Tap::new(shared, Outcome::Dropped),
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
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("observed", &self.tap.get().is_some())
            .finish()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let res = ready!(inner.as_mut().poll_frame(cx));
        if let Some(shared) = this.tap.get() {
            match &res {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        shared.response_data(data);
                    }
                    if inner.is_end_stream() {
                        this.tap.finish(Outcome::Complete);
                    }
                }
                Some(Err(_)) => this.tap.finish(Outcome::BodyError),
                None => this.tap.finish(Outcome::Complete),
            }
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
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
        self.inner.size_hint()
    }
}
