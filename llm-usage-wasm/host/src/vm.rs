//! One VM running a proxy-wasm module, driven the way Envoy drives a plugin.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::engine::{self, Backend};
use crate::shared::SharedData;
use crate::state::{Action, HeaderMap, HostState, LocalResponse, LogLine, NodePaths, StreamState};
use crate::stats::{Stats, StatsConfig};

/// Why a VM could not be made, or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The module does not compile or instantiate.
    Load(String),
    /// The module imports something Envoy does not provide (Envoy refuses such a module).
    MissingImport(String),
    /// An import has a different signature than the ABI's.
    BadSignature(String),
    /// `proxy_on_vm_start` returned false.
    VmStartFailed,
    /// `proxy_on_configure` returned false (Envoy rejects the plugin configuration); the
    /// messages the module logged.
    ConfigureFailed(Vec<String>),
    /// A call into the module trapped; the VM is failed from then on.
    Trap(String),
    /// The VM failed earlier (Envoy: requests then pass or fail per the plugin's fail policy).
    VmFailed(String),
    /// The stream id is unknown.
    NoSuchStream(u32),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Load(m) => write!(f, "cannot load the module: {m}"),
            HostError::MissingImport(m) => {
                write!(f, "the module imports {m}, which Envoy does not provide")
            }
            HostError::BadSignature(m) => write!(f, "import {m} has the wrong signature"),
            HostError::VmStartFailed => f.write_str("proxy_on_vm_start returned false"),
            HostError::ConfigureFailed(logs) => write!(
                f,
                "proxy_on_configure returned false (Envoy rejects this configuration): {}",
                logs.join("; ")
            ),
            HostError::Trap(m) => write!(f, "the VM trapped: {m}"),
            HostError::VmFailed(m) => write!(f, "the VM failed earlier: {m}"),
            HostError::NoSuchStream(id) => write!(f, "no stream with context id {id}"),
        }
    }
}

impl std::error::Error for HostError {}

/// How to set up a VM.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The plugin configuration (`configuration` in the Wasm filter config).
    pub plugin_config: Vec<u8>,
    /// The VM configuration (`vm_config.configuration`).
    pub vm_config: Vec<u8>,
    /// Node metadata, served as `xds.node.metadata.<key>` and/or `node.metadata.<key>`.
    pub node_metadata: BTreeMap<String, String>,
    /// The upstream cluster name (`xds.cluster_name` / `cluster_name`), if any.
    pub cluster_name: Option<String>,
    /// Which node property paths exist.
    pub node_paths: NodePaths,
    /// `plugin_name`.
    pub plugin_name: String,
    /// Extra static properties: serialized path (NUL-joined) → value.
    pub properties: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Host functions (e.g. `proxy_set_property`) that answer `InternalFailure` instead of
    /// working: fault injection, to check the filter lets traffic through regardless.
    pub fail_calls: Vec<String>,
    /// Whether streams keep every byte they pass on, for tests to compare with what was
    /// sent (default). Benchmarks turn it off: Envoy keeps nothing, and growing a
    /// megabyte buffer per exchange made the host's own page faults a noisy part of what
    /// was measured.
    pub keep_forwarded: bool,
    /// The `vm_id` (`vm_config.vm_id`): VMs of one [`Host`] with the same `vm_id` share
    /// their shared data (default: empty, as when Envoy's config leaves it out).
    pub vm_id: String,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            node_metadata: BTreeMap::new(),
            cluster_name: None,
            node_paths: NodePaths::Xds,
            plugin_name: "llm-usage".into(),
            properties: BTreeMap::new(),
            fail_calls: Vec::new(),
            keep_forwarded: true,
            vm_id: String::new(),
        }
    }
}

impl HostOptions {
    /// Options with this plugin configuration.
    pub fn with_config(config: impl Into<Vec<u8>>) -> HostOptions {
        HostOptions {
            plugin_config: config.into(),
            ..HostOptions::default()
        }
    }

