//! [`LlmUsageLayer`], the [`LlmUsage`] service and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use llm_usage_core::inject::{self, Skip};
use llm_usage_core::{Options, Provider};
use llm_usage_cost::{Budgets, Decision, KeyFacts, LocalReply, PriceTable};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{RequestBody, ResponseBody};
use crate::budget::{decide_owned, AsyncBudgetStore, Clock, Enforcer, SystemClock};
use crate::callback::{Injection, OnRecord, Outcome, UsageEvent};
use crate::metrics_config::MetricsConfig;
use crate::realtime::Session;
use crate::state::{Shared, Tap};

type FilterFn = Arc<dyn Fn(&http::request::Parts) -> bool + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) options: Options,
    pub(crate) metrics: Option<MetricsConfig>,
    on_record: Option<Arc<dyn OnRecord>>,
    recorder: Option<Arc<dyn metrics::Recorder + Send + Sync>>,
    filter: Option<FilterFn>,
    inject_include_usage: bool,
    max_inject_body_bytes: u64,
    pub(crate) prices: Option<Arc<PriceTable>>,
    pub(crate) budgets: Option<Enforcer>,
}

impl Config {
    /// Counts a request the limit `limit` denied.
    fn emit_denied(&self, shared: &Shared, limit: usize) {
        let (Some(m), Some(e)) = (&self.metrics, &self.budgets) else {
            return;
        };
        let labels = shared.head_labels(http::StatusCode::TOO_MANY_REQUESTS);
        let name = &e.budgets.limits()[limit].name;
        match &self.recorder {
            Some(r) => metrics::with_local_recorder(&**r, || m.emit_denied(&labels, name)),
            None => m.emit_denied(&labels, name),
        }
    }

    pub(crate) fn emit(&self, mut event: UsageEvent, request_values: &[Option<String>]) {
        if let Some(m) = &self.metrics {
            event.labels = m.resolve(request_values, &event.record, event.status, event.outcome);
            match &self.recorder {
                Some(r) => metrics::with_local_recorder(&**r, || m.emit(&event)),
                None => m.emit(&event),
            }
        }
        if let Some(cb) = &self.on_record {
            cb.on_record(&event);
        }
    }
}

/// A [`Layer`] that observes LLM API traffic and records model and token usage.
///
/// It wraps request and response bodies (any [`http_body::Body`]) and feeds every data frame
/// to an `llm-usage-core` [`Exchange`](llm_usage_core::Exchange) as it passes: nothing is
/// buffered, no byte changes, trailers, size hints and backpressure are preserved. When the
/// response body ends, errors, or is dropped early, the usage record is emitted once through
/// the [`metrics`] facade (see [`MetricsConfig`]) and the [`OnRecord`] callback.
///
/// Use it as server middleware (in front of a handler that proxies to a provider) or as
/// client middleware (around an HTTP client calling a provider).
///
/// ```
/// use llm_usage_tower::{LlmUsageLayer, MetricsConfig, UsageEvent};
/// use tower::ServiceBuilder;
///
/// let layer = LlmUsageLayer::new()
///     .metrics(MetricsConfig::otel().max_models(20))
///     .on_record(|ev: &UsageEvent| eprintln!("{:?}", ev.record));
/// let svc = ServiceBuilder::new().layer(layer).service_fn(
///     |_req: http::Request<llm_usage_tower::RequestBody<String>>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("{}")))
///     },
/// );
/// # let _: &llm_usage_tower::LlmUsage<_> = &svc;
/// ```
#[derive(Clone)]
pub struct LlmUsageLayer {
    config: Arc<Config>,
}

impl fmt::Debug for LlmUsageLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmUsageLayer")
            .field("options", &self.config.options)
            .field("metrics", &self.config.metrics)
            .field("on_record", &self.config.on_record.is_some())
            .field("recorder", &self.config.recorder.is_some())
            .field("filter", &self.config.filter.is_some())
            .field("inject_include_usage", &self.config.inject_include_usage)
            .field("max_inject_body_bytes", &self.config.max_inject_body_bytes)
            .field(
                "prices",
                &self.config.prices.as_ref().map(|t| t.entries().len()),
            )
            .field(
                "budgets",
                &self
                    .config
                    .budgets
                    .as_ref()
                    .map(|e| e.budgets.limits().len()),
            )
            .finish()
    }
}

