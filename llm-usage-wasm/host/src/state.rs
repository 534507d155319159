//! What the host knows about one VM: contexts, streams, properties, logs and stats.

use std::collections::BTreeMap;

use crate::stats::Stats;

/// A header map as the host keeps it: lower-case names, in insertion order.
pub type HeaderMap = Vec<(Vec<u8>, Vec<u8>)>;

/// Which top-level paths the node properties are served under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePaths {
    /// `xds.node.*` and `xds.cluster_name` only (Envoy ≥ 1.33).
    Xds,
    /// `node.*` and `cluster_name` only (older Envoy).
    Legacy,
    /// Both.
    Both,
}

/// One line the filter logged (through `proxy_log` or WASI `fd_write`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Proxy-wasm log level (0 trace … 5 critical).
    pub level: u32,
    /// The context the call was made in.
    pub context_id: u32,
    /// The message.
    pub message: String,
}

/// A local response (`proxy_send_local_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// The HTTP status.
    pub status: u32,
    /// The headers the filter added (names lower-cased, as Envoy's `LowerCaseString`).
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    /// The gRPC status (-1: none).
    pub grpc_status: i32,
    /// The response code details.
    pub details: String,
}

/// The action a callback returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 0: go on.
    Continue,
    /// 1: stop (headers: StopAllIterationAndWatermark; body: StopIterationAndBuffer).
    Pause,
    /// The callback is not exported or returned nothing.
    None,
    /// Any other value (Envoy maps unknown values to Continue for headers and data).
    Other(i64),
}

impl StreamState {
    /// The request headers go upstream as they are now; the filter can no longer reach them.
    pub(crate) fn continue_request_headers(&mut self) {
        self.live_maps.request_headers = false;
        if self.upstream_request_headers.is_none() {
            self.upstream_request_headers = self.request_headers.clone();
        }
    }

    /// The response headers go to the client as they are now.
    pub(crate) fn continue_response_headers(&mut self) {
        self.live_maps.response_headers = false;
        if self.downstream_response_headers.is_none() {
            self.downstream_response_headers = self.response_headers.clone();
        }
    }

    /// How the request goes upstream over HTTP/1.1: the headers as continued and the bytes
    /// forwarded (`None` before the headers were continued).
    pub fn upstream_request_framing(&self) -> Option<Http1Framing> {
        let h = self.upstream_request_headers.as_ref()?;
        Some(Http1Framing::of(
            h,
            self.forwarded_request.len(),
            self.request_headers_only,
        ))
    }

    /// How the response goes to the client over HTTP/1.1.
    pub fn downstream_response_framing(&self) -> Option<Http1Framing> {
        let h = self.downstream_response_headers.as_ref()?;
        Some(Http1Framing::of(
            h,
            self.forwarded_response.len(),
            self.response_headers_only,
        ))
    }
}

impl Action {
    pub(crate) fn from_ret(ret: Option<i64>) -> Action {
        match ret {
            Some(0) => Action::Continue,
            Some(1) => Action::Pause,
            Some(v) => Action::Other(v),
            None => Action::None,
        }
    }
}

/// The header and trailer maps a filter can reach at a given moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LiveMaps {
    /// Request headers (`request_headers_` in Envoy's wasm `Context`).
    pub request_headers: bool,
    /// Request trailers.
    pub request_trailers: bool,
    /// Response headers.
    pub response_headers: bool,
    /// Response trailers.
    pub response_trailers: bool,
}

