//! Realtime sessions (OpenAI Realtime, Gemini Live) over an upgraded connection: a
//! WebSocket after `101 Switching Protocols`.
//!
//! After an upgrade the session's bytes no longer flow through the response body: the
//! application gets the connection's IO from `hyper::upgrade::on` and copies or serves
//! frames on it. So the layer, when a request asks for a WebSocket (`upgrade: websocket`),
//! puts a [`Session`] in the request's extensions (and, when the response upgraded, in the
//! response's); the application wraps the upgraded IO with [`Session::server_io`] (a
//! server's IO: it reads the client's frames and writes the server's) or
//! [`Session::client_io`] (a client's IO: the other way round), and uses the returned
//! [`Observed`] IO in its place. Every byte passes unchanged, unbuffered; the layer's core
//! reads the frames on the way (masking, fragments, control frames, permessage-deflate as
//! the `101` negotiated it).
//!
//! Every response the session closes (OpenAI Realtime `response.done`, Gemini Live
//! `turnComplete`) is reported at once through the layer's normal reporting: a
//! [`UsageEvent`](crate::UsageEvent) with
//! [`realtime_response`](crate::UsageEvent::realtime_response) set, to the callback, the
//! token and cost metrics, the price table and the token budgets. When the session ends
//! (the server's side of the stream ends, an IO error, or the IO is dropped), its last
//! record (what no closing event covered; `complete: false` when the session was cut) is
//! emitted, and counted as the session's one request.
//!
//! With the `http2` feature, an HTTP/2 WebSocket (RFC 8441: a `CONNECT` whose hyper
//! `ext::Protocol` is `websocket`, answered `200`) is a session too: the core reads its heads
//! in their HTTP/1.1 form (`GET`, `101`, `upgrade: websocket`), and the IO hyper hands over
//! for the stream is wrapped the same way.
//!
//! ```no_run
//! use http::Request;
//! use hyper_util::rt::TokioIo;
//! use llm_usage_tower::realtime::Session;
//!
//! // In a handler behind the layer, answering a WebSocket upgrade itself.
//! async fn upgrade<B>(mut req: Request<B>) {
//!     let session = req.extensions_mut().remove::<Session>();
//!     let on_upgrade = hyper::upgrade::on(&mut req);
//!     tokio::spawn(async move {
//!         let Ok(upgraded) = on_upgrade.await else { return };
//!         let io = TokioIo::new(upgraded);
//!         match session {
//!             Some(s) => serve_frames(s.server_io(io)).await,
//!             None => serve_frames(io).await,
//!         }
//!     });
//!     // ... and answer `101 Switching Protocols`.
//! }
//! # async fn serve_frames<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(_io: IO) {}
//! ```

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::callback::Outcome;
use crate::state::Shared;

/// The realtime session of one observed exchange: a handle the layer puts in the request's
/// extensions when the request asks for a WebSocket, and in the response's when the
/// response upgraded the connection.
///
/// Wrap the upgraded connection's IO with [`server_io`](Self::server_io) or
/// [`client_io`](Self::client_io); only the first wrap observes (a clone wrapping a second
/// IO passes its bytes unobserved, so that no byte is counted twice). When no IO was wrapped
/// and the last handle is dropped, the session ends with an empty, partial record.
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle>,
    /// Asked for over HTTP/2 (extended CONNECT, answered `200`).
    http2: bool,
}

/// Dropping the last one leaves the session unobserved, unless an IO attached.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.unclaimed();
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, http2: bool) -> Session {
        Session {
            handle: Arc::new(Handle { shared }),
            http2,
        }
    }

    /// Whether the session was asked for over HTTP/2 (RFC 8441).
    pub(crate) fn http2(&self) -> bool {
        self.http2
    }

    /// Observes `io`, a server's end of the upgraded connection (a gateway's or a handler's
    /// IO from `hyper::upgrade::on(request)`): what it reads are the client's frames, what
    /// is written to it the server's. Shutting down its write side ends the session cleanly.
    pub fn server_io<IO>(self, io: IO) -> Observed<IO> {
        self.attach(io, Role::Server)
    }

    /// Observes `io`, a client's end of the upgraded connection (from
    /// `hyper::upgrade::on(response)`): what it reads are the server's frames, what is
    /// written to it the client's. Its end of file ends the session cleanly.
    pub fn client_io<IO>(self, io: IO) -> Observed<IO> {
        self.attach(io, Role::Client)
    }

    fn attach<IO>(self, io: IO, role: Role) -> Observed<IO> {
        let shared = &self.handle.shared;
        let tap = shared.attach().then(|| Attached {
            shared: shared.clone(),
            role,
        });
        Observed { io, tap }
    }
}