impl Default for LlmUsageLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl LlmUsageLayer {
    /// A layer with the OpenTelemetry metric profile ([`MetricsConfig::otel`]), provider
    /// auto-detection, no body limit and no callback.
    pub fn new() -> Self {
        LlmUsageLayer {
            config: Arc::new(Config {
                options: llm_usage_report::default_options(),
                metrics: Some(MetricsConfig::otel()),
                on_record: None,
                recorder: None,
                filter: None,
                inject_include_usage: false,
                max_inject_body_bytes: inject::DEFAULT_MAX_INJECT_BODY_BYTES,
                prices: None,
                budgets: None,
            }),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The metric names, labels and profile to emit with.
    pub fn metrics(self, metrics: MetricsConfig) -> Self {
        self.with(|c| c.metrics = Some(metrics))
    }

    /// Emits no metrics (only the callback).
    pub fn without_metrics(self) -> Self {
        self.with(|c| c.metrics = None)
    }

    /// The metrics configuration in use, e.g. for [`MetricsConfig::histogram_buckets`].
    pub fn metrics_config(&self) -> Option<&MetricsConfig> {
        self.config.metrics.as_ref()
    }

    /// Emits metrics to this recorder instead of the global one (useful for several registries,
    /// and for tests).
    ///
    /// ```
    /// let recorder = metrics_util::debugging::DebuggingRecorder::new();
    /// let snapshotter = recorder.snapshotter();
    /// let layer = llm_usage_tower::LlmUsageLayer::new().recorder(recorder);
    /// # let _ = (layer, snapshotter);
    /// ```
    pub fn recorder<R>(self, recorder: R) -> Self
    where
        R: metrics::Recorder + Send + Sync + 'static,
    {
        self.with(|c| c.recorder = Some(Arc::new(recorder)))
    }

    /// Registers the descriptions and units of the configured metrics with the layer's recorder
    /// (the one given to [`recorder`](Self::recorder), else the global one). Call it once,
    /// after installing the recorder.
    ///
    /// ```
    /// let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    /// let handle = recorder.handle();
    /// let layer = llm_usage_tower::LlmUsageLayer::new().recorder(recorder);
    /// layer.describe_metrics();
    /// # let _ = handle;
    /// ```
    pub fn describe_metrics(&self) {
        let Some(m) = &self.config.metrics else {
            return;
        };
        match &self.config.recorder {
            Some(r) => metrics::with_local_recorder(&**r, || m.describe()),
            None => m.describe(),
        }
    }

    /// Called once per exchange with its [`UsageEvent`].
    pub fn on_record<C: OnRecord>(self, callback: C) -> Self {
        self.with(|c| c.on_record = Some(Arc::new(callback)))
    }

    /// Forces the provider dialect instead of detecting it from path, headers and body.
    pub fn provider(self, provider: Provider) -> Self {
        self.with(|c| c.options.provider = Some(provider))
    }

    /// Stops inspecting a body after this many decoded bytes (the body still passes whole).
    pub fn max_body_bytes(self, max: u64) -> Self {
        self.with(|c| c.options.max_body_bytes = Some(max))
    }

    /// How tokens a response did not report are estimated: `Some(new)` counts the text
    /// with the tokenizer `new` makes for each body, `None` estimates from character
    /// counts, as the proxy-wasm filter does. The default, with the `bpe` feature (on by
    /// default), is OpenAI's encodings for OpenAI models
    /// ([`Bpe::boxed`](llm_usage_core::Bpe::boxed)), else character counts.
    pub fn token_counter(self, new: Option<llm_usage_core::NewTokenCounter>) -> Self {
        self.with(|c| c.options.token_counter = new)
    }

    /// Adds `stream_options.include_usage` to streamed OpenAI-compatible requests, so that their
    /// streams report usage, and hides the added usage chunk from clients that did not ask
    /// for it (off by default).
    ///
    /// A `POST` to `…/chat/completions` or `…/completions` with a body (and the OpenAI-compatible
    /// dialect) loses its `content-length` header and its body is held, up to
    /// [`max_inject_body_bytes`](Self::max_inject_body_bytes), then handed to the inner service
    /// as one data frame: rewritten when it has `"stream": true` and no
    /// `include_usage: true` (one member added or one value changed, every other byte kept),
    /// else as it came. The inner service then sends it with chunked framing (HTTP/1.1) or no
    /// length (HTTP/2). When it was rewritten, the response's usage-only chunk is removed from
    /// the event stream the client receives, every other byte unchanged; the record still
    /// counts its usage. Anything unexpected (invalid JSON, `stream_options` not an object, an
    /// encoded body, …) leaves the bytes untouched and is counted
    /// ([`MetricsConfig::inject_skipped_counter`]) and reported in
    /// [`UsageEvent::injection`]. Upstreams that reject `stream_options` are listed in the
    /// crate README: do not enable it for them.
    ///
    /// ```
    /// let layer = llm_usage_tower::LlmUsageLayer::new().inject_include_usage(true);
    /// # let _ = layer;
    /// ```
    pub fn inject_include_usage(self, on: bool) -> Self {
        self.with(|c| c.inject_include_usage = on)
    }

    /// The largest request body held for injection (default 1 MiB); a larger one passes
    /// untouched as it comes (skip reason `too_large`).
    pub fn max_inject_body_bytes(self, max: u64) -> Self {
        self.with(|c| c.max_inject_body_bytes = max)
    }

    /// Prices every exchange with this table (`llm-usage-cost`): the cost goes into
    /// [`UsageEvent::pricing`] and [`UsageEvent::cost`], and into the cost counter
    /// (`llm_usage_cost_micros_total` / `asm_llm_proxy_cost_micros`, micro-units of the
    /// table's currency, each exchange rounded down); an exchange whose model has no price
    /// has no cost (never 0) and counts in the lookup-miss counter
    /// (`llm_usage_price_lookup_misses_total` / `asm_llm_proxy_price_lookup_misses`).
    ///
    /// ```
    /// let table = llm_usage_cost::PriceTable::from_json(
    ///     r#"{"currency": "USD", "per_tokens": 1000000,
    ///         "models": {"gpt-4o*": {"input": 2.5, "cached_input": 1.25, "output": 10.0}}}"#,
    /// )?;
    /// let layer = llm_usage_tower::LlmUsageLayer::new().prices(table);
    /// # let _ = layer;
    /// # Ok::<(), llm_usage_cost::TableError>(())
    /// ```
    pub fn prices(self, table: PriceTable) -> Self {
        self.with(|c| c.prices = Some(Arc::new(table)))
    }

    /// Enforces token budgets ([`Budgets`], `llm-usage-cost`) with counters in `store`
    /// ([`MemoryStore`](crate::budget::MemoryStore) for one process,
    /// [`RedisStore`](crate::budget::RedisStore) for replicas sharing one budget).
    ///
    /// Each observed request is checked when it arrives, before the inner service is
    /// called: a request whose key has used its budget in the current window is answered
    /// by the layer with `429`, `retry-after`, `x-ratelimit-limit-tokens`,
    /// `x-ratelimit-remaining-tokens` and a JSON error body shaped like its provider's
    /// (counted in the budget-denial counter; no [`UsageEvent`] is emitted for it). Other
    /// requests pass unchanged and are charged when their response ends (also a cut or
    /// dropped stream, with what was seen or estimated). A store that fails never blocks
    /// (fail open). The keys, read from the request head: `header:<name>`, `model` (the
    /// model the path names: Gemini, Vertex, Bedrock; a model named only in the body is
    /// not known when the request is checked, so such a limit does not apply to it),
    /// `destination_service` (the request authority), `all`; `source_workload` never
    /// applies in the layer. Requests [`filter`](Self::filter) leaves unobserved are not
    /// limited. Windows and overshoot: the crate README.
    ///
    /// ```
    /// use llm_usage_cost::Budgets;
    /// use llm_usage_tower::budget::MemoryStore;
    ///
    /// let budgets = Budgets::from_json(
    ///     r#"[{"name": "per-key", "key": "header:x-api-key", "tokens": 100000, "window_s": 60}]"#,
    /// )?;
    /// let layer = llm_usage_tower::LlmUsageLayer::new().budgets(budgets, MemoryStore::new());
    /// # let _ = layer;
    /// # Ok::<(), llm_usage_cost::LimitError>(())
    /// ```
    pub fn budgets<St: AsyncBudgetStore + 'static>(self, budgets: Budgets, store: St) -> Self {
        self.with(|c| {
            let clock = c.budgets.as_ref().map_or_else(
                || Arc::new(SystemClock) as Arc<dyn Clock>,
                |e| e.clock.clone(),
            );
            c.budgets = Some(Enforcer {
                budgets: Arc::new(budgets),
                store: Arc::new(store),
                clock,
            });
        })
    }

    /// The clock budget windows are read from (default [`SystemClock`]); set it after
    /// [`budgets`](Self::budgets).
    pub fn budget_clock<C: Clock>(self, clock: C) -> Self {
        self.with(|c| {
            if let Some(e) = &mut c.budgets {
                e.clock = Arc::new(clock);
            }
        })
    }

    /// Observes only the requests for which `f` returns `true`; the others pass through
    /// unobserved (and are not counted).
    ///
    /// ```
    /// let layer = llm_usage_tower::LlmUsageLayer::new()
    ///     .filter(|parts: &http::request::Parts| parts.uri.path().starts_with("/v1/"));
    /// # let _ = layer;
    /// ```
    pub fn filter<F>(self, f: F) -> Self
    where
        F: Fn(&http::request::Parts) -> bool + Send + Sync + 'static,
    {
        self.with(|c| c.filter = Some(Arc::new(f)))
    }
}

impl<S> Layer<S> for LlmUsageLayer {
    type Service = LlmUsage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LlmUsage {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service produced by [`LlmUsageLayer`].
///
/// It hands the inner service a `Request<RequestBody<ReqB>>` and returns a
/// `Response<ResponseBody<ResB>>`.
///
/// ```
/// use llm_usage_tower::{LlmUsage, LlmUsageLayer};
/// use tower::Layer;
///
/// let svc: LlmUsage<_> = LlmUsageLayer::new().layer(tower::service_fn(
///     |_req: http::Request<llm_usage_tower::RequestBody<String>>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     },
/// ));
/// assert!(format!("{svc:?}").starts_with("LlmUsage"));
/// ```
#[derive(Clone)]
pub struct LlmUsage<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for LlmUsage<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmUsage")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> LlmUsage<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for LlmUsage<S>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
    ReqB: http_body::Body + Send + 'static,
    ResB: http_body::Body,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let observe = match &self.config.filter {
            Some(f) => f(&parts),
            None => true,
        };
        let websocket = observe.then(|| asks_for_websocket(&parts)).flatten();
        let shared = observe.then(|| {
            Shared::start(
                self.config.clone(),
                &parts.method,
                &parts.uri,
                &parts.headers,
                &parts.extensions,
                websocket == Some(Upgrade::Http2),
            )
        });
        if let Some(s) = &shared {
            if body.is_end_stream() {
                s.request_end();
            }
        }
        let hold = match &shared {
            Some(s) if self.config.inject_include_usage && !body.is_end_stream() => {
                self.injection_start(s, &mut parts)
            }
            _ => None,
        };
        let body = match hold {
            Some(max) => RequestBody::holding(body, shared.clone(), max),
            None => RequestBody::new(body, shared.clone()),
        };
        let check = match (&shared, &self.config.budgets) {
            (Some(s), Some(e)) => budget_check(s, e, &parts),
            _ => None,
        };
        let session = match (&shared, websocket) {
            (Some(s), Some(how)) => {
                let session = Session::new(s.clone(), how == Upgrade::Http2);
                parts.extensions.insert(session.clone());
                Some(session)
            }
            _ => None,
        };
        let req = Request::from_parts(parts, body);
        let Some(check) = check else {
            return ResponseFuture {
                inner: Some(self.inner.call(req)),
                check: None,
                tap: Tap::new(shared, Outcome::Cancelled),
                session,
            };
        };
        // The service that was made ready serves this request once the check allows it.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared_c = shared.clone();
        let check = Box::pin(async move {
            match check.await {
                Decision::Allow { buckets, .. } => {
                    if let Some(s) = &shared_c {
                        s.set_buckets(buckets);
                    }
                    Checked::Call(inner.call(req))
                }
                Decision::Deny { limit, reply } => Checked::Deny { limit, reply },
            }
        });
        ResponseFuture {
            inner: None,
            check: Some(check),
            tap: Tap::new(shared, Outcome::Cancelled),
            session,
        }
    }
}

/// How a request asks for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    /// HTTP/1.1 (RFC 6455 §4.1): an `upgrade` header naming `websocket`, among other
    /// protocols or not; answered `101`.
    Http1,
    /// HTTP/2 (RFC 8441 §4, `http2` feature): an extended `CONNECT` whose `:protocol` (hyper's
    /// `ext::Protocol`) is `websocket`; answered `200`.
    Http2,
}

