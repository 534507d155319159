//! The proxy-wasm root and HTTP contexts: plumbing between Envoy and the core `Exchange`.
//!
//! No parsing happens here. The HTTP context hands headers and body chunks to one
//! [`Exchange`] as they pass and answers `Continue`, publishes filter state as soon as a value
//! is known, and counts metrics once, in `on_log` (which Envoy runs before `on_done`, and also
//! for streams that were reset before their end).
//!
//! With `inject_include_usage` on, a streamed OpenAI-compatible request is the exception: its
//! body is held (the request body callbacks answer Pause, Envoy buffers) until its end or the
//! cap, rewritten by `llm_usage_core::inject::rewrite_request`, and the response's
//! usage-only chunk is then removed by `llm_usage_core::inject::UsageChunkFilter` (see
//! [`Injection`]). The exchange always sees the client's request and the upstream's response.

use std::cell::RefCell;
use std::rc::Rc;

use llm_usage_core::inject::{self, rewrite_request, Filtered, Rewrite, Skip, UsageChunkFilter};
use llm_usage_core::{Exchange, Options, UsageRecord};
use llm_usage_cost::{Bucket, Decision, KeyFacts, Pricing};
use llm_usage_report::labels::{sanitize_tag_into, Limiter};
use llm_usage_report::select;
use llm_usage_report::series::UNKNOWN_MODALITY;
use llm_usage_report::tokens::{TokenField, TOKEN_FIELDS};
use llm_usage_report::{Timings, Tracker};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::abi::{self, buffer, level, map, metric, parse_pairs, Status};
use crate::config::{strip_port, Config, MetricKind, Source};
use crate::labels::{stat_name, UNKNOWN};
use crate::{budget, sdk};