/// Which end of the connection an [`Observed`] IO is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The server's: reads the client's frames.
    Server,
    /// The client's: reads the server's frames.
    Client,
}

/// The session an IO observes; dropping it ends the session (partial unless the server's
/// side ended first).
struct Attached {
    shared: Arc<Shared>,
    role: Role,
}

impl Attached {
    /// Bytes read from the IO.
    fn read(&self, data: &[u8]) {
        self.shared.session_data(data, self.role == Role::Server);
    }

    /// Bytes written to the IO.
    fn written(&self, data: &[u8]) {
        self.shared.session_data(data, self.role == Role::Client);
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.shared.detach(Outcome::Dropped);
    }
}

pin_project! {
    /// An upgraded connection's IO, observed: a tokio [`AsyncRead`] + [`AsyncWrite`] that
    /// passes every call to the IO it wraps and shows the bytes read and written to the
    /// layer's core, unchanged and without holding any (made by [`Session::server_io`] and
    /// [`Session::client_io`]; for hyper's `Upgraded`, wrap it in
    /// `hyper_util::rt::TokioIo` first).
    ///
    /// The session ends, and its last record is emitted, when the server's side of the
    /// stream ends (`complete` outcome: the IO of a client reads its end of file, that of
    /// a server is shut down), when the IO fails (`body_error` for the server's side,
    /// `dropped` for the client's), or when this is dropped (`dropped`).
    pub struct Observed<IO> {
        #[pin]
        io: IO,
        tap: Option<Attached>,
    }
}

impl<IO: fmt::Debug> fmt::Debug for Observed<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observed")
            .field("io", &self.io)
            .field("observed", &self.tap.is_some())
            .finish()
    }
}

impl<IO> Observed<IO> {
    /// Wraps `io` without observing it.
    pub fn unobserved(io: IO) -> Self {
        Observed { io, tap: None }
    }

    /// The wrapped IO.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The wrapped IO, mutably: bytes read or written through it directly are not seen,
    /// and the session's frames can then no longer be followed.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.io
    }

    /// Unwraps the IO; the session ends (partial).
    pub fn into_inner(self) -> IO {
        self.io
    }
}

/// Ends the session with `outcome` (the server's side ended or failed, or the client's
/// failed): no more bytes are observed.
fn end(tap: &mut Option<Attached>, outcome: Outcome) {
    if let Some(t) = tap.take() {
        // Its drop then finds the session ended.
        t.shared.detach(outcome);
    }
}

impl<IO: AsyncRead> AsyncRead for Observed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = ready!(this.io.poll_read(cx, buf));
        if let Some(tap) = this.tap.as_ref() {
            let role = tap.role;
            match &res {
                Ok(()) => match buf.filled().get(before..) {
                    Some(new) if !new.is_empty() => tap.read(new),
                    // The server's frames ended.
                    _ if role == Role::Client => end(this.tap, Outcome::Complete),
                    // The client sent all it will: the server may still answer.
                    _ => {}
                },
                Err(_) => end(this.tap, failure(role, true)),
            }
        }
        Poll::Ready(res)
    }
}

/// The outcome of an IO error: on the server's side of the stream (a client's IO reading,
/// a server's writing) `body_error`, on the client's `dropped` (it hung up).
fn failure(role: Role, reading: bool) -> Outcome {
    if (role == Role::Client) == reading {
        Outcome::BodyError
    } else {
        Outcome::Dropped
    }
}

impl<IO: AsyncWrite> AsyncWrite for Observed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = ready!(this.io.poll_write(cx, buf));
        if let Some(tap) = this.tap.as_ref() {
            match &res {
                Ok(n) => tap.written(buf.get(..*n).unwrap_or(buf)),
                Err(_) => {
                    let role = tap.role;
                    end(this.tap, failure(role, false));
                }
            }
        }
        Poll::Ready(res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = ready!(this.io.poll_write_vectored(cx, bufs));
        if let Some(tap) = this.tap.as_ref() {
            match &res {
                Ok(n) => {
                    // The first `n` bytes of the slices were written.
                    let mut left = *n;
                    for b in bufs {
                        if left == 0 {
                            break;
                        }
                        let take = left.min(b.len());
                        tap.written(&b[..take]);
                        left -= take;
                    }
                }
                Err(_) => {
                    let role = tap.role;
                    end(this.tap, failure(role, false));
                }
            }
        }
        Poll::Ready(res)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let res = ready!(this.io.poll_shutdown(cx));
        if this.tap.as_ref().is_some_and(|t| t.role == Role::Server) {
            // The server's frames ended (or could not be ended cleanly).
            let outcome = match res {
                Ok(()) => Outcome::Complete,
                Err(_) => Outcome::BodyError,
            };
            end(this.tap, outcome);
        }
        Poll::Ready(res)
    }
}
