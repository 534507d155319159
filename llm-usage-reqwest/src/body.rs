//! The response body the caller reads: the upstream's, frame by frame, each data frame
//! shown to the exchange on its way through.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::report::Call;
use crate::Outcome;

/// Wraps the response body; ends the call at its end, error or drop.
pub(crate) struct ObservedBody {
    inner: reqwest::Body,
    /// `None` once the call was ended.
    call: Option<Arc<Call>>,
}

impl ObservedBody {
    pub(crate) fn new(inner: reqwest::Body, call: Arc<Call>) -> Self {
        ObservedBody {
            inner,
            call: Some(call),
        }
    }

    fn end(&mut self, outcome: Outcome) {
        if let Some(call) = self.call.take() {
            call.finish(outcome);
        }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, reqwest::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(call)) = (frame.data_ref(), &self.call) {
                    call.response_data(data);
                }
            }
            Poll::Ready(Some(Err(_))) => self.end(Outcome::BodyError),
            Poll::Ready(None) => self.end(Outcome::Complete),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        self.end(Outcome::Dropped);
    }
}