/// State shared by the root context and every HTTP context of one VM (one worker thread).
struct Shared {
    config: Config,
    /// Metric ids by full stat name, sorted by name: Envoy allocates a new id on every
    /// `define_metric`. (A sorted Vec searched by halves: the same lookups as a
    /// `BTreeMap`, without its node code in the module.)
    metric_ids: Vec<(String, u32)>,
    /// Metric ids per label set (an exchange's dimension values, sanitised and limited),
    /// sorted by the values: a repeat exchange with the same values finds each metric's id
    /// by index, without building or searching its name. Bounded by the limiters below
    /// (the values are theirs) and by [`MAX_LABEL_SETS`].
    label_sets: Vec<LabelSet>,
    /// The label values of the exchange being reported, kept between exchanges for their
    /// buffers.
    labels: Vec<String>,
    /// The token field of each metric kind (by kind), looked up once.
    token_fields: [Option<&'static TokenField>; MetricKind::ALL.len()],
    model_limiter: Limiter,
    /// One limiter per dimension whose values a client chooses (by dimension index).
    /// (A few dimensions at most: a Vec, searched linearly, costs less code than a map.)
    value_limiters: Vec<(usize, Limiter)>,
    node: NodeInfo,
    /// `<prefix>.` of the filter-state paths, then the last key written: each write
    /// replaces only the key (no path built per write).
    state_path: Vec<u8>,
    /// Failure kinds already logged: each is logged once per VM. (A handful at most: a Vec,
    /// searched linearly, costs less code than a set.)
    logged: Vec<&'static str>,
}

/// The most label sets whose metric ids [`Shared`] keeps. The limiters already bound the
/// label values; this bounds the cache itself. An exchange with a label set past it is
/// reported as without the cache: each metric's name built and searched.
const MAX_LABEL_SETS: usize = 1024;

/// Metric id slots of one label set: one per metric kind (by kind), then one per token
/// field for the token-type histogram (`token_usage`, by field).
const SLOTS: usize = MetricKind::ALL.len() + TOKEN_FIELDS.len();

/// The metric ids of one label set, each filled when its metric is first emitted.
struct LabelSet {
    values: Box<[String]>,
    ids: [Option<u32>; SLOTS],
}

/// The tag a metric carries ahead of its dimensions, if any.
#[derive(Clone, Copy)]
enum Lead {
    /// None: the dimensions only.
    None,
    /// The token modality tag (`otel` per-type token counters) with this value.
    Modality(&'static str),
    /// The token type tag (`token_usage`) with this value, for the token field of this
    /// index in `TOKEN_FIELDS`.
    TokenType(&'static str, usize),
}

#[derive(Default)]
struct NodeInfo {
    workload: Option<String>,
    namespace: Option<String>,
    /// Whether a stream context has tried to read them (the root may be too early).
    retried: bool,
}

impl Shared {
    fn new(config: Config) -> Shared {
        // An allow-list admits only its models; without one, the first `max_models`.
        let others = if config.model_allow.is_empty() {
            config.max_models
        } else {
            0
        };
        let model_limiter = Limiter::new(config.model_allow.clone(), Some(others))
            .other_value(config.other_model.clone());
        let mut value_limiters = Vec::new();
        for (i, d) in config.dimensions.iter().enumerate() {
            if d.source.client_chosen() {
                value_limiters.push((i, Limiter::new(Vec::new(), Some(config.max_label_values))));
            }
        }
        let token_fields = MetricKind::ALL.map(MetricKind::token_field);
        Shared {
            config,
            metric_ids: Vec::new(),
            label_sets: Vec::new(),
            labels: Vec::new(),
            token_fields,
            model_limiter,
            value_limiters,
            node: NodeInfo::default(),
            state_path: Vec::new(),
            logged: Vec::new(),
        }
    }

    /// Logs `message` at warning level the first time `what` fails in this VM.
    fn warn_once(&mut self, what: &'static str, status: Status, detail: &str) {
        self.note_once(
            what,
            &format!("llm-usage: {what} failed ({status:?}) {detail}; traffic is not affected, further failures of this kind are not logged"),
        );
    }

    /// Logs `message` at warning level the first time `what` happens in this VM.
    fn note_once(&mut self, what: &'static str, message: &str) {
        if !self.logged.contains(&what) {
            self.logged.push(what);
            abi::log(level::WARN, message);
        }
    }

    fn read_node(&mut self) {
        if self.node.workload.is_none() {
            self.node.workload = node_metadata("WORKLOAD_NAME");
        }
        if self.node.namespace.is_none() {
            self.node.namespace = node_metadata("NAMESPACE");
        }
    }

    fn metric_id(&mut self, histogram: bool, name: String) -> Option<u32> {
        let at = match self
            .metric_ids
            .binary_search_by(|(n, _)| n.as_str().cmp(&name))
        {
            Ok(i) => return Some(self.metric_ids[i].1),
            Err(at) => at,
        };
        let kind = if histogram {
            metric::HISTOGRAM
        } else {
            metric::COUNTER
        };
        match abi::define_metric(kind, &name) {
            Ok(id) => {
                self.metric_ids.insert(at, (name, id));
                Some(id)
            }
            Err(e) => {
                self.warn_once("define_metric", e, &name);
                None
            }
        }
    }

    fn add(&mut self, name: String, value: u64) {
        let id = self.metric_id(false, name);
        self.add_to(id, value);
    }

    /// Adds `value` (if not 0) to the counter `id`.
    fn add_to(&mut self, id: Option<u32>, value: u64) {
        if let Some(id) = id {
            if value > 0 {
                if let Err(e) = abi::increment_metric(id, value.min(i64::MAX as u64) as i64) {
                    self.warn_once("increment_metric", e, "");
                }
            }
        }
    }

    /// Records `value` in the histogram `id`.
    fn record_to(&mut self, id: Option<u32>, value: u64) {
        if let Some(id) = id {
            if let Err(e) = abi::record_metric(id, value) {
                self.warn_once("record_metric", e, "");
            }
        }
    }

    /// The index in `label_sets` of the label set `values`, added on first sight (`None`
    /// once [`MAX_LABEL_SETS`] are kept).
    fn label_set(&mut self, values: &[String]) -> Option<usize> {
        match self
            .label_sets
            .binary_search_by(|l| l.values[..].cmp(values))
        {
            Ok(i) => Some(i),
            Err(i) if self.label_sets.len() < MAX_LABEL_SETS => {
                let set = LabelSet {
                    values: values.into(),
                    ids: [None; SLOTS],
                };
                self.label_sets.insert(i, set);
                Some(i)
            }
            Err(_) => None,
        }
    }

    /// The id of the metric of `kind` with `lead` and the dimension `values` (the label
    /// set at `set` in `label_sets`, if it is kept there): the kept id, else found by its
    /// full stat name (defined on first use) and kept.
    fn series_id(
        &mut self,
        set: Option<usize>,
        values: &[String],
        kind: MetricKind,
        lead: Lead,
    ) -> Option<u32> {
        let slot = match lead {
            Lead::TokenType(_, field) => MetricKind::ALL.len() + field,
            _ => kind as usize,
        };
        if let Some(id) = set.and_then(|i| self.label_sets[i].ids[slot]) {
            return Some(id);
        }
        let config = &self.config;
        let name = config.metrics.get(&kind)?;
        let mut tags: Vec<(&str, &str)> = Vec::with_capacity(values.len() + 1);
        match lead {
            Lead::None => {}
            Lead::Modality(m) => tags.push((config.token_modality_tag.as_deref()?, m)),
            Lead::TokenType(t, _) => tags.push((config.token_type_tag.as_str(), t)),
        }
        tags.extend(
            config
                .dimensions
                .iter()
                .zip(values)
                .map(|(d, v)| (d.tag.as_str(), v.as_str())),
        );
        let full = stat_name(config.tag_format, name, &tags);
        let histogram = match lead {
            Lead::None => kind.is_histogram(),
            Lead::Modality(_) => false,
            Lead::TokenType(..) => true,
        };
        let id = self.metric_id(histogram, full)?;
        if let Some(i) = set {
            self.label_sets[i].ids[slot] = Some(id);
        }
        Some(id)
    }
}

/// Reads `xds.node.metadata.<key>` (Envoy ≥ 1.33) and falls back to `node.metadata.<key>`.
fn node_metadata(key: &str) -> Option<String> {
    for prefix in ["xds\0node\0metadata\0", "node\0metadata\0"] {
        let mut path = Vec::with_capacity(prefix.len() + key.len());
        path.extend_from_slice(prefix.as_bytes());
        path.extend_from_slice(key.as_bytes());
        if let Ok(v) = abi::get_property(&path) {
            if !v.is_empty() {
                return Some(String::from_utf8_lossy(&v).into_owned());
            }
        }
    }
    None
}

/// The root context: parses the configuration once and creates HTTP contexts.
pub struct Root {
    shared: Option<Rc<RefCell<Shared>>>,
}

impl Root {
    /// A root context for a new plugin instance.
    pub fn new() -> Root {
        Root { shared: None }
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::new()
    }
}

impl Context for Root {
    sdk::context_methods!();
}

impl RootContext for Root {
    sdk::root_methods!();

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = if plugin_configuration_size == 0 {
            Vec::new()
        } else {
            match abi::get_buffer(buffer::PLUGIN_CONFIGURATION, 0, plugin_configuration_size) {
                Ok(b) => b,
                Err(e) => {
                    abi::log(
                        level::ERROR,
                        &format!("llm-usage: cannot read the plugin configuration ({e:?})"),
                    );
                    return false;
                }
            }
        };
        let config = match Config::parse(&bytes) {
            Ok(c) => c,
            Err(msg) => {
                abi::log(level::ERROR, &format!("llm-usage: {msg}"));
                return false;
            }
        };
        abi::log(
            level::INFO,
            &format!(
                "llm-usage: configured (profile {:?}, tags {:?}, {} metrics, {} dimensions, filter state prefix {:?})",
                config.profile,
                config.tag_format,
                config.metrics.len(),
                config.dimensions.len(),
                config.property_prefix.as_deref().unwrap_or("(off)")
            ),
        );
        let mut shared = Shared::new(config);
        shared.read_node();
        self.shared = Some(Rc::new(RefCell::new(shared)));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // A stream without a configured root (on_configure failed) still gets a context,
        // one that does nothing: the dispatcher panics on `None`.
        Some(Box::new(Stream::new(self.shared.clone())))
    }
}

/// Where a stream is in the `stream_options.include_usage` injection.
///
/// Envoy exposes a request body to a filter that may change it as follows (its wasm
/// `Context::decodeData` and `getBuffer`): a callback that answers Pause
/// (StopIterationAndBuffer) keeps the body in Envoy's buffer, the next callback sees the whole
/// buffer, and `proxy_set_buffer_bytes(0, size, new)` replaces it before a Continue sends it
/// on. The request headers are the filter's only during their own callback, so
/// `content-length` is removed there, before the new length is known; Envoy's HTTP/1.1 codec
/// then sends the body chunked (and HTTP/2 needs no length). The response is never held:
/// each chunk is replaced by what the core's filter forwards for it.
enum Injection {
    /// Not injecting (off for this stream, skipped, or done).
    Off,
    /// Holding the request body until its end: the bytes read so far.
    Holding(Vec<u8>),
    /// The request was rewritten; the response is not here yet.
    Injected,
    /// Removing the usage-only chunk from the response stream.
    Filtering(Box<UsageChunkFilter>),
}

/// One HTTP stream.
struct Stream {
    shared: Option<Rc<RefCell<Shared>>>,
    /// The exchange and its times (nanoseconds of the host clock).
    tracker: Option<Tracker>,
    authority: String,
    configured_model: Option<String>,
    /// Request header values for header dimensions, by dimension index.
    /// (A few header dimensions at most: a Vec, searched linearly.)
    header_values: Vec<(usize, String)>,
    request_bytes: u64,
    response_bytes: u64,
    request_published: bool,
    record: Option<UsageRecord>,
    inject: Injection,
    /// Why an injection was skipped, counted in `on_log`.
    skip: Option<Skip>,
    /// The exchange's price, once the record is final (`None`: no `prices` configured).
    pricing: Option<Pricing>,
    /// The token-budget counters this exchange charges when it ends.
    buckets: Vec<Bucket>,
}

impl Stream {
    fn new(shared: Option<Rc<RefCell<Shared>>>) -> Stream {
        Stream {
            shared,
            tracker: None,
            authority: String::new(),
            configured_model: None,
            header_values: Vec::new(),
            request_bytes: 0,
            response_bytes: 0,
            request_published: false,
            record: None,
            inject: Injection::Off,
            skip: None,
            pricing: None,
            buckets: Vec::new(),
        }
    }

