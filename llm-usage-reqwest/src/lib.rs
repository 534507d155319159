//! Client-side LLM usage for [reqwest]: a [`reqwest_middleware::Middleware`] that shows
//! the request body and the streamed response body to an `llm-usage-core` exchange as
//! they pass, and reports one [`UsageEvent`] per call (to a callback and through the
//! [`metrics`] facade) when the response body ends, fails or is dropped.
//!
//! Nothing is buffered: the response body the caller reads (`bytes()`, `text()`,
//! `bytes_stream()`) is the upstream's, frame by frame, byte for byte. A body dropped
//! before its end gives a partial record (`complete: false`, [`Outcome::Dropped`]) with
//! what was known. The request body is read when reqwest holds it as bytes (`json()`,
//! `body(String)`…); a streamed request body is not read, and the model then comes from
//! the response.
//!
//! This crate is an adapter: the lifecycle, the model choice, the metric names, labels
//! and caps are `llm-usage-report`'s, shared with the Envoy filter and the tower layer.
//!
//! ```no_run
//! use llm_usage_reqwest::{LlmUsageMiddleware, UsageEvent};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(LlmUsageMiddleware::new().on_record(|ev: &UsageEvent| {
//!         println!("{:?} in={:?} out={:?}", ev.record.model, ev.record.input_tokens, ev.record.output_tokens);
//!     }))
//!     .build();
//! let res = client
//!     .post("http://127.0.0.1:8080/v1/chat/completions")
//!     .body(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}"#)
//!     .send()
//!     .await?;
//! let text = res.text().await?; // the record is reported here, at the body's end
//! # let _ = text;
//! # Ok(())
//! # }
//! ```
//!
//! [reqwest]: https://docs.rs/reqwest
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod event;
mod report;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::Extensions;
use llm_usage_core::{Exchange, Options};
use llm_usage_report::labels::Limiter;
use llm_usage_report::names::Profile;
pub use llm_usage_report::names::TimeUnit;
use llm_usage_report::Tracker;
use reqwest::{Request, Response, ResponseBuilderExt};
use reqwest_middleware::{Middleware, Next};

pub use crate::event::{Outcome, UsageEvent};
pub use llm_usage_core::{Provider, UsageRecord};
// Public dependencies, re-exported so that users name the versions this crate uses: the
// core (`Options`, the record), the `metrics` facade its recorder must match, and
// `reqwest-middleware`, whose client builder takes the middleware.
pub use llm_usage_report::names::Profile as MetricsProfile;
/// The Prometheus exporter's builder and error, and the bucket helper behind
/// [`LlmUsageMiddleware::install_buckets`] (`prometheus` feature).
#[cfg(feature = "prometheus")]
pub use llm_usage_report::prometheus;
#[doc(no_inline)]
pub use {llm_usage_core, metrics, reqwest_middleware};

use crate::body::ObservedBody;
use crate::report::{Call, Reporter};

/// The middleware. Cheap to clone; one instance serves any number of concurrent calls.
#[derive(Clone)]
pub struct LlmUsageMiddleware {
    reporter: Arc<Reporter>,
}

impl Default for LlmUsageMiddleware {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LlmUsageMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmUsageMiddleware")
            .field("profile", &self.reporter.profile)
            .finish_non_exhaustive()
    }
}