    /// Adds a node metadata entry.
    pub fn node_metadata(mut self, key: &str, value: &str) -> HostOptions {
        self.node_metadata.insert(key.into(), value.into());
        self
    }
}

/// Which engine runs the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// wasmi, an interpreter (the default: fast to build, deterministic).
    #[default]
    Wasmi,
    /// wasmtime with Cranelift (the `wasmtime` feature); Envoy can run wasmtime too.
    #[cfg(feature = "wasmtime")]
    Wasmtime,
}

enum Compiled {
    Wasmi(engine::wasmi_engine::Compiled),
    #[cfg(feature = "wasmtime")]
    Wasmtime(engine::wasmtime_engine::Compiled),
}

/// A compiled module, ready to start VMs: one Envoy process. The VMs it starts are that
/// process's workers (Envoy runs one VM per worker thread): they share the process-wide
/// [`SharedData`], and each can run on its own thread.
pub struct Host {
    compiled: Compiled,
    shared: Arc<SharedData>,
}

impl Host {
    /// Compiles a module with the default engine (wasmi).
    pub fn new(wasm: &[u8]) -> Result<Host, HostError> {
        Host::with_engine(wasm, EngineKind::Wasmi)
    }

    /// Compiles a module with the given engine.
    pub fn with_engine(wasm: &[u8], kind: EngineKind) -> Result<Host, HostError> {
        let compiled = match kind {
            EngineKind::Wasmi => Compiled::Wasmi(engine::wasmi_engine::Compiled::new(wasm)?),
            #[cfg(feature = "wasmtime")]
            EngineKind::Wasmtime => {
                Compiled::Wasmtime(engine::wasmtime_engine::Compiled::new(wasm)?)
            }
        };
        Ok(Host {
            compiled,
            shared: Arc::new(SharedData::new()),
        })
    }

    /// Reads and compiles a module file with the default engine.
    pub fn from_file(path: &std::path::Path) -> Result<Host, HostError> {
        Host::from_file_with(path, EngineKind::Wasmi)
    }

    /// Reads and compiles a module file with the given engine.
    pub fn from_file_with(path: &std::path::Path, kind: EngineKind) -> Result<Host, HostError> {
        let wasm =
            std::fs::read(path).map_err(|e| HostError::Load(format!("{}: {e}", path.display())))?;
        Host::with_engine(&wasm, kind)
    }

    /// The process-wide shared data of this host's VMs.
    pub fn shared_data(&self) -> &SharedData {
        &self.shared
    }

    /// The imports of the module (`module.name`), as the module lists them.
    pub fn imports(&self) -> Vec<String> {
        match &self.compiled {
            Compiled::Wasmi(c) => c.imports(),
            #[cfg(feature = "wasmtime")]
            Compiled::Wasmtime(c) => c.imports(),
        }
    }