    fn now(&self) -> Option<u64> {
        clock(&self.shared)
    }

    fn request_ended(&self) -> bool {
        self.tracker.as_ref().is_some_and(Tracker::request_ended)
    }

    /// Sets filter state `<prefix>.<key>` (one path element, so Envoy's key is
    /// `wasm.<prefix>.<key>`).
    fn put(&self, key: &str, value: &[u8]) {
        let Some(shared) = &self.shared else { return };
        let mut s = shared.borrow_mut();
        let s = &mut *s;
        let Some(prefix) = s.config.property_prefix.as_deref() else {
            return;
        };
        let base = prefix.len() + 1;
        if s.state_path.len() < base {
            s.state_path.clear();
            s.state_path.extend_from_slice(prefix.as_bytes());
            s.state_path.push(b'.');
        }
        s.state_path.truncate(base);
        s.state_path.extend_from_slice(key.as_bytes());
        if let Err(e) = abi::set_property(&s.state_path, value) {
            s.warn_once("set_property", e, key);
        }
    }

    fn put_num(&self, key: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.put(key, Decimal::new().digits(v).as_bytes());
        }
    }

    /// The serialized header map of `map_type` (empty on failure, logged once).
    fn header_buf(&self, map_type: u32) -> Vec<u8> {
        match abi::get_header_map_pairs(map_type) {
            Ok(b) => b,
            Err(e) => {
                if let Some(s) = &self.shared {
                    s.borrow_mut().warn_once("get_header_map_pairs", e, "");
                }
                Vec::new()
            }
        }
    }

    fn read_body(&self, buffer_type: u32, size: usize, seen: u64) -> Option<Vec<u8>> {
        let limit = self
            .shared
            .as_ref()?
            .borrow()
            .config
            .max_body_bytes
            .unwrap_or(u64::MAX);
        let room = limit.saturating_sub(seen);
        let want = (size as u64).min(room) as usize;
        if want == 0 {
            return None;
        }
        match abi::get_buffer(buffer_type, 0, want) {
            Ok(b) => Some(b),
            Err(e) => {
                if let Some(s) = &self.shared {
                    s.borrow_mut().warn_once("get_buffer_bytes", e, "");
                }
                None
            }
        }
    }

    /// Whether the exchange is LLM traffic worth reporting (`select::is_llm`).
    fn is_llm(&self, rec: &UsageRecord) -> bool {
        select::is_llm(rec, self.configured_model.as_deref())
    }

    fn request_model<'a>(&'a self, rec: &'a UsageRecord) -> Option<&'a str> {
        select::request_model(rec, self.configured_model.as_deref())
    }

    /// Publishes what is known once the request is in: model and provider.
    fn publish_request(&mut self) {
        if self.request_published {
            return;
        }
        let Some(t) = &self.tracker else { return };
        let rec = t.record();
        if !self.is_llm(&rec) {
            return;
        }
        self.request_published = true;
        if let Some(m) = self.request_model(&rec) {
            self.put("request_model", m.as_bytes());
        }
        if let Some(p) = rec.provider {
            self.put("provider", p.as_str().as_bytes());
        }
        if let Some(s) = rec.stream {
            self.put("stream", if s { b"true" } else { b"false" });
        }
    }