impl LlmUsageMiddleware {
    /// Reports through the [`metrics`] facade with the OpenTelemetry GenAI names
    /// (`gen_ai_client_token_usage`, `llm_usage_tokens_total`, …, durations in seconds
    /// under `…_seconds` names such as `gen_ai_server_request_duration_seconds`;
    /// labels `gen_ai_provider_name`, `gen_ai_request_model`, `gen_ai_response_model`,
    /// `http_status_class`), at most 100 distinct model values; no callback.
    pub fn new() -> Self {
        LlmUsageMiddleware {
            reporter: Arc::new(Reporter {
                profile: Some(Profile::Otel),
                time_unit: None,
                source: (String::new(), String::new()),
                models: Mutex::new(Limiter::new(Vec::new(), Some(100))),
                on_record: None,
                options: llm_usage_report::default_options(),
                prices: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Reporter)) -> Self {
        match Arc::get_mut(&mut self.reporter) {
            Some(r) => f(r),
            None => {
                let r = &*self.reporter;
                let mut copy = Reporter {
                    profile: r.profile,
                    time_unit: r.time_unit,
                    source: r.source.clone(),
                    models: Mutex::new(r.models.lock().unwrap_or_else(|e| e.into_inner()).clone()),
                    on_record: r.on_record.clone(),
                    options: r.options.clone(),
                    prices: r.prices.clone(),
                };
                f(&mut copy);
                self.reporter = Arc::new(copy);
            }
        }
        self
    }

    /// Calls `f` once per call with its [`UsageEvent`] (inline, on the task that ends the
    /// body: keep it cheap).
    pub fn on_record<F>(self, f: F) -> Self
    where
        F: Fn(&UsageEvent) + Send + Sync + 'static,
    {
        self.edit(|r| r.on_record = Some(Arc::new(f)))
    }

    /// The ASM names instead (`asm_llm_proxy_prompt_tokens`, …, durations in ms), labelled
    /// with the given source workload and namespace, the URL's host as
    /// `llmproxy_destination_service`, and `llmproxy_model`.
    pub fn asm_metrics(self, source_workload: &str, source_namespace: &str) -> Self {
        let source = (source_workload.to_owned(), source_namespace.to_owned());
        self.edit(|r| {
            r.profile = Some(Profile::Asm);
            r.source = source;
        })
    }

    /// The unit durations are recorded in (default: the profile's, seconds for the
    /// OpenTelemetry names, milliseconds for ASM's). One name, one unit: the names follow
    /// the unit (`llm_usage_report::names::Metric::name_in`), so in milliseconds the
    /// `otel` durations are `gen_ai_server_request_duration_milliseconds`, …, the names
    /// of the `llm-usage-wasm` filter.
    ///
    /// ```
    /// use llm_usage_reqwest::{LlmUsageMiddleware, TimeUnit};
    ///
    /// let m = LlmUsageMiddleware::new().time_unit(TimeUnit::Milliseconds);
    /// assert!(m
    ///     .histogram_buckets()
    ///     .iter()
    ///     .any(|(n, b)| *n == "gen_ai_server_request_duration_milliseconds" && b[0] == 10.0));
    /// ```
    pub fn time_unit(self, unit: TimeUnit) -> Self {
        self.edit(|r| r.time_unit = Some(unit))
    }

    /// The histograms this middleware records, each with its OpenTelemetry bucket
    /// boundaries in its unit, for an exporter that takes buckets per name (none without
    /// metrics).
    pub fn histogram_buckets(&self) -> Vec<(&'static str, Vec<f64>)> {
        let r = &self.reporter;
        match r.profile {
            Some(p) => {
                llm_usage_report::names::histogram_buckets(p, r.time_unit.unwrap_or(p.time_unit()))
            }
            None => Vec::new(),
        }
    }

    /// Sets the buckets of [`histogram_buckets`](Self::histogram_buckets) on a Prometheus
    /// exporter's builder (`prometheus` feature); without them that exporter renders
    /// histograms as summaries.
    ///
    /// ```
    /// use llm_usage_reqwest::prometheus::PrometheusBuilder;
    /// use llm_usage_reqwest::LlmUsageMiddleware;
    ///
    /// let middleware = LlmUsageMiddleware::new();
    /// let recorder = middleware.install_buckets(PrometheusBuilder::new())?.build_recorder();
    /// # let _ = recorder;
    /// # Ok::<(), llm_usage_reqwest::prometheus::BuildError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The builder's error for a histogram without boundaries (none of the tables has
    /// one).
    #[cfg(feature = "prometheus")]
    pub fn install_buckets(
        &self,
        builder: prometheus::PrometheusBuilder,
    ) -> Result<prometheus::PrometheusBuilder, prometheus::BuildError> {
        llm_usage_report::prometheus::install_buckets(builder, self.histogram_buckets())
    }

    /// No metrics (the callback only).
    pub fn without_metrics(self) -> Self {
        self.edit(|r| r.profile = None)
    }

    /// Model label values: `allow` always kept, and at most `max_others` others (first
    /// come); the rest are `other`.
    pub fn model_labels(self, allow: Vec<String>, max_others: usize) -> Self {
        self.edit(|r| r.models = Mutex::new(Limiter::new(allow, Some(max_others))))
    }

    /// Prices every call with this table (`llm-usage-cost`): the cost goes into
    /// [`UsageEvent::pricing`] and [`UsageEvent::cost`], and into the cost counter
    /// (`llm_usage_cost_micros_total` / `asm_llm_proxy_cost_micros`, micro-units of the
    /// table's currency, each call rounded down); a call whose model has no price has no
    /// cost (never 0) and counts in `llm_usage_price_lookup_misses_total` /
    /// `asm_llm_proxy_price_lookup_misses`.
    ///
    /// ```
    /// let table = llm_usage_cost::PriceTable::from_json(
    ///     r#"{"currency": "USD", "per_tokens": 1000000,
    ///         "models": {"gpt-4o*": {"input": 2.5, "cached_input": 1.25, "output": 10.0}}}"#,
    /// )?;
    /// let middleware = llm_usage_reqwest::LlmUsageMiddleware::new().prices(table);
    /// # let _ = middleware;
    /// # Ok::<(), llm_usage_cost::TableError>(())
    /// ```
    pub fn prices(self, table: llm_usage_cost::PriceTable) -> Self {
        self.edit(|r| r.prices = Some(Arc::new(table)))
    }

    /// Parser options (forced provider, inspection cap).
    pub fn options(self, options: Options) -> Self {
        self.edit(|r| r.options = options)
    }
}

impl LlmUsageMiddleware {
    /// An exchange given the request head and, when reqwest holds it as bytes, the body.
    fn start_exchange(&self, req: &Request) -> Tracker {
        let url = req.url();
        let mut ex = Exchange::with_options(self.reporter.options.clone());
        let path = match url.query() {
            Some(q) => format!("{}?{}", url.path(), q),
            None => url.path().to_owned(),
        };
        // reqwest adds `host` after the middleware: give the core the URL's authority.
        let host = url
            .host_str()
            .filter(|_| !req.headers().contains_key(http::header::HOST))
            .map(|h| match url.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            });
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()));
        ex.on_request_head(
            req.method().as_str(),
            &path,
            headers.chain(host.as_deref().map(|h| (&b"host"[..], h.as_bytes()))),
        );
        let mut tracker = Tracker::new(ex, Some(0));
        if let Some(bytes) = req.body().and_then(reqwest::Body::as_bytes) {
            tracker.request_body(bytes);
        }
        tracker.request_end();
        tracker
    }
}