/// How Envoy's HTTP/1.1 codec frames a message body it sends
/// (`source/common/http/http1/codec_impl.cc`, `StreamEncoderImpl::encodeHeadersBase`): with
/// the `content-length` the headers carry, else, for a message that has a body, with
/// `transfer-encoding: chunked`, else with `content-length: 0` added. The body bytes are
/// written as they come (`StreamEncoderImpl::encodeData`): nothing checks them against a
/// `content-length`, so a wrong one corrupts the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http1Framing {
    /// `content-length` as the headers say, and whether it matches the bytes sent.
    ContentLength {
        /// The declared length.
        declared: u64,
        /// Whether the body sent has exactly that many bytes.
        matches: bool,
    },
    /// No `content-length`: `transfer-encoding: chunked` is added.
    Chunked,
    /// A headers-only message: `content-length: 0` is added.
    Empty,
    /// A `content-length` that is not a number (Envoy's codecs would have refused it).
    Invalid,
}

impl Http1Framing {
    /// The framing of a message with `headers` (lower-case names) whose body is `body_len`
    /// bytes, or none at all when `headers_only`.
    pub fn of(headers: &HeaderMap, body_len: usize, headers_only: bool) -> Http1Framing {
        match headers.iter().find(|(k, _)| k == b"content-length") {
            Some((_, v)) => match std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(n) => Http1Framing::ContentLength {
                    declared: n,
                    matches: n == body_len as u64,
                },
                None => Http1Framing::Invalid,
            },
            None if headers_only => Http1Framing::Empty,
            None => Http1Framing::Chunked,
        }
    }

    /// Whether a peer reads exactly the bytes sent: chunked, empty, or a matching length.
    pub fn is_sound(self) -> bool {
        matches!(
            self,
            Http1Framing::Chunked
                | Http1Framing::Empty
                | Http1Framing::ContentLength { matches: true, .. }
        )
    }
}