    /// Takes the final record (after the response ended, or in `on_log` for a cut stream)
    /// and publishes the token figures.
    fn finish(&mut self, response_ended: bool) {
        if self.record.is_some() {
            return;
        }
        let shared = &self.shared;
        let Some(rec) = self
            .tracker
            .as_mut()
            .and_then(|t| t.finish(response_ended, || clock(shared)))
        else {
            return;
        };
        if self.is_llm(&rec) {
            self.publish_request();
            // The request model may only be known now (from the response).
            if self.request_model(&rec).is_none() {
                if let Some(m) = &rec.model {
                    self.put("request_model", m.as_bytes());
                }
            }
            if let Some((m, source)) =
                select::model_with_source(&rec, self.configured_model.as_deref())
            {
                self.put("model", m.as_bytes());
                self.put("model_source", source.as_str().as_bytes());
            }
            if let Some(m) = &rec.response_model {
                self.put("response_model", m.as_bytes());
            }
            if let Some(p) = rec.provider {
                self.put("provider", p.as_str().as_bytes());
            }
            for f in &TOKEN_FIELDS {
                self.put_num(f.state_key, f.value(&rec));
            }
            self.put_num("web_search_requests", rec.web_search_requests);
            self.put_num("web_fetch_requests", rec.web_fetch_requests);
            if let Some(t) = &rec.service_tier {
                self.put("service_tier", t.as_bytes());
            }
            if let Some(o) = rec.operation {
                self.put("operation", o.as_str().as_bytes());
            }
            self.put("complete", if rec.complete { b"true" } else { b"false" });
            self.put("estimated", if rec.estimated { b"true" } else { b"false" });
            self.price(&rec);
        }
        self.record = Some(rec);
    }

    /// At the request headers: checks the token budgets (`token_limits`) that apply to
    /// this request against the counters in shared data. A spent budget answers the
    /// request with the `429` of `llm-usage-cost` and returns `true` (nothing else of the
    /// exchange is observed or reported); otherwise the buckets are kept for the charge at
    /// the end. Only requests recognised as LLM API calls (a provider detected or
    /// configured, or a configured model) are limited. The `model` key is the model known
    /// at the headers: the URL path's (Gemini, Vertex, Bedrock) or the configured one;
    /// the body's is not read before the check.
    fn check_budgets(&mut self, pairs: &[(&[u8], &[u8])]) -> bool {
        let Some(shared) = self.shared.clone() else {
            return false;
        };
        if shared.borrow().config.budgets.limits().is_empty() {
            return false;
        }
        let Some(now) = self.now() else {
            return false;
        };
        let Some(rec) = self.tracker.as_ref().map(Tracker::record) else {
            return false;
        };
        if rec.provider.is_none() && !self.is_llm(&rec) {
            return false;
        }
        let headers: Vec<(&str, &[u8])> = pairs
            .iter()
            .filter_map(|(k, v)| Some((std::str::from_utf8(k).ok()?, *v)))
            .collect();
        let s = shared.borrow();
        let host = strip_port(&self.authority);
        let facts = KeyFacts {
            headers: &headers,
            model: select::model(&rec, self.configured_model.as_deref()),
            source_workload: s.node.workload.as_deref(),
            destination_service: (!host.is_empty()).then_some(host),
        };
        let budgets = &s.config.budgets;
        let decision = budgets.check(&budget::store(), &facts, rec.provider, now / 1_000_000_000);
        let limit_name = match &decision {
            Decision::Deny { limit, .. } => budgets.limits()[*limit].name.clone(),
            Decision::Allow { .. } => String::new(),
        };
        drop(s);
        match decision {
            Decision::Allow {
                buckets,
                store_errors,
            } => {
                self.buckets = buckets;
                self.store_failed(store_errors);
                false
            }
            Decision::Deny { reply, .. } => {
                if let Err(e) = budget::send(&reply) {
                    // No reply could be sent: the request goes on (fail open).
                    self.warn_once("send_local_response", e, "token budget reply");
                    return false;
                }
                self.put("budget_exceeded", limit_name.as_bytes());
                self.emit_counter(&rec, MetricKind::BudgetRejected, Some(&limit_name));
                self.tracker = None;
                true
            }
        }
    }

    /// When the exchange ends: charges its usage (estimates and cut streams included) to
    /// the buckets checked at its headers.
    fn charge_budgets(&mut self, rec: &UsageRecord) {
        if self.buckets.is_empty() {
            return;
        }
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(now) = self.now() else {
            return;
        };
        let cost = self.pricing.as_ref().and_then(Pricing::amount);
        let buckets = std::mem::take(&mut self.buckets);
        let errors = shared.borrow().config.budgets.charge(
            &budget::store(),
            &buckets,
            rec,
            cost,
            now / 1_000_000_000,
        );
        self.store_failed(errors);
    }

    /// Counts budget store failures and logs the first of this VM (fail open).
    fn store_failed(&self, errors: u32) {
        if errors == 0 {
            return;
        }
        let Some(shared) = &self.shared else { return };
        let mut s = shared.borrow_mut();
        s.note_once(
            "budget store",
            "llm-usage: token budget store (shared data) failed: fail open, charges lost (logged once)",
        );
        if let Some(name) = s
            .config
            .metrics
            .get(&MetricKind::BudgetStoreErrors)
            .cloned()
        {
            s.add(name, u64::from(errors));
        }
    }

    /// Prices the final record with the configured table (`llm_usage_cost`) and publishes
    /// `request_cost` and `cost_currency` when it has a cost (unknown: neither is set).
    fn price(&mut self, rec: &UsageRecord) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let s = shared.borrow();
        let Some(table) = &s.config.prices else {
            return;
        };
        let pricing = table.price(rec);
        let cost = pricing
            .amount()
            .map(|a| (a.to_string(), table.currency().to_owned()));
        drop(s);
        self.pricing = Some(pricing);
        if let Some((cost, currency)) = cost {
            self.put("request_cost", cost.as_bytes());
            self.put("cost_currency", currency.as_bytes());
        }
    }

    fn warn_once(&self, what: &'static str, status: Status, detail: &str) {
        if let Some(s) = &self.shared {
            s.borrow_mut().warn_once(what, status, detail);
        }
    }