#[async_trait::async_trait]
impl Middleware for LlmUsageMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let start = Instant::now();
        let url = req.url().clone();
        // The parser never unwinds into the caller: a panic leaves the call unobserved
        // (an empty, partial record), the request goes on.
        let tracker = catch_unwind(AssertUnwindSafe(|| self.start_exchange(&req)))
            .unwrap_or_else(|_| Tracker::without_exchange(Some(0)));
        let call = Arc::new(Call::new(
            self.reporter.clone(),
            tracker,
            start,
            req.method().clone(),
            url.clone(),
        ));
        let res = match next.run(req, extensions).await {
            Ok(res) => res,
            Err(e) => {
                call.finish(Outcome::RequestError);
                return Err(e);
            }
        };
        call.response_head(res.status(), res.headers());
        let url = res.url().clone();
        let (parts, body) = http::Response::<reqwest::Body>::from(res).into_parts();
        let mut builder = http::Response::builder()
            .status(parts.status)
            .version(parts.version)
            .url(url);
        if let Some(h) = builder.headers_mut() {
            *h = parts.headers;
        }
        if let Some(e) = builder.extensions_mut() {
            e.extend(parts.extensions);
        }
        let body = reqwest::Body::wrap(ObservedBody::new(body, call));
        let res = builder
            .body(body)
            .map_err(|e| reqwest_middleware::Error::Middleware(e.into()))?;
        Ok(Response::from(res))
    }
}