    /// Starts a VM: instantiates (binding every import from the module's import list),
    /// runs `_initialize` (then `main` if exported), creates the root context, and calls
    /// `proxy_on_vm_start` and `proxy_on_configure`.
    pub fn start(&self, options: HostOptions) -> Result<Vm, HostError> {
        let mut state = HostState::new();
        state.vm_config = options.vm_config;
        state.plugin_config = options.plugin_config;
        state.plugin_name = options.plugin_name;
        state.properties = options.properties;
        state.fail_calls = options.fail_calls.into_iter().collect();
        state.keep_forwarded = options.keep_forwarded;
        state.vm_id = options.vm_id;
        state.shared_data = self.shared.clone();
        let legacy = matches!(options.node_paths, NodePaths::Legacy | NodePaths::Both);
        let xds = matches!(options.node_paths, NodePaths::Xds | NodePaths::Both);
        for (k, v) in &options.node_metadata {
            let path = format!("node\0metadata\0{k}");
            if legacy {
                state
                    .properties
                    .insert(path.clone().into_bytes(), v.clone().into_bytes());
            }
            if xds {
                state
                    .properties
                    .insert(format!("xds\0{path}").into_bytes(), v.clone().into_bytes());
            }
        }
        if let Some(c) = &options.cluster_name {
            if legacy {
                state
                    .properties
                    .insert(b"cluster_name".to_vec(), c.clone().into_bytes());
            }
            if xds {
                state
                    .properties
                    .insert(b"xds\0cluster_name".to_vec(), c.clone().into_bytes());
            }
        }
        let backend = match &self.compiled {
            Compiled::Wasmi(c) => c.instantiate(state)?,
            #[cfg(feature = "wasmtime")]
            Compiled::Wasmtime(c) => c.instantiate(state)?,
        };
        let mut vm = Vm {
            backend,
            failed: None,
            next_context: 2,
        };
        if !vm.backend.has_export("proxy_abi_version_0_2_1")
            && !vm.backend.has_export("proxy_abi_version_0_2_0")
        {
            return Err(HostError::Load(
                "the module exports no proxy_abi_version_0_2_x marker".into(),
            ));
        }
        if vm.backend.has_export("_initialize") {
            vm.call("_initialize", &[])?;
            if vm.backend.has_export("main") {
                vm.call("main", &[0, 0])?;
            }
        } else if vm.backend.has_export("_start") {
            vm.call("_start", &[])?;
        }
        let root = vm.state().root_context_id;
        vm.call_in(root, "proxy_on_context_create", &[root as i64, 0])?;
        let vm_len = vm.state().vm_config.len() as i64;
        if vm.call_in(root, "proxy_on_vm_start", &[root as i64, vm_len])? == Some(0) {
            return Err(HostError::VmStartFailed);
        }
        let cfg_len = vm.state().plugin_config.len() as i64;
        vm.backend.state_mut().in_configure = true;
        let configured = vm.call_in(root, "proxy_on_configure", &[root as i64, cfg_len]);
        vm.backend.state_mut().in_configure = false;
        if configured? == Some(0) {
            let logs = vm.logs().iter().map(|l| l.message.clone()).collect();
            return Err(HostError::ConfigureFailed(logs));
        }
        Ok(vm)
    }
}

/// A stream's context id.
pub type StreamId = u32;

/// One running VM (one Envoy worker's instance of the plugin) with its root context.
pub struct Vm {
    backend: Box<dyn Backend>,
    failed: Option<String>,
    next_context: u32,
}

impl Vm {
    fn call(&mut self, name: &str, args: &[i64]) -> Result<Option<i64>, HostError> {
        if let Some(why) = &self.failed {
            return Err(HostError::VmFailed(why.clone()));
        }
        self.backend.call(name, args).map_err(|e| {
            let why = format!("{name}: {e}");
            self.failed = Some(why.clone());
            HostError::Trap(why)
        })
    }

    /// Calls a callback with `context` as the current context.
    fn call_in(
        &mut self,
        context: u32,
        name: &str,
        args: &[i64],
    ) -> Result<Option<i64>, HostError> {
        let st = self.backend.state_mut();
        st.current_context = context;
        st.effective_context = None;
        let r = self.call(name, args);
        let st = self.backend.state_mut();
        st.current_context = 0;
        st.effective_context = None;
        r
    }

    /// The host state (logs, stats, streams).
    pub fn state(&self) -> &HostState {
        self.backend.state()
    }

    /// Why the VM failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Advances the host clock.
    pub fn advance_ms(&mut self, ms: u64) {
        self.backend.state_mut().clock_ns += ms * 1_000_000;
    }

    /// Log lines so far.
    pub fn logs(&self) -> &[LogLine] {
        &self.backend.state().logs
    }

    /// The stats store.
    pub fn stats(&self) -> &Stats {
        &self.backend.state().stats
    }

    /// The Prometheus text Envoy would serve for the custom metrics.
    pub fn prometheus(&self, config: &StatsConfig) -> String {
        self.backend.state().stats.prometheus(config)
    }

    /// How often a host function was called.
    pub fn calls(&self, name: &str) -> u64 {
        self.backend.state().calls.get(name).copied().unwrap_or(0)
    }