    /// The inspection limit (`max_body_bytes`) left for a body of which `seen` bytes were
    /// inspected: how much of `chunk` the exchange may see.
    fn inspectable<'c>(&self, chunk: &'c [u8], seen: u64) -> &'c [u8] {
        let limit = self
            .shared
            .as_ref()
            .and_then(|s| s.borrow().config.max_body_bytes)
            .unwrap_or(u64::MAX);
        let room = limit.saturating_sub(seen);
        &chunk[..(chunk.len() as u64).min(room) as usize]
    }

    fn observe_request(&mut self, chunk: &[u8]) {
        let part = self.inspectable(chunk, self.request_bytes);
        self.request_bytes += part.len() as u64;
        if let Some(t) = self.tracker.as_mut() {
            t.request_body(part);
        }
    }

    fn observe_response(&mut self, chunk: &[u8]) {
        let part = self.inspectable(chunk, self.response_bytes);
        if part.is_empty() {
            return;
        }
        self.response_bytes += part.len() as u64;
        let shared = &self.shared;
        if let Some(t) = self.tracker.as_mut() {
            t.response_body(part, || clock(shared));
        }
    }

    fn end_request(&mut self) {
        if let Some(t) = self.tracker.as_mut() {
            t.request_end();
        }
        self.publish_request();
    }

    fn skipped(&mut self, why: Skip) {
        self.skip = Some(why);
        self.inject = Injection::Off;
        self.put("include_usage_injection", why.as_str().as_bytes());
    }

    /// At the request headers of a request injection may apply to: skips what cannot be
    /// held, else removes `content-length` (the body may change length, and the headers are
    /// the filter's to change only now) and starts holding the body.
    fn start_injection(&mut self, encoded: bool, length: Option<Option<u64>>) {
        let Some(max) = self
            .shared
            .as_ref()
            .map(|s| s.borrow().config.max_inject_body_bytes)
        else {
            return;
        };
        if encoded {
            return self.skipped(Skip::EncodedRequest);
        }
        if let Some(Some(n)) = length {
            if n > max {
                return self.skipped(Skip::TooLarge);
            }
        }
        if length.is_some() {
            if let Err(e) = abi::remove_header(map::HTTP_REQUEST_HEADERS, "content-length") {
                // The length cannot be fixed: leave the request alone.
                return self.warn_once("remove_header_map_value", e, "content-length");
            }
        }
        self.inject = Injection::Holding(Vec::new());
    }

    /// A request body callback while the body is held: reads the new bytes, answers Pause
    /// until the end (or the cap), then rewrites the whole body.
    fn hold_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let start = match &self.inject {
            Injection::Holding(held) => held.len(),
            _ => return Action::Continue,
        };
        if body_size > start {
            match abi::get_buffer(buffer::HTTP_REQUEST_BODY, start, body_size - start) {
                Ok(chunk) => {
                    self.observe_request(&chunk);
                    if let Injection::Holding(held) = &mut self.inject {
                        held.extend_from_slice(&chunk);
                    }
                }
                Err(e) => {
                    // The body cannot be read: let it go as it is.
                    self.warn_once("get_buffer_bytes", e, "");
                    self.inject = Injection::Off;
                    if end_of_stream {
                        self.end_request();
                    }
                    return Action::Continue;
                }
            }
        }
        let max = self
            .shared
            .as_ref()
            .map_or(0, |s| s.borrow().config.max_inject_body_bytes);
        if body_size as u64 > max {
            // Envoy forwards what it buffered, unchanged, on this Continue.
            self.skipped(Skip::TooLarge);
            if end_of_stream {
                self.end_request();
            }
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.rewrite_held_request();
        self.end_request();
        Action::Continue
    }

    /// The held request body is complete: rewrites it in Envoy's buffer (or leaves it).
    fn rewrite_held_request(&mut self) {
        let Injection::Holding(body) = std::mem::replace(&mut self.inject, Injection::Off) else {
            return;
        };
        match rewrite_request(&body) {
            Rewrite::Injected(new) => {
                match abi::set_buffer(buffer::HTTP_REQUEST_BODY, 0, body.len(), &new) {
                    Ok(()) => {
                        self.inject = Injection::Injected;
                        self.put("include_usage_injection", b"injected");
                    }
                    Err(e) => self.warn_once("set_buffer_bytes", e, "request body"),
                }
            }
            Rewrite::ClientAsked => self.put("include_usage_injection", b"client_asked"),
            Rewrite::NotStreaming => {}
            Rewrite::Skipped(why) => self.skipped(why),
        }
    }

    /// At the response headers of an injected request: filter a plain event stream, after
    /// removing `content-length` (the body shrinks); leave anything else alone.
    fn start_filtering(&mut self, status: u16, pairs: &[(&[u8], &[u8])]) {
        if !matches!(self.inject, Injection::Injected) {
            return;
        }
        self.inject = Injection::Off;
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
                .map(|(_, v)| *v)
        };
        if status >= 400 {
            if let Some(s) = &self.shared {
                s.borrow_mut().note_once(
                    "injection rejected",
                    &format!("llm-usage: the upstream answered {status} to a request with stream_options.include_usage injected; if it rejects stream_options, turn inject_include_usage off for its route (further occurrences are not logged)"),
                );
            }
            return;
        }
        let sse = get("content-type").is_some_and(|ct| {
            ct.trim_ascii_start()
                .get(..17)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"text/event-stream"))
        });
        if !(200..300).contains(&status) || !sse {
            return;
        }
        if get("content-encoding").is_some_and(inject::is_encoded) {
            return self.skipped(Skip::EncodedResponse);
        }
        if get("content-length").is_some() {
            if let Err(e) = abi::remove_header(map::HTTP_RESPONSE_HEADERS, "content-length") {
                return self.warn_once("remove_header_map_value", e, "content-length");
            }
        }
        self.inject = Injection::Filtering(Box::default());
    }

    /// A response body chunk while filtering: the exchange sees it as it came, the client
    /// gets what the core's filter forwards for it.
    fn filter_response_body(&mut self, body_size: usize, end_of_stream: bool) {
        let chunk = if body_size == 0 {
            Vec::new()
        } else {
            match abi::get_buffer(buffer::HTTP_RESPONSE_BODY, 0, body_size) {
                Ok(c) => c,
                Err(e) => {
                    // Unreadable: stop filtering, and give back what was held, in front.
                    self.warn_once("get_buffer_bytes", e, "");
                    if let Injection::Filtering(f) =
                        std::mem::replace(&mut self.inject, Injection::Off)
                    {
                        let mut held = Vec::new();
                        let mut f = f;
                        f.finish(&mut held);
                        if !held.is_empty() {
                            if let Err(e) = abi::set_buffer(buffer::HTTP_RESPONSE_BODY, 0, 0, &held)
                            {
                                self.warn_once("set_buffer_bytes", e, "response body");
                            }
                        }
                    }
                    return;
                }
            }
        };
        self.observe_response(&chunk);
        let Injection::Filtering(f) = &mut self.inject else {
            return;
        };
        let mut out = Vec::new();
        let mut changed = f.push(&chunk, &mut out) == Filtered::Changed;
        if end_of_stream && f.held_bytes() > 0 {
            if !changed {
                out.extend_from_slice(&chunk);
                changed = true;
            }
            f.finish(&mut out);
        }
        if end_of_stream {
            self.inject = Injection::Off;
        }
        if changed {
            if let Err(e) = abi::set_buffer(buffer::HTTP_RESPONSE_BODY, 0, chunk.len(), &out) {
                // The chunk goes as it came; stop filtering.
                self.warn_once("set_buffer_bytes", e, "response body");
                self.inject = Injection::Off;
            }
        }
    }

    /// The value of dimension `index` for this exchange, sanitised and limited, into `out`.
    fn dimension_value(
        &self,
        shared: &mut Shared,
        index: usize,
        rec: &UsageRecord,
        out: &mut String,
    ) {
        let source = &shared.config.dimensions[index].source;
        let cluster: Option<String>;
        let raw: Option<&str> = match source {
            Source::SourceWorkload => shared.node.workload.as_deref(),
            Source::SourceWorkloadNamespace => shared.node.namespace.as_deref(),
            Source::DestinationService => {
                let host = strip_port(&self.authority);
                if host.is_empty() {
                    cluster = abi::get_property(b"xds\0cluster_name")
                        .or_else(|_| abi::get_property(b"cluster_name"))
                        .ok()
                        .filter(|v| !v.is_empty())
                        .map(|v| String::from_utf8_lossy(&v).into_owned());
                    cluster.as_deref()
                } else {
                    Some(host)
                }
            }
            Source::Model | Source::RequestModel | Source::ResponseModel | Source::Provider => {
                source
                    .record_label()
                    .and_then(|l| l.value(rec, self.configured_model.as_deref()))
            }
            Source::Header(_) => self
                .header_values
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, v)| v.as_str()),
        };
        match raw {
            Some(r) => sanitize_tag_into(r.as_bytes(), shared.config.max_label_len, out),
            None => {
                out.clear();
                out.push_str(UNKNOWN);
            }
        }
        let limiter = if source.is_model() {
            Some(&mut shared.model_limiter)
        } else {
            shared
                .value_limiters
                .iter_mut()
                .find(|(i, _)| *i == index)
                .map(|(_, l)| l)
        };
        if let Some(l) = limiter {
            // Admitted: the value itself, without the copy `Limiter::label` makes.
            if !l.admit(out) {
                let other = l.label(out);
                *out = other;
            }
        }
    }

    /// The dimension values of the metrics of this exchange, in dimension order, into
    /// `values` (its strings reused).
    fn label_values(&self, s: &mut Shared, rec: &UsageRecord, values: &mut Vec<String>) {
        values.resize_with(s.config.dimensions.len(), String::new);
        for (i, out) in values.iter_mut().enumerate() {
            self.dimension_value(s, i, rec, out);
        }
    }

    /// The dimension tags of the metrics of this exchange.
    fn tags(&self, s: &mut Shared, rec: &UsageRecord) -> Vec<(String, String)> {
        let mut values = Vec::new();
        self.label_values(s, rec, &mut values);
        s.config
            .dimensions
            .iter()
            .zip(values)
            .map(|(d, v)| (d.tag.clone(), v))
            .collect()
    }

    /// Adds 1 to a counter of `kind` with the profile's dimensions and, for the
    /// injection-skip and budget-rejection counters, the reason or limit tag.
    fn emit_counter(&self, rec: &UsageRecord, kind: MetricKind, extra: Option<&str>) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let mut s = shared.borrow_mut();
        let Some(name) = s.config.metrics.get(&kind).cloned() else {
            return;
        };
        let mut tags = self.tags(&mut s, rec);
        if let Some(value) = extra {
            let tag = match kind {
                MetricKind::BudgetRejected => s.config.budget_limit_tag.clone(),
                _ => s.config.skip_reason_tag.clone(),
            };
            tags.push((tag, value.to_string()));
        }
        let tag_refs: Vec<(&str, &str)> =
            tags.iter().map(|(t, v)| (t.as_str(), v.as_str())).collect();
        let full = stat_name(s.config.tag_format, &name, &tag_refs);
        s.add(full, 1);
    }

    /// Counts the records a realtime session closed (one per response, see
    /// `Exchange::take_records`) as they complete: their token metrics, not a request
    /// (the session is one, counted in `on_log`) and no timings (the session's).
    fn report_closed(&mut self) {
        let Some(ex) = self.tracker.as_mut().and_then(Tracker::exchange_mut) else {
            return;
        };
        if !ex.upgraded() {
            return;
        }
        for rec in ex.take_records() {
            if self.is_llm(&rec) {
                self.emit_metrics_of(&rec, &Timings::default(), true);
            }
        }
    }

    fn emit_metrics(&mut self, rec: &UsageRecord, timings: &Timings) {
        self.emit_metrics_of(rec, timings, false);
    }

    /// The metrics of a record; `closed`: one a realtime session closed, not the exchange's.
    fn emit_metrics_of(&mut self, rec: &UsageRecord, timings: &Timings, closed: bool) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let mut s = shared.borrow_mut();
        let mut values = std::mem::take(&mut s.labels);
        self.label_values(&mut s, rec, &mut values);
        let set = s.label_set(&values);
        let modality = s.config.token_modality_tag.is_some();
        for kind in MetricKind::ALL {
            if !s.config.metrics.contains_key(&kind) {
                continue;
            }
            let value = match kind {
                // Per-figure token counters (`asm`): one row of the shared token table.
                MetricKind::PromptTokens
                | MetricKind::CompletionTokens
                | MetricKind::TotalTokens
                | MetricKind::CachedTokens
                | MetricKind::CacheCreationTokens
                | MetricKind::ReasoningTokens
                | MetricKind::InputAudioTokens
                | MetricKind::InputImageTokens
                | MetricKind::OutputAudioTokens
                | MetricKind::OutputImageTokens
                | MetricKind::CacheCreation5mTokens
                | MetricKind::CacheCreation1hTokens => {
                    let Some(f) = s.token_fields[kind as usize] else {
                        continue;
                    };
                    let Some(v) = f.value(rec) else { continue };
                    // `otel`: `gen_ai.client.inference.usage.*` with the figure's modality.
                    if modality {
                        let lead = Lead::Modality(f.modality.unwrap_or(UNKNOWN_MODALITY));
                        let id = s.series_id(set, &values, kind, lead);
                        s.add_to(id, v);
                        continue;
                    }
                    Some(v)
                }
                MetricKind::Requests => (!closed).then_some(1),
                MetricKind::EstimatedRequests => rec.estimated.then_some(1),
                MetricKind::TimeToFirstByte => timings.time_to_first_byte().map(ns_to_ms),
                MetricKind::TimeToFirstToken => timings.time_to_first_token().map(ns_to_ms),
                MetricKind::TimePerOutputToken => timings.time_per_output_token(rec).map(ns_to_ms),
                MetricKind::RequestDuration => timings.duration().map(ns_to_ms),
                MetricKind::CostMicros => self
                    .pricing
                    .as_ref()
                    .and_then(Pricing::amount)
                    .map(|a| u64::try_from(a.micros_floor()).unwrap_or(u64::MAX)),
                MetricKind::PriceLookupMisses => self
                    .pricing
                    .as_ref()
                    .is_some_and(Pricing::is_miss)
                    .then_some(1),
                MetricKind::WebSearchRequests => rec.web_search_requests,
                MetricKind::WebFetchRequests => rec.web_fetch_requests,
                // Counted per skip, in `emit_skip`; per rejection and store failure, as
                // they happen.
                MetricKind::InjectSkipped
                | MetricKind::BudgetRejected
                | MetricKind::BudgetStoreErrors => continue,
                MetricKind::TokenUsage => {
                    for (i, f) in TOKEN_FIELDS.iter().enumerate() {
                        // `input` and `output` only: a subset (cache, reasoning, the
                        // parts) there would count twice in a sum over types; subsets
                        // have their own counters.
                        let ty = f.token_type.filter(|t| !t.is_subset());
                        let (Some(ty), Some(v)) = (ty, f.value(rec)) else {
                            continue;
                        };
                        let id = s.series_id(set, &values, kind, Lead::TokenType(ty.as_str(), i));
                        s.record_to(id, v);
                    }
                    continue;
                }
            };
            let Some(value) = value else { continue };
            let id = s.series_id(set, &values, kind, Lead::None);
            if kind.is_histogram() {
                s.record_to(id, value);
            } else {
                s.add_to(id, value);
            }
        }
        s.labels = values;
    }
}