/// Whether, and how, a request asks to upgrade its connection to a WebSocket.
fn asks_for_websocket(parts: &http::request::Parts) -> Option<Upgrade> {
    #[cfg(feature = "http2")]
    if parts.method == http::Method::CONNECT
        && parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
    {
        return Some(Upgrade::Http2);
    }
    parts
        .headers
        .get_all(http::header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        .then_some(Upgrade::Http1)
}

/// The head of a `200` to an HTTP/2 WebSocket request in its HTTP/1.1 form, as the core
/// reads upgrades (and as an Envoy filter sees it): `101`, `upgrade: websocket`,
/// `connection: upgrade`, the other headers (`sec-websocket-extensions`, ...) as they came.
fn http1_form(headers: &http::HeaderMap) -> (http::StatusCode, http::HeaderMap) {
    let mut h = headers.clone();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    (http::StatusCode::SWITCHING_PROTOCOLS, h)
}

/// The budget check of a request, when a limit applies to it.
fn budget_check(
    shared: &Shared,
    e: &Enforcer,
    parts: &http::request::Parts,
) -> Option<Pin<Box<dyn Future<Output = Decision> + Send>>> {
    let (provider, model) = shared.head_facts();
    let headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(http::header::HOST)?.to_str().ok());
    let facts = KeyFacts {
        headers: &headers,
        model: model.as_deref(),
        source_workload: None,
        destination_service: authority,
    };
    let buckets = e.budgets.buckets(&facts);
    if buckets.is_empty() {
        return None;
    }
    let now = e.clock.now_s();
    Some(Box::pin(decide_owned(e.clone(), buckets, provider, now)))
}