    /// A stream's host-side state.
    pub fn stream(&self, id: StreamId) -> Option<&StreamState> {
        self.backend.state().streams.get(&id)
    }

    /// A stream's filter state as text (`wasm.<path>` → value).
    pub fn filter_state(&self, id: StreamId) -> BTreeMap<String, String> {
        self.stream(id)
            .map(|s| {
                s.filter_state
                    .iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Allocates a context id for a new stream; the filter sees it at the request headers.
    pub fn new_stream(&mut self) -> StreamId {
        let id = self.next_context;
        self.next_context += 1;
        self.backend
            .state_mut()
            .streams
            .insert(id, StreamState::default());
        id
    }

    fn stream_mut(&mut self, id: StreamId) -> Result<&mut StreamState, HostError> {
        self.backend
            .state_mut()
            .streams
            .get_mut(&id)
            .ok_or(HostError::NoSuchStream(id))
    }

    fn ensure_created(&mut self, id: StreamId) -> Result<(), HostError> {
        if self.stream_mut(id)?.created {
            return Ok(());
        }
        self.stream_mut(id)?.created = true;
        let root = self.backend.state().root_context_id as i64;
        self.call_in(id, "proxy_on_context_create", &[id as i64, root])?;
        Ok(())
    }

    fn record(
        &mut self,
        id: StreamId,
        cb: &'static str,
        ret: Option<i64>,
    ) -> Result<Action, HostError> {
        let a = Action::from_ret(ret);
        self.stream_mut(id)?.callbacks.push((cb, a));
        Ok(a)
    }

    fn to_map(headers: &[(&str, &str)]) -> HeaderMap {
        headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase().into_bytes(), v.as_bytes().to_vec()))
            .collect()
    }

    /// `decodeHeaders`: creates the context, then `proxy_on_request_headers`.
    ///
    /// The filter can read and change the headers during the callback; once it answers
    /// Continue they go upstream as they are then ([`StreamState::upstream_request_headers`])
    /// and the map is out of reach, as in Envoy (`Context::decodeHeaders` sets
    /// `request_headers_` for the call and clears it on Continue, so a later
    /// `proxy_replace_header_map_value` finds no map: BadArgument).
    pub fn request_headers(
        &mut self,
        id: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        let s = self.stream_mut(id)?;
        s.request_headers = Some(Self::to_map(headers));
        s.request_headers_only = end_of_stream;
        s.live_maps.request_headers = true;
        self.ensure_created(id)?;
        let n = headers.len() as i64;
        let r = self.call_in(
            id,
            "proxy_on_request_headers",
            &[id as i64, n, end_of_stream as i64],
        )?;
        let a = self.record(id, "on_request_headers", r)?;
        let replied = self.after_call(id)?;
        if a != Action::Pause && !replied {
            self.stream_mut(id)?.continue_request_headers();
        }
        Ok(a)
    }

    /// Whether the stream is over for the filter chain: a local reply was sent instead of
    /// the upstream's response, or the stream was reset. Envoy then delivers nothing more
    /// of the request or of an upstream response to the filters.
    fn ended(&mut self, id: StreamId) -> Result<bool, HostError> {
        let s = self.stream_mut(id)?;
        Ok(s.local_response.is_some() || s.reset)
    }

    /// Runs Envoy's after-VM-call action for a local reply the callback asked for, as
    /// `DownstreamFilterManager::sendLocalReply` (`source/common/http/filter_manager.cc`)
    /// does: if the response has not started, through the filter chain (this filter's
    /// `on_response_headers` and `on_response_body` see the reply); if response headers
    /// started through the filters but none went downstream, straight to the client
    /// (bypassing the filters); if headers already went downstream, a reset. The headers
    /// are built as `Utility::prepareLocalReply` (`source/common/http/utility.cc`) does:
    /// `:status`, the filter's headers, then for a body its `content-length` and a
    /// `content-type: text/plain` unless the filter gave one (a HEAD request gets no body).
    /// Returns whether a reply was acted on (the current filter chain is aborted).
    fn after_call(&mut self, id: StreamId) -> Result<bool, HostError> {
        let s = self.stream_mut(id)?;
        let Some(reply) = s.pending_local_response.take() else {
            return Ok(false);
        };
        if s.downstream_response_headers.is_some() {
            s.reset = true;
            return Ok(true);
        }
        let is_head = s
            .request_headers
            .as_ref()
            .and_then(|h| h.iter().find(|(k, _)| k == b":method"))
            .is_some_and(|(_, v)| v == b"HEAD");
        let mut headers: HeaderMap =
            vec![(b":status".to_vec(), reply.status.to_string().into_bytes())];
        headers.extend(reply.headers.iter().cloned());
        let body = if is_head {
            Vec::new()
        } else {
            reply.body.clone()
        };
        headers.retain(|(k, _)| k != b"content-length");
        if body.is_empty() {
            headers.retain(|(k, _)| k != b"content-type");
        } else {
            headers.push((
                b"content-length".to_vec(),
                body.len().to_string().into_bytes(),
            ));
            if !headers.iter().any(|(k, _)| k == b"content-type") {
                headers.push((b"content-type".to_vec(), b"text/plain".to_vec()));
            }
        }
        if s.response_headers.is_some() {
            // Direct to the client.
            let keep = self.backend.state().keep_forwarded;
            let s = self.stream_mut(id)?;
            s.live_maps.response_headers = false;
            s.response_headers = Some(headers.clone());
            s.downstream_response_headers = Some(headers);
            s.response_headers_only = body.is_empty();
            s.forwarded_response.clear();
            if keep {
                s.forwarded_response.extend_from_slice(&body);
            }
            s.local_response = Some(reply);
            return Ok(true);
        }
        // Through the filter chain.
        let text: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        let pairs: Vec<(&str, &str)> = text.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.response_headers(id, &pairs, body.is_empty())?;
        if !body.is_empty() && !self.ended(id)? {
            self.response_body(id, &body, true)?;
        }
        let s = self.stream_mut(id)?;
        if !s.reset {
            s.local_response.get_or_insert(reply);
        }
        Ok(true)
    }

    /// The local reply sent on a stream, if any.
    pub fn local_response(&self, id: StreamId) -> Option<&LocalResponse> {
        self.stream(id)?.local_response.as_ref()
    }

    /// `decodeData`: one body chunk. After a Pause Envoy buffers, and the next call sees the
    /// whole buffer; after Continue the chunk goes upstream.
    pub fn request_body(
        &mut self,
        id: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        self.body(id, chunk, end_of_stream, true)
    }

    /// `encodeData`: one response body chunk (see [`Vm::request_body`]).
    pub fn response_body(
        &mut self,
        id: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        self.body(id, chunk, end_of_stream, false)
    }

    fn body(
        &mut self,
        id: StreamId,
        chunk: &[u8],
        eos: bool,
        request: bool,
    ) -> Result<Action, HostError> {
        if self.ended(id)? {
            return Ok(Action::None);
        }
        let keep = self.backend.state().keep_forwarded;
        let s = self.stream_mut(id)?;
        if !s.created {
            // Envoy skips Wasm callbacks for a context that was never created.
            let out = if request {
                &mut s.forwarded_request
            } else {
                &mut s.forwarded_response
            };
            if keep {
                out.extend_from_slice(chunk);
            }
            return Ok(Action::None);
        }
        // Envoy `Context::decodeData` / `encodeData`: after a StopIterationAndBuffer the new
        // chunk is appended to the buffered body (`addDecodedData`) and the filter sees the
        // whole of it (`getBuffer` → `modifyDecodingBuffer`); otherwise it sees this chunk
        // alone. Either buffer is the filter's to change (`proxy_set_buffer_bytes`) during the
        // call.
        let (buf, buffering) = if request {
            s.in_request_body = true;
            (&mut s.request_body, s.request_buffering)
        } else {
            s.in_response_body = true;
            (&mut s.response_body, s.response_buffering)
        };
        if !buffering {
            buf.clear();
        }
        buf.extend_from_slice(chunk);
        let size = buf.len() as i64;
        let cb = if request {
            "proxy_on_request_body"
        } else {
            "proxy_on_response_body"
        };
        let r = self.call_in(id, cb, &[id as i64, size, eos as i64]);
        let s = self.stream_mut(id)?;
        s.in_request_body = false;
        s.in_response_body = false;
        let r = r?;
        let action = self.record(
            id,
            if request {
                "on_request_body"
            } else {
                "on_response_body"
            },
            r,
        )?;
        if self.after_call(id)? {
            let s = self.stream_mut(id)?;
            if request {
                s.request_body.clear();
                s.request_buffering = false;
            }
            return Ok(action);
        }
        let s = self.stream_mut(id)?;
        let pause = action == Action::Pause;
        let (buf, buffering, out) = if request {
            (
                &mut s.request_body,
                &mut s.request_buffering,
                &mut s.forwarded_request,
            )
        } else {
            (
                &mut s.response_body,
                &mut s.response_buffering,
                &mut s.forwarded_response,
            )
        };
        if pause {
            *buffering = true;
            if eos {
                s.stalled = true;
            }
        } else {
            *buffering = false;
            if keep {
                out.extend_from_slice(buf);
            }
            buf.clear();
            // Continue on data also continues headers a filter had stopped.
            if request {
                s.continue_request_headers();
            } else {
                s.continue_response_headers();
            }
        }
        Ok(action)
    }

    /// `decodeTrailers`. If the filter had stopped the body (StopIterationAndBuffer), the
    /// buffered body is still the filter's to read and change here (Envoy's `getBuffer`
    /// answers the decoding buffer while `buffering_request_body_`), and a Continue sends it
    /// upstream before the trailers.
    pub fn request_trailers(
        &mut self,
        id: StreamId,
        trailers: &[(&str, &str)],
    ) -> Result<Action, HostError> {
        self.trailers(id, trailers, true)
    }

    fn trailers(
        &mut self,
        id: StreamId,
        trailers: &[(&str, &str)],
        request: bool,
    ) -> Result<Action, HostError> {
        if self.ended(id)? {
            return Ok(Action::None);
        }
        let keep = self.backend.state().keep_forwarded;
        let s = self.stream_mut(id)?;
        let map = Some(Self::to_map(trailers));
        if request {
            s.request_trailers = map;
            s.live_maps.request_trailers = true;
        } else {
            s.response_trailers = map;
            s.live_maps.response_trailers = true;
        }
        if !s.created {
            return Ok(Action::None);
        }
        let (cb, name) = if request {
            ("proxy_on_request_trailers", "on_request_trailers")
        } else {
            ("proxy_on_response_trailers", "on_response_trailers")
        };
        let r = self.call_in(id, cb, &[id as i64, trailers.len() as i64])?;
        let a = self.record(id, name, r)?;
        if self.after_call(id)? {
            return Ok(a);
        }
        if a != Action::Pause {
            let s = self.stream_mut(id)?;
            let (buf, buffering, out) = if request {
                s.live_maps.request_trailers = false;
                s.continue_request_headers();
                (
                    &mut s.request_body,
                    &mut s.request_buffering,
                    &mut s.forwarded_request,
                )
            } else {
                s.live_maps.response_trailers = false;
                s.continue_response_headers();
                (
                    &mut s.response_body,
                    &mut s.response_buffering,
                    &mut s.forwarded_response,
                )
            };
            if *buffering {
                *buffering = false;
                if keep {
                    out.extend_from_slice(buf);
                }
                buf.clear();
            }
        }
        Ok(a)
    }

    /// `encodeHeaders` (the map is reachable as for [`Vm::request_headers`]).
    pub fn response_headers(
        &mut self,
        id: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        if self.ended(id)? {
            return Ok(Action::None);
        }
        let s = self.stream_mut(id)?;
        s.response_headers = Some(Self::to_map(headers));
        s.response_headers_only = end_of_stream;
        s.live_maps.response_headers = true;
        if !s.created {
            s.continue_response_headers();
            return Ok(Action::None);
        }
        let r = self.call_in(
            id,
            "proxy_on_response_headers",
            &[id as i64, headers.len() as i64, end_of_stream as i64],
        )?;
        let a = self.record(id, "on_response_headers", r)?;
        if self.after_call(id)? {
            return Ok(a);
        }
        if a != Action::Pause {
            self.stream_mut(id)?.continue_response_headers();
        }
        Ok(a)
    }

    /// `encodeTrailers` (see [`Vm::request_trailers`]: a buffered response body goes to the
    /// client before the trailers on Continue).
    pub fn response_trailers(
        &mut self,
        id: StreamId,
        trailers: &[(&str, &str)],
    ) -> Result<Action, HostError> {
        self.trailers(id, trailers, false)
    }

    /// The access-log handler (`Context::log`): creates the context if the stream never
    /// reached the filter (local replies), then `proxy_on_log` in the access-log phase.
    pub fn log(&mut self, id: StreamId) -> Result<(), HostError> {
        self.ensure_created(id)?;
        self.stream_mut(id)?.access_log_phase = true;
        let r = self.call_in(id, "proxy_on_log", &[id as i64]);
        self.stream_mut(id)?.access_log_phase = false;
        self.record(id, "on_log", r?)?;
        Ok(())
    }

    /// `onDestroy`: `proxy_on_done`, then `proxy_on_delete`.
    pub fn destroy(&mut self, id: StreamId) -> Result<(), HostError> {
        let s = self.stream_mut(id)?;
        if s.destroyed || !s.created {
            return Ok(());
        }
        s.destroyed = true;
        // on_done answers a bool (whether the context is done), not an action.
        self.call_in(id, "proxy_on_done", &[id as i64])?;
        self.record(id, "on_done", None)?;
        let r = self.call_in(id, "proxy_on_delete", &[id as i64])?;
        self.record(id, "on_delete", r)?;
        Ok(())
    }

    /// The end of a stream as Envoy runs it: the access log (`on_log`), then `onDestroy`
    /// (`on_done`, `on_delete`).
    pub fn complete(&mut self, id: StreamId) -> Result<(), HostError> {
        self.log(id)?;
        self.destroy(id)
    }

    /// Calls `proxy_on_tick` on the root context.
    pub fn tick(&mut self) -> Result<(), HostError> {
        let root = self.backend.state().root_context_id;
        self.call_in(root, "proxy_on_tick", &[root as i64])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module importing `env.<name>` as a `() -> ()` function, assembled by hand.
    fn module_importing(name: &str) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type section: one () -> ()
        let mut imp = vec![1, 3];
        imp.extend_from_slice(b"env");
        imp.push(name.len() as u8);
        imp.extend_from_slice(name.as_bytes());
        imp.extend_from_slice(&[0, 0]); // a function of type 0
        m.push(2);
        m.push(imp.len() as u8);
        m.extend_from_slice(&imp);
        m
    }

    #[test]
    fn imports_envoy_lacks_refuse_the_module() {
        let host = Host::new(&module_importing("proxy_nope")).unwrap();
        assert_eq!(host.imports(), vec!["env.proxy_nope".to_string()]);
        match host.start(HostOptions::default()) {
            Err(HostError::MissingImport(name)) => assert_eq!(name, "env.proxy_nope"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("started"),
        }
    }

    #[test]
    fn wrong_signatures_refuse_the_module() {
        let host = Host::new(&module_importing("proxy_log")).unwrap();
        assert!(matches!(
            host.start(HostOptions::default()),
            Err(HostError::BadSignature(_))
        ));
    }

    #[test]
    fn modules_without_the_abi_marker_are_refused() {
        let host = Host::new(b"\0asm\x01\0\0\0").unwrap();
        assert!(matches!(
            host.start(HostOptions::default()),
            Err(HostError::Load(_))
        ));
    }
}