/// The host clock, in nanoseconds (`None`, logged once, when the host has none).
fn clock(shared: &Option<Rc<RefCell<Shared>>>) -> Option<u64> {
    match abi::now_nanos() {
        Ok(t) => Some(t),
        Err(e) => {
            if let Some(s) = shared {
                s.borrow_mut().warn_once("get_current_time", e, "");
            }
            None
        }
    }
}

fn ns_to_ms(ns: u64) -> u64 {
    (ns + 500_000) / 1_000_000
}

/// `12.345` (milliseconds with microsecond precision) for filter state.
fn ms_text(ns: u64) -> Decimal {
    let mut d = Decimal::new();
    let micros = (ns / 1_000) % 1_000;
    d.push_front(b'0' + (micros % 10) as u8);
    d.push_front(b'0' + (micros / 10 % 10) as u8);
    d.push_front(b'0' + (micros / 100) as u8);
    d.push_front(b'.');
    d.digits(ns / 1_000_000)
}

/// Decimal text for filter state, written on the stack from its last byte (no formatting
/// machinery, no allocation). Room for any `u64` and for [`ms_text`]'s figures.
struct Decimal {
    buf: [u8; 24],
    start: usize,
}

impl Decimal {
    fn new() -> Decimal {
        Decimal {
            buf: [0; 24],
            start: 24,
        }
    }