/// The host-side state of one HTTP stream.
#[derive(Debug, Default, Clone)]
pub struct StreamState {
    /// Whether `proxy_on_context_create` has run for it.
    pub created: bool,
    /// Request headers, once delivered.
    pub request_headers: Option<HeaderMap>,
    /// Request trailers, once delivered.
    pub request_trailers: Option<HeaderMap>,
    /// Response headers, once delivered.
    pub response_headers: Option<HeaderMap>,
    /// Response trailers, once delivered.
    pub response_trailers: Option<HeaderMap>,
    /// The request body buffer the filter sees now.
    pub request_body: Vec<u8>,
    /// The response body buffer the filter sees now.
    pub response_body: Vec<u8>,
    /// Whether the last request body call paused (so Envoy buffers).
    pub request_buffering: bool,
    /// Whether the last response body call paused.
    pub response_buffering: bool,
    /// Whether `proxy_on_request_body` is running (the chunk buffer is the filter's).
    pub in_request_body: bool,
    /// Whether `proxy_on_response_body` is running.
    pub in_response_body: bool,
    /// Which header and trailer maps the filter can reach now, as in Envoy: a map is reachable
    /// in its own callback and, if that callback stopped iteration, until the stream goes on
    /// (`Context::decodeHeaders` and friends clear the pointer once they answer Continue).
    pub live_maps: LiveMaps,
    /// The request headers the filter chain passed on upstream, as they were when they were
    /// continued (`None` until then).
    pub upstream_request_headers: Option<HeaderMap>,
    /// Whether the request ended with its headers (no body, no trailers).
    pub request_headers_only: bool,
    /// The response headers passed on to the client, as they were when they were continued.
    pub downstream_response_headers: Option<HeaderMap>,
    /// Whether the response ended with its headers.
    pub response_headers_only: bool,
    /// Request bytes passed on upstream.
    pub forwarded_request: Vec<u8>,
    /// Response bytes passed on downstream.
    pub forwarded_response: Vec<u8>,
    /// Filter state set through `proxy_set_property`, by Envoy key (`wasm.<path>`).
    pub filter_state: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Every callback and the action it returned, in order.
    pub callbacks: Vec<(&'static str, Action)>,
    /// Whether the filter modified a header map or body buffer.
    pub modified: bool,
    /// Whether Envoy is in the access-log phase (`on_log`) for this stream.
    pub access_log_phase: bool,
    /// The stream was stopped by a paused end-of-stream call and never continued.
    pub stalled: bool,
    /// A local response the filter asked for, waiting for its callback to return (Envoy
    /// sends it as an after-VM-call action).
    pub pending_local_response: Option<LocalResponse>,
    /// The local response sent instead of the upstream's, if any.
    pub local_response: Option<LocalResponse>,
    /// Whether the stream was reset (a local reply asked for after the response headers
    /// went downstream).
    pub reset: bool,
    /// Whether `on_done`/`on_delete` ran.
    pub destroyed: bool,
}

/// Everything the host functions read and write, kept in the engine's store.
#[derive(Debug)]
pub struct HostState {
    /// The VM configuration (`vm_config.configuration`).
    pub vm_config: Vec<u8>,
    /// The plugin configuration (`configuration`).
    pub plugin_config: Vec<u8>,
    /// Whether `on_configure` is running (the only time Envoy exposes the plugin config).
    pub in_configure: bool,
    /// `plugin_name` property.
    pub plugin_name: String,
    /// `plugin_root_id` property.
    pub root_id: String,
    /// `plugin_vm_id` property.
    pub vm_id: String,
    /// Static properties by serialized path (elements joined by NUL).
    pub properties: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The root context id.
    pub root_context_id: u32,
    /// The context whose callback is running (0: none).
    pub current_context: u32,
    /// Set by `proxy_set_effective_context` for the rest of the callback.
    pub effective_context: Option<u32>,
    /// HTTP streams by context id.
    pub streams: BTreeMap<u32, StreamState>,
    /// Host clock, nanoseconds since the Unix epoch.
    pub clock_ns: u64,
    /// What the host reports as its log level.
    pub log_level: u32,
    /// Log lines.
    pub logs: Vec<LogLine>,
    /// Stats (Envoy's store for the custom metrics).
    pub stats: Stats,
    /// Metric ids handed out by `proxy_define_metric`, to full stat names.
    pub metric_ids: BTreeMap<u32, String>,
    /// Number of calls per host function.
    pub calls: BTreeMap<String, u64>,
    /// Number of non-Ok statuses returned, per host function.
    pub refused: BTreeMap<String, u64>,
    /// The tick period the root asked for.
    pub tick_period_ms: u32,
    /// The process-wide shared data, shared with every VM of the same [`Host`](crate::Host).
    pub shared_data: std::sync::Arc<crate::shared::SharedData>,
    /// Host functions made to fail with `InternalFailure` (fault injection for tests).
    pub fail_calls: std::collections::BTreeSet<String>,
    /// Whether streams keep the bytes they pass on (`forwarded_request`/`_response`).
    pub keep_forwarded: bool,
    /// Seed for `random_get`.
    pub random_state: u64,
}

impl HostState {
    pub(crate) fn new() -> HostState {
        HostState {
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            in_configure: false,
            plugin_name: "llm-usage".into(),
            root_id: String::new(),
            vm_id: String::new(),
            properties: BTreeMap::new(),
            root_context_id: 1,
            current_context: 0,
            effective_context: None,
            streams: BTreeMap::new(),
            clock_ns: 1_767_225_600_000_000_000, // 2026-01-01T00:00:00Z
            log_level: 2,
            logs: Vec::new(),
            stats: Stats::default(),
            metric_ids: BTreeMap::new(),
            calls: BTreeMap::new(),
            refused: BTreeMap::new(),
            tick_period_ms: 0,
            shared_data: Default::default(),
            fail_calls: std::collections::BTreeSet::new(),
            keep_forwarded: true,
            random_state: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// The context host calls act on.
    pub(crate) fn context(&self) -> u32 {
        self.effective_context.unwrap_or(self.current_context)
    }

    /// The stream host calls act on, if the current context is a stream.
    pub(crate) fn stream(&mut self) -> Option<&mut StreamState> {
        let id = self.context();
        self.streams.get_mut(&id)
    }
}