/// What the budget check led to.
enum Checked<F> {
    /// Allowed: the inner service's future.
    Call(F),
    /// Denied by limit `limit`: answer this.
    Deny { limit: usize, reply: LocalReply },
}

impl<S> LlmUsage<S> {
    /// For a request the injection applies to: skips what cannot be held, else removes
    /// `content-length` (the body may change length) and answers the cap to hold it under.
    fn injection_start(&self, shared: &Shared, parts: &mut http::request::Parts) -> Option<u64> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if !inject::applies_to(parts.method.as_str(), path)
            || shared.dialect() != Some("openai-chat")
        {
            return None;
        }
        let max = self.config.max_inject_body_bytes;
        let skip = |why| {
            shared.set_injection(Injection::Skipped(why));
            None
        };
        if parts
            .headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .any(|v| inject::is_encoded(v.as_bytes()))
        {
            return skip(Skip::EncodedRequest);
        }
        let length = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if length.is_some_and(|n| n > max) {
            return skip(Skip::TooLarge);
        }
        parts.headers.remove(http::header::CONTENT_LENGTH);
        Some(max)
    }
}

/// Whether a response to a rewritten request is a stream to hide the usage chunk from:
/// a `2xx` `text/event-stream`. Encoded streams are skipped and counted.
fn hides_usage(shared: &Shared, status: http::StatusCode, headers: &http::HeaderMap) -> bool {
    if !shared.injected() || !status.is_success() {
        return false;
    }
    let sse = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().trim_ascii_start().get(..17))
        .is_some_and(|p| p.eq_ignore_ascii_case(b"text/event-stream"));
    if !sse {
        return false;
    }
    if headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| inject::is_encoded(v.as_bytes()))
    {
        shared.set_injection(Injection::Skipped(Skip::EncodedResponse));
        return false;
    }
    true
}