    /// Puts `b` in front of the text. (Callers write at most 24 bytes: 20 digits of a
    /// `u64`, or [`ms_text`]'s 4 + at most 15.)
    fn push_front(&mut self, b: u8) {
        self.start -= 1;
        self.buf[self.start] = b;
    }

    /// Puts the decimal digits of `v` in front of the text.
    fn digits(mut self, mut v: u64) -> Decimal {
        loop {
            self.push_front(b'0' + (v % 10) as u8);
            v /= 10;
            if v == 0 {
                return self;
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
impl PartialEq<&str> for Decimal {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

#[cfg(test)]
impl std::fmt::Debug for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Context for Stream {
    sdk::context_methods!();
}

impl HttpContext for Stream {
    sdk::http_methods!();

    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        let start = self.now();
        {
            let mut s = shared.borrow_mut();
            if !s.node.retried {
                s.node.retried = true;
                s.read_node();
            }
        }
        let buf = self.header_buf(map::HTTP_REQUEST_HEADERS);
        let pairs = parse_pairs(&buf).unwrap_or_default();
        let s = shared.borrow();
        let config = &s.config;
        let (exchange, authority, configured, header_values, injection) = {
            let get = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
                    .map(|(_, v)| String::from_utf8_lossy(v))
            };
            let method = get(":method").unwrap_or_default();
            let path = get(":path").unwrap_or_default();
            let authority = get(":authority")
                .or_else(|| get("host"))
                .unwrap_or_default();
            let (provider, route_model) = config.route_for(&path, &authority);
            let configured = config
                .model_rules
                .iter()
                .find(|r| match get(&r.header) {
                    Some(v) => r.equals.as_deref().map_or(true, |want| v == want),
                    None => false,
                })
                .map(|r| r.model.clone())
                .or_else(|| route_model.map(str::to_string));
            let mut header_values = Vec::new();
            for (i, d) in config.dimensions.iter().enumerate() {
                if let Source::Header(h) = &d.source {
                    if let Some(v) = get(h) {
                        header_values.push((i, v.into_owned()));
                    }
                }
            }
            let mut options = Options::new();
            if let Some(p) = provider {
                options = options.provider(p);
            }
            if let Some(limit) = config.max_body_bytes {
                options = options.max_body_bytes(limit);
            }
            let mut ex = Exchange::with_options(options);
            ex.on_request_head(&method, &path, pairs.iter().copied());
            // Injection: on for the route, an OpenAI-compatible completions request with a
            // body. What the body's encoding and declared length allow is decided below.
            let injection = (!end_of_stream
                && config.inject_for(&path, &authority)
                && inject::applies_to(&method, &path)
                && ex.dialect() == "openai-chat")
                .then(|| {
                    let encoded =
                        get("content-encoding").is_some_and(|v| inject::is_encoded(v.as_bytes()));
                    let length = get("content-length").map(|v| v.trim().parse::<u64>().ok());
                    (encoded, length)
                });
            (
                ex,
                authority.into_owned(),
                configured,
                header_values,
                injection,
            )
        };
        drop(s);
        self.tracker = Some(Tracker::new(exchange, start));
        self.authority = authority;
        self.configured_model = configured;
        self.header_values = header_values;
        if self.check_budgets(&pairs) {
            // Answered locally (Envoy sends the reply once this callback returns).
            return Action::Pause;
        }
        if let Some((encoded, length)) = injection {
            self.start_injection(encoded, length);
        }
        if end_of_stream {
            self.end_request();
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.tracker.is_none() || self.request_ended() {
            return Action::Continue;
        }
        if matches!(self.inject, Injection::Holding(_)) {
            return self.hold_request_body(body_size, end_of_stream);
        }
        if let Some(chunk) =
            self.read_body(buffer::HTTP_REQUEST_BODY, body_size, self.request_bytes)
        {
            self.request_bytes += chunk.len() as u64;
            if let Some(t) = self.tracker.as_mut() {
                t.request_body(&chunk);
            }
        }
        if end_of_stream {
            self.end_request();
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // A held body is still in Envoy's buffer here: rewrite it before it goes on.
        self.rewrite_held_request();
        if self.tracker.is_some() && !self.request_ended() {
            self.end_request();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.tracker.is_none() || self.record.is_some() {
            return Action::Continue;
        }
        let now = self.now();
        if let Some(t) = self.tracker.as_mut() {
            t.first_byte(now);
        }
        let buf = self.header_buf(map::HTTP_RESPONSE_HEADERS);
        let pairs = parse_pairs(&buf).unwrap_or_default();
        let status = pairs
            .iter()
            .find(|(k, _)| *k == b":status")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<u16>().ok())
            .unwrap_or(0);
        if let Some(t) = self.tracker.as_mut() {
            t.response_head(status, pairs.iter().copied());
        }
        self.start_filtering(status, &pairs);
        self.publish_request();
        if end_of_stream {
            self.finish(true);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.tracker.is_none() || self.record.is_some() {
            return Action::Continue;
        }
        if matches!(self.inject, Injection::Filtering(_)) {
            self.filter_response_body(body_size, end_of_stream);
            if end_of_stream {
                self.finish(true);
            }
            return Action::Continue;
        }
        if let Some(chunk) =
            self.read_body(buffer::HTTP_RESPONSE_BODY, body_size, self.response_bytes)
        {
            self.response_bytes += chunk.len() as u64;
            let shared = &self.shared;
            if let Some(t) = self.tracker.as_mut() {
                t.response_body(&chunk, || clock(shared));
            }
            self.report_closed();
        }
        if end_of_stream {
            self.finish(true);
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // An event still held here had no blank line; Envoy offers no body buffer in this
        // callback (`Context::getBuffer`: `response_body_buffer_` is cleared once a data
        // callback continues), so it cannot be forwarded. (An SSE client discards such an
        // event anyway.)
        self.inject = Injection::Off;
        if self.tracker.is_some() {
            self.finish(true);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.tracker.is_none() {
            return;
        }
        // A reset stream never delivered its end: take what was complete.
        self.finish(false);
        let Some(rec) = self.record.take() else {
            return;
        };
        self.charge_budgets(&rec);
        if let Some(why) = self.skip.take() {
            self.emit_counter(&rec, MetricKind::InjectSkipped, Some(why.as_str()));
        }
        if !self.is_llm(&rec) {
            return;
        }
        let now = self.now();
        let Some(t) = self.tracker.as_mut() else {
            return;
        };
        t.end(now);
        let timings = *t.timings();
        if let Some(ns) = timings.time_to_first_byte() {
            self.put("time_to_first_byte_ms", ms_text(ns).as_bytes());
        }
        if let Some(ns) = timings.time_to_first_token() {
            self.put("time_to_first_token_ms", ms_text(ns).as_bytes());
        }
        if let Some(ns) = timings.time_per_output_token(&rec) {
            self.put("time_per_output_token_ms", ms_text(ns).as_bytes());
        }
        if let Some(ns) = timings.duration() {
            self.put("request_duration_ms", ms_text(ns).as_bytes());
        }
        self.emit_metrics(&rec, &timings);
        self.record = Some(rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_for_metrics_and_state() {
        assert_eq!(ns_to_ms(250_000_000), 250);
        assert_eq!(ns_to_ms(10_499_999), 10);
        assert_eq!(ns_to_ms(10_500_000), 11);
        assert_eq!(ms_text(12_345_678), "12.345");
        assert_eq!(ms_text(0), "0.000");
    }

    /// The stack-written decimal text equals what `format!` writes, on edges and spread.
    #[test]
    fn decimal_text_matches_format() {
        let mut values: Vec<u64> = (0..2_000).chain([u64::MAX, u64::MAX - 1]).collect();
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            values.extend([p - 1, p, p + 1, next - 1]);
            p = next;
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.extend([x, x >> 20, x >> 40]);
        }
        for v in values {
            assert_eq!(Decimal::new().digits(v), v.to_string().as_str(), "{v}");
            let ms = format!("{}.{:03}", v / 1_000_000, (v / 1_000) % 1_000);
            assert_eq!(ms_text(v), ms.as_str(), "{v}");
        }
    }
}