pin_project! {
    /// The future of [`LlmUsage`]: wraps the response body once the inner service answers.
    ///
    /// Dropped before that, it emits a partial record with the `cancelled` outcome; an error
    /// from the inner service emits one with `service_error`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        check: Option<Pin<Box<dyn Future<Output = Checked<F>> + Send>>>,
        tap: Tap,
        // A request that asked for a WebSocket: its session, for the response's extensions.
        session: Option<Session>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("observed", &self.tap.get().is_some())
            .field("checking", &self.check.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    ResB: http_body::Body,
{
    type Output = Result<Response<ResponseBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(check) = this.check.as_mut() {
            let checked = ready!(check.as_mut().poll(cx));
            *this.check = None;
            match checked {
                Checked::Call(f) => this.inner.set(Some(f)),
                Checked::Deny { limit, reply } => {
                    if let Some(s) = this.tap.take() {
                        s.config().emit_denied(&s, limit);
                        s.discard();
                    }
                    return Poll::Ready(Ok(local_response(reply)));
                }
            }
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            // Polled after completion: nothing more to give (a contract breach by the caller).
            return Poll::Pending;
        };
        match ready!(inner.poll(cx)) {
            Ok(res) => {
                let shared = this.tap.take();
                if let (Some(s), Some(session)) = (&shared, this.session.take()) {
                    let h2 = (session.http2() && res.status() == http::StatusCode::OK)
                        .then(|| http1_form(res.headers()));
                    let as_seen = h2.as_ref().map(|(code, h)| (*code, h));
                    if s.upgrade_head(res.status(), res.headers(), as_seen) {
                        // The session's bytes pass through the upgraded IO, observed by
                        // `realtime::Observed`; the session ends with it.
                        let (mut parts, body) = res.into_parts();
                        parts.extensions.insert(session);
                        this.inner.set(None);
                        return Poll::Ready(Ok(Response::from_parts(
                            parts,
                            ResponseBody::new(body, None),
                        )));
                    }
                    // Not upgraded: an ordinary response, whose head the exchange has seen.
                } else if let Some(s) = &shared {
                    s.response_head(res.status(), res.headers());
                }
                let hide = match &shared {
                    Some(s) => hides_usage(s, res.status(), res.headers()),
                    None => false,
                };
                let (mut parts, body) = res.into_parts();
                let body = if hide {
                    // Bytes may be removed: the length is no longer known.
                    parts.headers.remove(http::header::CONTENT_LENGTH);
                    ResponseBody::hiding(body, shared)
                } else {
                    ResponseBody::new(body, shared)
                };
                // Nobody may ever poll an empty body.
                body.finish_if_ended();
                this.inner.set(None);
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
            Err(e) => {
                this.inner.set(None);
                this.tap.finish(Outcome::ServiceError);
                Poll::Ready(Err(e))
            }
        }
    }
}

/// The `429` of a spent budget, as an HTTP response.
fn local_response<B>(reply: LocalReply) -> Response<ResponseBody<B>> {
    let mut res = Response::new(ResponseBody::local(Bytes::from(reply.body)));
    *res.status_mut() =
        http::StatusCode::from_u16(reply.status).unwrap_or(http::StatusCode::TOO_MANY_REQUESTS);
    for (name, value) in reply.headers {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, v);
        }
    }
    res
}
