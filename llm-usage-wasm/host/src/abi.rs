//! The host functions: proxy-wasm ABI 0.2.1 (module `env`) and the WASI preview1 subset
//! Envoy provides (module `wasi_snapshot_preview1`), written once against [`Guest`] so any
//! engine can bind them.
//!
//! Return codes follow Envoy (`source/extensions/common/wasm/context.cc`) and proxy-wasm
//! cpp-host (`src/exports.cc`), not only the spec text: e.g. `set_property` outside a stream
//! is `NotFound`, a counter increment ≤ 0 is `BadArgument`, a header map that does not exist
//! yet is `BadArgument` (but `NotFound` during `on_log`), a missing header is `NotFound`.

use crate::state::{HeaderMap, HostState, LogLine, StreamState};
use crate::stats::{MetricValue, CUSTOM_NAMESPACE};

/// Proxy-wasm status codes.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// Not found.
    pub const NOT_FOUND: i32 = 1;
    /// Bad argument.
    pub const BAD_ARGUMENT: i32 = 2;
    /// Guest memory out of bounds.
    pub const INVALID_MEMORY_ACCESS: i32 = 6;
    /// Compare-and-swap mismatch.
    pub const CAS_MISMATCH: i32 = 8;
    /// Host failure.
    pub const INTERNAL_FAILURE: i32 = 10;
    /// Not implemented.
    pub const UNIMPLEMENTED: i32 = 12;
}

const WASI_EBADF: i32 = 8;
const WASI_EFAULT: i32 = 21;
const WASI_ENOSYS: i32 = 52;
const WASI_ENOTSUP: i32 = 58;

/// A trap raised by a host function (the VM fails, as in Envoy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap(pub String);

/// What a host function needs from the engine: the state, guest memory and the allocator.
pub trait Guest {
    /// The host state.
    fn state(&mut self) -> &mut HostState;
    /// Reads guest memory; `None` when out of bounds.
    fn read(&mut self, ptr: u32, len: u32) -> Option<Vec<u8>>;
    /// Writes guest memory; `false` when out of bounds.
    fn write(&mut self, ptr: u32, data: &[u8]) -> bool;
    /// Calls the guest allocator (`malloc`, else `proxy_on_memory_allocate`).
    fn alloc(&mut self, size: u32) -> Result<u32, Trap>;
}

/// A wasm value type in a host function signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// i32.
    I32,
    /// i64.
    I64,
}

type Handler = fn(&mut dyn Guest, &[u64]) -> Result<i32, Trap>;

/// One host function: import module, name, signature and implementation.
pub struct HostFn {
    /// Import module (`env` or `wasi_snapshot_preview1`).
    pub module: &'static str,
    /// Import name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [Ty],
    /// Whether it returns an i32.
    pub returns: bool,
    /// The implementation.
    pub handler: Handler,
}

use Ty::{I32, I64};

macro_rules! hostfns {
    ($($module:literal $name:literal ($($p:ident),*) $ret:literal => $h:expr;)*) => {
        /// Every host function this host provides.
        pub static HOST_FUNCTIONS: &[HostFn] = &[
            $(HostFn { module: $module, name: $name, params: &[$($p),*], returns: $ret, handler: $h },)*
        ];
    };
}

hostfns! {
    "env" "proxy_log" (I32, I32, I32) true => proxy_log;
    "env" "proxy_get_log_level" (I32) true => proxy_get_log_level;
    "env" "proxy_get_current_time_nanoseconds" (I32) true => proxy_get_current_time;
    "env" "proxy_set_tick_period_milliseconds" (I32) true => proxy_set_tick_period;
    "env" "proxy_get_buffer_bytes" (I32, I32, I32, I32, I32) true => proxy_get_buffer_bytes;
    "env" "proxy_get_buffer_status" (I32, I32, I32) true => proxy_get_buffer_status;
    "env" "proxy_set_buffer_bytes" (I32, I32, I32, I32, I32) true => proxy_set_buffer_bytes;
    "env" "proxy_get_header_map_pairs" (I32, I32, I32) true => proxy_get_header_map_pairs;
    "env" "proxy_set_header_map_pairs" (I32, I32, I32) true => proxy_set_header_map_pairs;
    "env" "proxy_get_header_map_value" (I32, I32, I32, I32, I32) true => proxy_get_header_map_value;
    "env" "proxy_replace_header_map_value" (I32, I32, I32, I32, I32) true => proxy_replace_header_map_value;
    "env" "proxy_add_header_map_value" (I32, I32, I32, I32, I32) true => proxy_add_header_map_value;
    "env" "proxy_remove_header_map_value" (I32, I32, I32) true => proxy_remove_header_map_value;
    "env" "proxy_get_header_map_size" (I32, I32) true => proxy_get_header_map_size;
    "env" "proxy_get_property" (I32, I32, I32, I32) true => proxy_get_property;
    "env" "proxy_set_property" (I32, I32, I32, I32) true => proxy_set_property;
    "env" "proxy_get_shared_data" (I32, I32, I32, I32, I32) true => proxy_get_shared_data;
    "env" "proxy_set_shared_data" (I32, I32, I32, I32, I32) true => proxy_set_shared_data;
    "env" "proxy_register_shared_queue" (I32, I32, I32) true => unimplemented;
    "env" "proxy_resolve_shared_queue" (I32, I32, I32, I32, I32) true => not_found;
    "env" "proxy_dequeue_shared_queue" (I32, I32, I32) true => not_found;
    "env" "proxy_enqueue_shared_queue" (I32, I32, I32) true => not_found;
    "env" "proxy_continue_stream" (I32) true => proxy_continue_stream;
    "env" "proxy_close_stream" (I32) true => ok;
    "env" "proxy_send_local_response" (I32, I32, I32, I32, I32, I32, I32, I32) true => proxy_send_local_response;
    "env" "proxy_http_call" (I32, I32, I32, I32, I32, I32, I32, I32, I32, I32) true => bad_argument;
    "env" "proxy_grpc_call" (I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32) true => bad_argument;
    "env" "proxy_grpc_stream" (I32, I32, I32, I32, I32, I32, I32, I32, I32) true => bad_argument;
    "env" "proxy_grpc_send" (I32, I32, I32, I32) true => bad_argument;
    "env" "proxy_grpc_cancel" (I32) true => not_found;
    "env" "proxy_grpc_close" (I32) true => not_found;
    "env" "proxy_get_status" (I32, I32, I32) true => not_found;
    "env" "proxy_set_effective_context" (I32) true => proxy_set_effective_context;
    "env" "proxy_call_foreign_function" (I32, I32, I32, I32, I32, I32) true => not_found;
    "env" "proxy_done" () true => not_found;
    "env" "proxy_define_metric" (I32, I32, I32, I32) true => proxy_define_metric;
    "env" "proxy_get_metric" (I32, I32) true => proxy_get_metric;
    "env" "proxy_record_metric" (I32, I64) true => proxy_record_metric;
    "env" "proxy_increment_metric" (I32, I64) true => proxy_increment_metric;
    "wasi_snapshot_preview1" "fd_write" (I32, I32, I32, I32) true => wasi_fd_write;
    "wasi_snapshot_preview1" "fd_read" (I32, I32, I32, I32) true => wasi_enosys;
    "wasi_snapshot_preview1" "fd_seek" (I32, I64, I32, I32) true => wasi_ok;
    "wasi_snapshot_preview1" "fd_close" (I32) true => wasi_ok;
    "wasi_snapshot_preview1" "fd_fdstat_get" (I32, I32) true => wasi_fd_fdstat_get;
    "wasi_snapshot_preview1" "fd_prestat_get" (I32, I32) true => wasi_ebadf;
    "wasi_snapshot_preview1" "fd_prestat_dir_name" (I32, I32, I32) true => wasi_enosys;
    "wasi_snapshot_preview1" "environ_get" (I32, I32) true => wasi_ok;
    "wasi_snapshot_preview1" "environ_sizes_get" (I32, I32) true => wasi_zero_sizes;
    "wasi_snapshot_preview1" "args_get" (I32, I32) true => wasi_ok;
    "wasi_snapshot_preview1" "args_sizes_get" (I32, I32) true => wasi_zero_sizes;
    "wasi_snapshot_preview1" "clock_time_get" (I32, I64, I32) true => wasi_clock_time_get;
    "wasi_snapshot_preview1" "random_get" (I32, I32) true => wasi_random_get;
    "wasi_snapshot_preview1" "proc_exit" (I32) false => wasi_proc_exit;
    "wasi_snapshot_preview1" "sched_yield" () true => wasi_ok;
    "wasi_snapshot_preview1" "poll_oneoff" (I32, I32, I32, I32) true => wasi_enosys;
    "wasi_snapshot_preview1" "path_open" (I32, I32, I32, I32, I32, I64, I64, I32, I32) true => wasi_enosys;
}

/// The host function for an import, if this host provides it.
pub fn lookup(module: &str, name: &str) -> Option<&'static HostFn> {
    HOST_FUNCTIONS
        .iter()
        .find(|f| f.module == module && f.name == name)
}

fn a32(args: &[u64], i: usize) -> u32 {
    args.get(i).copied().unwrap_or(0) as u32
}

fn read_str(g: &mut dyn Guest, ptr: u32, len: u32) -> Option<Vec<u8>> {
    g.read(ptr, len)
}

fn write_u32(g: &mut dyn Guest, ptr: u32, v: u32) -> bool {
    g.write(ptr, &v.to_le_bytes())
}

/// Copies `data` into guest memory through the guest allocator and writes its pointer and
/// length at `ptr_ptr` and `len_ptr` (an empty value writes a null pointer and length 0).
fn copy_out(g: &mut dyn Guest, data: &[u8], ptr_ptr: u32, len_ptr: u32) -> Result<i32, Trap> {
    if data.is_empty() {
        if !write_u32(g, ptr_ptr, 0) || !write_u32(g, len_ptr, 0) {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        return Ok(status::OK);
    }
    let ptr = g.alloc(data.len() as u32)?;
    if ptr == 0 || !g.write(ptr, data) {
        return Ok(status::INVALID_MEMORY_ACCESS);
    }
    if !write_u32(g, ptr_ptr, ptr) || !write_u32(g, len_ptr, data.len() as u32) {
        return Ok(status::INVALID_MEMORY_ACCESS);
    }
    Ok(status::OK)
}

/// Serializes a header map (spec "Serialization").
pub fn serialize_pairs(map: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = (map.len() as u32).to_le_bytes().to_vec();
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses a serialized header map; `None` if malformed.
pub fn deserialize_pairs(buf: &[u8]) -> Option<HeaderMap> {
    if buf.len() < 4 {
        return Some(Vec::new());
    }
    let rd = |at: usize| -> Option<usize> {
        let b = buf.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let n = rd(0)?;
    let mut data = 4usize.checked_add(n.checked_mul(8)?)?;
    let mut out = Vec::new();
    for i in 0..n {
        let (kl, vl) = (rd(4 + 8 * i)?, rd(8 + 8 * i)?);
        let k = buf.get(data..data.checked_add(kl)?)?.to_vec();
        data += kl + 1;
        let v = buf.get(data..data.checked_add(vl)?)?.to_vec();
        data += vl + 1;
        out.push((k, v));
    }
    Some(out)
}

fn ok(_: &mut dyn Guest, _: &[u64]) -> Result<i32, Trap> {
    Ok(status::OK)
}
fn not_found(_: &mut dyn Guest, _: &[u64]) -> Result<i32, Trap> {
    Ok(status::NOT_FOUND)
}
fn bad_argument(_: &mut dyn Guest, _: &[u64]) -> Result<i32, Trap> {
    Ok(status::BAD_ARGUMENT)
}
fn unimplemented(_: &mut dyn Guest, _: &[u64]) -> Result<i32, Trap> {
    Ok(status::UNIMPLEMENTED)
}

fn proxy_log(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let level = a32(a, 0);
    if level > 5 {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some(msg) = read_str(g, a32(a, 1), a32(a, 2)) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let st = g.state();
    let context_id = st.context();
    st.logs.push(LogLine {
        level,
        context_id,
        message: String::from_utf8_lossy(&msg).into_owned(),
    });
    Ok(status::OK)
}

fn proxy_get_log_level(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let level = g.state().log_level;
    Ok(if write_u32(g, a32(a, 0), level) {
        status::OK
    } else {
        status::INVALID_MEMORY_ACCESS
    })
}

fn proxy_get_current_time(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let now = g.state().clock_ns;
    Ok(if g.write(a32(a, 0), &now.to_le_bytes()) {
        status::OK
    } else {
        status::INVALID_MEMORY_ACCESS
    })
}

fn proxy_set_tick_period(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    g.state().tick_period_ms = a32(a, 0);
    Ok(status::OK)
}

/// The buffer a `proxy_get_buffer_bytes` of `t` sees now, or `None` (NotFound).
fn buffer_of(st: &mut HostState, t: u32) -> Option<Vec<u8>> {
    match t {
        0 | 1 => {
            let root = st.root_context_id;
            let ctx = st.context();
            if ctx == root {
                return Some(Vec::new());
            }
            let s = st.streams.get(&ctx)?;
            if s.access_log_phase {
                return Some(Vec::new());
            }
            Some(if t == 0 {
                s.request_body.clone()
            } else {
                s.response_body.clone()
            })
        }
        6 => Some(st.vm_config.clone()),
        7 => st.in_configure.then(|| st.plugin_config.clone()),
        2..=5 | 8 => None,
        _ => None,
    }
}

fn proxy_get_buffer_bytes(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let (t, start, max) = (a32(a, 0), a32(a, 1) as usize, a32(a, 2) as usize);
    if t > 8 {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some(buf) = buffer_of(g.state(), t) else {
        return Ok(status::NOT_FOUND);
    };
    if start.checked_add(max).is_none() {
        return Ok(status::BAD_ARGUMENT);
    }
    if start > buf.len() {
        return Ok(status::BAD_ARGUMENT);
    }
    let end = (start + max).min(buf.len());
    if end == start {
        // Envoy returns Ok without touching the return pointers.
        return Ok(status::OK);
    }
    copy_out(g, &buf[start..end], a32(a, 3), a32(a, 4))
}

fn proxy_get_buffer_status(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let t = a32(a, 0);
    let Some(buf) = buffer_of(g.state(), t) else {
        return Ok(status::NOT_FOUND);
    };
    if !write_u32(g, a32(a, 1), buf.len() as u32) || !write_u32(g, a32(a, 2), 0) {
        return Ok(status::INVALID_MEMORY_ACCESS);
    }
    Ok(status::OK)
}

/// `proxy_set_buffer_bytes(type, start, length, data, size)` on the HTTP body buffers, as
/// Envoy does it.
///
/// Which buffer: Envoy `source/extensions/common/wasm/context.cc`, `Context::getBuffer`:
/// while the filter is buffering (its last body callback answered StopIterationAndBuffer),
/// the whole buffered body (`modifyDecodingBuffer` / `modifyEncodingBuffer`); otherwise
/// `request_body_buffer_` / `response_body_buffer_`, the current chunk, which
/// `Context::decodeData` / `encodeData` set for the call and clear when it answers Continue.
/// Outside those, no buffer instance is set and the write falls through to proxy-wasm
/// cpp-host's `BufferBase::copyFrom` (`include/proxy-wasm/context.h`): BadArgument.
///
/// How a write replaces bytes: Envoy `context.cc`, `Buffer::copyFrom(start, length, data)`:
/// with `start == 0` it drains `length` bytes from the front (all of them if `length` is
/// larger) and prepends `data`, so `(0, size, new)` replaces the whole buffer and
/// `(0, 0, data)` prepends; with `start` at or past the end it appends; any other `start` is
/// BadArgument (no write in the middle). What is in the buffer when the callback returns is
/// what goes on: the chunk on Continue, the whole buffered body when a later callback
/// continues.
///
/// The `content-length` header is not touched (nothing in Envoy's wasm `Context` adjusts
/// it): a filter that changes a body's length must have removed `content-length` while the
/// headers were still its to change, in the headers callback; Envoy's HTTP/1.1 codec then
/// sends the body chunked (see [`crate::Http1Framing`]).
fn proxy_set_buffer_bytes(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let (t, start, len) = (a32(a, 0), a32(a, 1) as usize, a32(a, 2) as usize);
    let Some(data) = read_str(g, a32(a, 3), a32(a, 4)) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let st = g.state();
    match t {
        0 | 1 => {}
        // Plugin configuration (outside on_configure) and HTTP call responses: no buffer.
        4 | 7 => return Ok(status::NOT_FOUND),
        // Read-only or absent buffers.
        _ => return Ok(status::BAD_ARGUMENT),
    }
    let Some(s) = st.stream() else {
        return Ok(status::BAD_ARGUMENT);
    };
    let current = if t == 0 {
        s.in_request_body || s.request_buffering
    } else {
        s.in_response_body || s.response_buffering
    };
    if !current || s.access_log_phase {
        return Ok(status::BAD_ARGUMENT);
    }
    let buf = if t == 0 {
        &mut s.request_body
    } else {
        &mut s.response_body
    };
    if start == 0 {
        let drop = len.min(buf.len());
        buf.drain(..drop);
        buf.splice(0..0, data);
    } else if start >= buf.len() {
        buf.extend_from_slice(&data);
    } else {
        return Ok(status::BAD_ARGUMENT);
    }
    s.modified = true;
    Ok(status::OK)
}

/// The header map `t` of the current stream: `Err(status)` when it is not available.
fn map_of(st: &mut HostState, t: u32) -> Result<Option<&mut HeaderMap>, i32> {
    if t > 7 {
        return Err(status::BAD_ARGUMENT);
    }
    let Some(s) = st.stream() else {
        return Ok(None);
    };
    let log = s.access_log_phase;
    let live = s.live_maps;
    // Outside the access log, a map is there only while the filter can reach it (Envoy
    // `Context::getMap` / `getConstMap` read `request_headers_` and friends, which the
    // callbacks clear once they answer Continue); in the access log, the copies Envoy keeps
    // for it (request headers, response headers and trailers).
    let m = match t {
        0 if log || live.request_headers => s.request_headers.as_mut(),
        1 if log => None,
        1 if live.request_trailers => s.request_trailers.as_mut(),
        2 if log || live.response_headers => s.response_headers.as_mut(),
        3 if log || live.response_trailers => s.response_trailers.as_mut(),
        _ => None,
    };
    Ok(m)
}

fn map_missing_status(st: &mut HostState) -> i32 {
    if st.stream().is_some_and(|s| s.access_log_phase) {
        status::NOT_FOUND
    } else {
        status::BAD_ARGUMENT
    }
}

fn proxy_get_header_map_pairs(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let bytes = match map_of(g.state(), a32(a, 0)) {
        Err(code) => return Ok(code),
        Ok(None) => Vec::new(),
        Ok(Some(m)) if m.is_empty() => Vec::new(),
        Ok(Some(m)) => serialize_pairs(m),
    };
    copy_out(g, &bytes, a32(a, 1), a32(a, 2))
}

fn proxy_set_header_map_pairs(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let Some(buf) = read_str(g, a32(a, 1), a32(a, 2)) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let Some(pairs) = deserialize_pairs(&buf) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let st = g.state();
    match map_of(st, a32(a, 0)) {
        Err(code) => Ok(code),
        Ok(None) => Ok(status::BAD_ARGUMENT),
        Ok(Some(m)) => {
            *m = pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            mark_modified(st);
            Ok(status::OK)
        }
    }
}

fn mark_modified(st: &mut HostState) {
    if let Some(s) = st.stream() {
        s.modified = true;
    }
}

fn proxy_get_header_map_value(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let Some(key) = read_str(g, a32(a, 1), a32(a, 2)) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let key = key.to_ascii_lowercase();
    let st = g.state();
    let value = match map_of(st, a32(a, 0)) {
        Err(code) => return Ok(code),
        Ok(None) => return Ok(map_missing_status(st)),
        Ok(Some(m)) => match m.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => v.clone(),
            None => return Ok(status::NOT_FOUND),
        },
    };
    copy_out(g, &value, a32(a, 3), a32(a, 4))
}

fn edit_map(
    g: &mut dyn Guest,
    a: &[u64],
    with_value: bool,
    f: fn(&mut HeaderMap, Vec<u8>, Vec<u8>),
) -> Result<i32, Trap> {
    let Some(key) = read_str(g, a32(a, 1), a32(a, 2)) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let value = if with_value {
        match read_str(g, a32(a, 3), a32(a, 4)) {
            Some(v) => v,
            None => return Ok(status::INVALID_MEMORY_ACCESS),
        }
    } else {
        Vec::new()
    };
    let st = g.state();
    let in_log = st.stream().is_some_and(|s| s.access_log_phase);
    match map_of(st, a32(a, 0)) {
        Err(code) => Ok(code),
        Ok(None) => Ok(status::BAD_ARGUMENT),
        Ok(Some(_)) if in_log => Ok(status::BAD_ARGUMENT),
        Ok(Some(m)) => {
            f(m, key.to_ascii_lowercase(), value);
            mark_modified(st);
            Ok(status::OK)
        }
    }
}

fn proxy_replace_header_map_value(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    edit_map(g, a, true, |m, k, v| {
        m.retain(|(mk, _)| *mk != k);
        m.push((k, v));
    })
}

fn proxy_add_header_map_value(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    edit_map(g, a, true, |m, k, v| m.push((k, v)))
}

fn proxy_remove_header_map_value(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    edit_map(g, a, false, |m, k, _| m.retain(|(mk, _)| *mk != k))
}

fn proxy_get_header_map_size(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let size = match map_of(g.state(), a32(a, 0)) {
        Err(code) => return Ok(code),
        Ok(None) => return Ok(status::BAD_ARGUMENT),
        Ok(Some(m)) => m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() as u32,
    };
    Ok(if write_u32(g, a32(a, 1), size) {
        status::OK
    } else {
        status::INVALID_MEMORY_ACCESS
    })
}

fn header(map: &Option<HeaderMap>, name: &[u8]) -> Option<Vec<u8>> {
    map.as_ref()?
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Envoy attributes of a stream (`request.*`, `response.*`).
fn stream_attribute(s: &StreamState, parts: &[&[u8]]) -> Option<Vec<u8>> {
    match parts {
        [b"request", b"path"] => header(&s.request_headers, b":path"),
        [b"request", b"url_path"] => {
            let p = header(&s.request_headers, b":path")?;
            let end = p.iter().position(|&b| b == b'?').unwrap_or(p.len());
            Some(p[..end].to_vec())
        }
        [b"request", b"method"] => header(&s.request_headers, b":method"),
        [b"request", b"host"] => header(&s.request_headers, b":authority"),
        [b"request", b"scheme"] => header(&s.request_headers, b":scheme"),
        [b"request", b"headers", name] => header(&s.request_headers, &name.to_ascii_lowercase()),
        [b"request", b"headers"] => s.request_headers.as_ref().map(|m| serialize_pairs(m)),
        [b"response", b"code"] => {
            let code = header(&s.response_headers, b":status")?;
            let n: i64 = std::str::from_utf8(&code).ok()?.parse().ok()?;
            Some(n.to_le_bytes().to_vec())
        }
        [b"response", b"headers", name] => header(&s.response_headers, &name.to_ascii_lowercase()),
        [b"response", b"headers"] => s.response_headers.as_ref().map(|m| serialize_pairs(m)),
        _ => None,
    }
}

fn lookup_property(st: &mut HostState, path: &[u8]) -> Option<Vec<u8>> {
    if let Some(v) = st.properties.get(path) {
        return Some(v.clone());
    }
    let parts: Vec<&[u8]> = path.split(|&b| b == 0).collect();
    match parts.as_slice() {
        [b"plugin_name"] => return Some(st.plugin_name.clone().into_bytes()),
        [b"plugin_root_id"] => return Some(st.root_id.clone().into_bytes()),
        [b"plugin_vm_id"] => return Some(st.vm_id.clone().into_bytes()),
        _ => {}
    }
    let s = st.stream()?;
    if let Some(v) = stream_attribute(s, &parts) {
        return Some(v);
    }
    // Envoy looks an unknown top-level name up as filter state `wasm.<name>`.
    if parts.len() == 1 {
        let mut key = b"wasm.".to_vec();
        key.extend_from_slice(parts[0]);
        return s.filter_state.get(&key).cloned();
    }
    None
}

fn proxy_get_property(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let Some(path) = read_str(g, a32(a, 0), a32(a, 1)) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    match lookup_property(g.state(), &path) {
        Some(v) => copy_out(g, &v, a32(a, 2), a32(a, 3)),
        None => Ok(status::NOT_FOUND),
    }
}

fn proxy_set_property(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let (Some(path), Some(value)) = (
        read_str(g, a32(a, 0), a32(a, 1)),
        read_str(g, a32(a, 2), a32(a, 3)),
    ) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let st = g.state();
    // No stream info in the root context: Envoy answers NotFound.
    let Some(s) = st.stream() else {
        return Ok(status::NOT_FOUND);
    };
    let mut key = b"wasm.".to_vec();
    key.extend_from_slice(&path);
    s.filter_state.insert(key, value);
    Ok(status::OK)
}

fn proxy_get_shared_data(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let Some(key) = read_str(g, a32(a, 0), a32(a, 1)) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let st = g.state();
    let Some((value, cas)) = st.shared_data.get(&st.vm_id, &key) else {
        return Ok(status::NOT_FOUND);
    };
    let r = copy_out(g, &value, a32(a, 2), a32(a, 3))?;
    if r != status::OK {
        return Ok(r);
    }
    Ok(if write_u32(g, a32(a, 4), cas) {
        status::OK
    } else {
        status::INVALID_MEMORY_ACCESS
    })
}

/// cpp-host `SharedData::set` (see [`crate::shared`]): refused with `CasMismatch` when `cas`
/// is non-zero and the key exists with another stamp.
fn proxy_set_shared_data(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let (Some(key), Some(value)) = (
        read_str(g, a32(a, 0), a32(a, 1)),
        read_str(g, a32(a, 2), a32(a, 3)),
    ) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let st = g.state();
    Ok(
        match st.shared_data.set(&st.vm_id, &key, &value, a32(a, 4)) {
            Ok(()) => status::OK,
            Err(_) => status::CAS_MISMATCH,
        },
    )
}

fn proxy_continue_stream(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let t = a32(a, 0);
    let st = g.state();
    if t > 3 {
        return Ok(status::BAD_ARGUMENT);
    }
    let keep = st.keep_forwarded;
    if let Some(s) = st.stream() {
        match t {
            0 => {
                s.request_buffering = false;
                let body = std::mem::take(&mut s.request_body);
                if keep {
                    s.forwarded_request.extend_from_slice(&body);
                }
                s.continue_request_headers();
            }
            1 => {
                s.response_buffering = false;
                let body = std::mem::take(&mut s.response_body);
                if keep {
                    s.forwarded_response.extend_from_slice(&body);
                }
                s.continue_response_headers();
            }
            _ => {}
        }
        s.stalled = false;
    }
    Ok(if t == 3 {
        status::UNIMPLEMENTED
    } else {
        status::OK
    })
}

/// `proxy_send_local_response(status, details, details_len, body, body_len, headers,
/// headers_len, grpc_status)`. Envoy (`Context::sendLocalResponse`,
/// `source/extensions/common/wasm/context.cc`) copies the headers with lower-cased names and
/// defers the reply to an after-VM-call action, so it is sent when the current callback has
/// returned ([`crate::Vm`] does that); with no stream (the root context has no decoder
/// callbacks) nothing is sent and the answer is still Ok.
fn proxy_send_local_response(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let (Some(details), Some(body), Some(headers)) = (
        read_str(g, a32(a, 1), a32(a, 2)),
        read_str(g, a32(a, 3), a32(a, 4)),
        read_str(g, a32(a, 5), a32(a, 6)),
    ) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let Some(headers) = deserialize_pairs(&headers) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let reply = crate::state::LocalResponse {
        status: a32(a, 0),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        body,
        grpc_status: a32(a, 7) as i32,
        details: String::from_utf8_lossy(&details).into_owned(),
    };
    if let Some(s) = g.state().stream() {
        s.pending_local_response = Some(reply);
    }
    Ok(status::OK)
}

fn proxy_set_effective_context(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let id = a32(a, 0);
    let st = g.state();
    if id != st.root_context_id && !st.streams.contains_key(&id) {
        return Ok(status::BAD_ARGUMENT);
    }
    st.effective_context = Some(id);
    Ok(status::OK)
}

// Envoy's metric ids carry the type in the low two bits and grow by 4 per definition.
const METRIC_TYPE_MASK: u32 = 0x3;
const METRIC_ID_INCREMENT: u32 = 0x4;

fn proxy_define_metric(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let t = a32(a, 0);
    if t > 2 {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some(name) = read_str(g, a32(a, 1), a32(a, 2)) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let full = format!("{CUSTOM_NAMESPACE}{}", String::from_utf8_lossy(&name));
    let st = g.state();
    let next = st.metric_ids.len() as u32 + 1;
    let id = next * METRIC_ID_INCREMENT + t;
    st.metric_ids.insert(id, full.clone());
    st.stats.metrics.entry(full).or_insert(match t {
        0 => MetricValue::Counter(0),
        1 => MetricValue::Gauge(0),
        _ => MetricValue::Histogram(Vec::new()),
    });
    Ok(if write_u32(g, a32(a, 3), id) {
        status::OK
    } else {
        status::INVALID_MEMORY_ACCESS
    })
}

fn metric_mut(st: &mut HostState, id: u32) -> Option<&mut MetricValue> {
    let name = st.metric_ids.get(&id)?;
    st.stats.metrics.get_mut(name)
}

fn proxy_increment_metric(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let id = a32(a, 0);
    let offset = a.get(1).copied().unwrap_or(0) as i64;
    let st = g.state();
    match id & METRIC_TYPE_MASK {
        0 | 1 => {}
        _ => return Ok(status::BAD_ARGUMENT),
    }
    match metric_mut(st, id) {
        None => Ok(status::NOT_FOUND),
        Some(MetricValue::Counter(v)) => {
            if offset > 0 {
                *v = v.saturating_add(offset as u64);
                Ok(status::OK)
            } else {
                Ok(status::BAD_ARGUMENT)
            }
        }
        Some(MetricValue::Gauge(v)) => {
            *v = if offset > 0 {
                v.saturating_add(offset as u64)
            } else {
                v.saturating_sub(offset.unsigned_abs())
            };
            Ok(status::OK)
        }
        Some(MetricValue::Histogram(_)) => Ok(status::BAD_ARGUMENT),
    }
}

fn proxy_record_metric(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let id = a32(a, 0);
    let value = a.get(1).copied().unwrap_or(0);
    match metric_mut(g.state(), id) {
        None => Ok(status::NOT_FOUND),
        Some(MetricValue::Counter(v)) => {
            *v = v.saturating_add(value);
            Ok(status::OK)
        }
        Some(MetricValue::Gauge(v)) => {
            *v = value;
            Ok(status::OK)
        }
        Some(MetricValue::Histogram(h)) => {
            h.push(value);
            Ok(status::OK)
        }
    }
}

fn proxy_get_metric(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let id = a32(a, 0);
    let v = match metric_mut(g.state(), id) {
        None => return Ok(status::NOT_FOUND),
        Some(MetricValue::Counter(v)) | Some(MetricValue::Gauge(v)) => *v,
        Some(MetricValue::Histogram(_)) => return Ok(status::BAD_ARGUMENT),
    };
    Ok(if g.write(a32(a, 1), &v.to_le_bytes()) {
        status::OK
    } else {
        status::INVALID_MEMORY_ACCESS
    })
}

fn wasi_ok(_: &mut dyn Guest, _: &[u64]) -> Result<i32, Trap> {
    Ok(0)
}
fn wasi_enosys(_: &mut dyn Guest, _: &[u64]) -> Result<i32, Trap> {
    Ok(WASI_ENOSYS)
}
fn wasi_ebadf(_: &mut dyn Guest, _: &[u64]) -> Result<i32, Trap> {
    Ok(WASI_EBADF)
}

fn wasi_zero_sizes(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    Ok(
        if write_u32(g, a32(a, 0), 0) && write_u32(g, a32(a, 1), 0) {
            0
        } else {
            WASI_EFAULT
        },
    )
}

fn wasi_fd_write(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let (fd, iovs, n, nwritten) = (a32(a, 0), a32(a, 1), a32(a, 2), a32(a, 3));
    let level = match fd {
        1 => 2,
        2 => 4,
        _ => return Ok(WASI_EBADF),
    };
    let mut text = Vec::new();
    for i in 0..n {
        let Some(iov) = g.read(iovs + i * 8, 8) else {
            return Ok(WASI_EFAULT);
        };
        let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let Some(bytes) = g.read(ptr, len) else {
            return Ok(WASI_EFAULT);
        };
        text.extend_from_slice(&bytes);
    }
    let written = text.len() as u32;
    if text.last() == Some(&b'\n') {
        text.pop();
    }
    if !text.is_empty() {
        let st = g.state();
        let context_id = st.context();
        st.logs.push(LogLine {
            level,
            context_id,
            message: String::from_utf8_lossy(&text).into_owned(),
        });
    }
    Ok(if write_u32(g, nwritten, written) {
        0
    } else {
        WASI_EFAULT
    })
}

fn wasi_fd_fdstat_get(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    if a32(a, 0) != 1 && a32(a, 0) != 2 {
        return Ok(WASI_EBADF);
    }
    let mut stat = [0u8; 24];
    stat[8] = 64; // fs_rights_base = FD_WRITE
    Ok(if g.write(a32(a, 1), &stat) {
        0
    } else {
        WASI_EFAULT
    })
}

fn wasi_clock_time_get(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    if a32(a, 0) != 0 {
        return Ok(WASI_ENOTSUP);
    }
    let now = g.state().clock_ns;
    Ok(if g.write(a32(a, 2), &now.to_le_bytes()) {
        0
    } else {
        WASI_EFAULT
    })
}

fn wasi_random_get(g: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    let (ptr, len) = (a32(a, 0), a32(a, 1));
    let st = g.state();
    let mut bytes = Vec::with_capacity(len as usize);
    while bytes.len() < len as usize {
        // xorshift64*: deterministic, so runs are reproducible.
        let mut x = st.random_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        st.random_state = x;
        bytes.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len as usize);
    Ok(if g.write(ptr, &bytes) { 0 } else { WASI_EFAULT })
}

fn wasi_proc_exit(_: &mut dyn Guest, a: &[u64]) -> Result<i32, Trap> {
    Err(Trap(format!("proc_exit({}) called", a32(a, 0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guest memory as a plain vector with a bump allocator.
    struct FakeGuest {
        state: HostState,
        mem: Vec<u8>,
        next: u32,
    }

    impl FakeGuest {
        fn new() -> FakeGuest {
            FakeGuest {
                state: HostState::new(),
                mem: vec![0; 1 << 16],
                next: 1024,
            }
        }
        fn put(&mut self, data: &[u8]) -> (u64, u64) {
            let p = self.alloc(data.len() as u32).unwrap();
            self.write(p, data);
            (p as u64, data.len() as u64)
        }
        fn u32_at(&self, p: u32) -> u32 {
            let p = p as usize;
            u32::from_le_bytes([
                self.mem[p],
                self.mem[p + 1],
                self.mem[p + 2],
                self.mem[p + 3],
            ])
        }
        fn returned(&self, ptr_ptr: u32, len_ptr: u32) -> Vec<u8> {
            let (p, l) = (self.u32_at(ptr_ptr) as usize, self.u32_at(len_ptr) as usize);
            self.mem[p..p + l].to_vec()
        }
        fn in_stream(&mut self) -> &mut StreamState {
            self.state.current_context = 2;
            self.state.streams.entry(2).or_default()
        }
    }

    impl Guest for FakeGuest {
        fn state(&mut self) -> &mut HostState {
            &mut self.state
        }
        fn read(&mut self, ptr: u32, len: u32) -> Option<Vec<u8>> {
            self.mem
                .get(ptr as usize..(ptr as usize).checked_add(len as usize)?)
                .map(<[u8]>::to_vec)
        }
        fn write(&mut self, ptr: u32, data: &[u8]) -> bool {
            match self.mem.get_mut(ptr as usize..ptr as usize + data.len()) {
                Some(dst) => {
                    dst.copy_from_slice(data);
                    true
                }
                None => false,
            }
        }
        fn alloc(&mut self, size: u32) -> Result<u32, Trap> {
            let p = self.next;
            self.next += size.max(1);
            Ok(p)
        }
    }

    const RET: u64 = 16; // ret_ptr at 16, ret_len at 20
    const RET_LEN: u64 = 20;

    #[test]
    fn set_property_needs_a_stream_and_prefixes_wasm() {
        let mut g = FakeGuest::new();
        let (pp, pl) = g.put(b"asm.llmproxy.request_model");
        let (vp, vl) = g.put(b"qwen-turbo");
        g.state.current_context = 1;
        assert_eq!(
            proxy_set_property(&mut g, &[pp, pl, vp, vl]).unwrap(),
            status::NOT_FOUND
        );
        g.in_stream();
        assert_eq!(
            proxy_set_property(&mut g, &[pp, pl, vp, vl]).unwrap(),
            status::OK
        );
        let fs = &g.state.streams[&2].filter_state;
        assert_eq!(
            fs[&b"wasm.asm.llmproxy.request_model".to_vec()],
            b"qwen-turbo"
        );
        // And Envoy reads it back as an unknown top-level property.
        assert_eq!(
            proxy_get_property(&mut g, &[pp, pl, RET, RET_LEN]).unwrap(),
            status::OK
        );
        assert_eq!(g.returned(16, 20), b"qwen-turbo");
    }

    #[test]
    fn node_metadata_property_paths() {
        let mut g = FakeGuest::new();
        g.state.properties.insert(
            b"xds\0node\0metadata\0WORKLOAD_NAME".to_vec(),
            b"sleep".to_vec(),
        );
        g.state.current_context = 1;
        let (pp, pl) = g.put(b"xds\0node\0metadata\0WORKLOAD_NAME");
        assert_eq!(
            proxy_get_property(&mut g, &[pp, pl, RET, RET_LEN]).unwrap(),
            status::OK
        );
        assert_eq!(g.returned(16, 20), b"sleep");
        let (pp, pl) = g.put(b"node\0metadata\0WORKLOAD_NAME");
        assert_eq!(
            proxy_get_property(&mut g, &[pp, pl, RET, RET_LEN]).unwrap(),
            status::NOT_FOUND
        );
    }

    #[test]
    fn metric_rules_follow_envoy() {
        let mut g = FakeGuest::new();
        let (np, nl) = g.put(b"c");
        assert_eq!(
            proxy_define_metric(&mut g, &[0, np, nl, 40]).unwrap(),
            status::OK
        );
        let counter = g.u32_at(40) as u64;
        assert_eq!(counter & 3, 0, "counter ids carry type 0 in the low bits");
        assert_eq!(
            proxy_increment_metric(&mut g, &[counter, 0]).unwrap(),
            status::BAD_ARGUMENT
        );
        assert_eq!(
            proxy_increment_metric(&mut g, &[counter, (-1i64) as u64]).unwrap(),
            status::BAD_ARGUMENT
        );
        assert_eq!(
            proxy_increment_metric(&mut g, &[counter, 3]).unwrap(),
            status::OK
        );
        assert_eq!(
            proxy_record_metric(&mut g, &[counter, 2]).unwrap(),
            status::OK
        );
        assert_eq!(g.state.stats.counter("c"), Some(5));
        assert_eq!(
            proxy_increment_metric(&mut g, &[counter + 4, 1]).unwrap(),
            status::NOT_FOUND
        );
        // Defining the same name again gives a new id for the same stat.
        assert_eq!(
            proxy_define_metric(&mut g, &[0, np, nl, 40]).unwrap(),
            status::OK
        );
        assert_ne!(g.u32_at(40) as u64, counter);
        assert_eq!(g.state.stats.metrics.len(), 1);
        let (hp, hl) = g.put(b"h");
        assert_eq!(
            proxy_define_metric(&mut g, &[2, hp, hl, 44]).unwrap(),
            status::OK
        );
        let hist = g.u32_at(44) as u64;
        assert_eq!(
            proxy_increment_metric(&mut g, &[hist, 1]).unwrap(),
            status::BAD_ARGUMENT
        );
        assert_eq!(proxy_record_metric(&mut g, &[hist, 7]).unwrap(), status::OK);
        assert_eq!(g.state.stats.histogram("h"), Some(&[7u64][..]));
        assert_eq!(
            proxy_define_metric(&mut g, &[3, hp, hl, 44]).unwrap(),
            status::BAD_ARGUMENT
        );
    }

    #[test]
    fn buffers_follow_envoy() {
        let mut g = FakeGuest::new();
        g.in_stream().response_body = b"hello".to_vec();
        assert_eq!(
            proxy_get_buffer_bytes(&mut g, &[1, 1, 3, RET, RET_LEN]).unwrap(),
            status::OK
        );
        assert_eq!(g.returned(16, 20), b"ell");
        assert_eq!(
            proxy_get_buffer_bytes(&mut g, &[1, 6, 1, RET, RET_LEN]).unwrap(),
            status::BAD_ARGUMENT
        );
        assert_eq!(
            proxy_get_buffer_bytes(&mut g, &[9, 0, 1, RET, RET_LEN]).unwrap(),
            status::BAD_ARGUMENT
        );
        // The plugin configuration exists only during on_configure.
        assert_eq!(
            proxy_get_buffer_bytes(&mut g, &[7, 0, 10, RET, RET_LEN]).unwrap(),
            status::NOT_FOUND
        );
    }

    #[test]
    fn body_writes_follow_envoy_copy_from() {
        let mut g = FakeGuest::new();
        let (dp, dl) = g.put(b"XY");
        let set = |g: &mut FakeGuest, t: u64, start: u64, len: u64| {
            proxy_set_buffer_bytes(g, &[t, start, len, dp, dl]).unwrap()
        };
        // No body callback running and nothing buffered: no buffer to write.
        g.in_stream().request_body = b"hello".to_vec();
        assert_eq!(set(&mut g, 0, 0, 5), status::BAD_ARGUMENT);
        assert!(!g.state.streams[&2].modified);
        g.in_stream().in_request_body = true;
        // (0, n): drain n from the front, then prepend.
        assert_eq!(set(&mut g, 0, 0, 2), status::OK);
        assert_eq!(g.state.streams[&2].request_body, b"XYllo");
        // (0, 0): prepend.
        assert_eq!(set(&mut g, 0, 0, 0), status::OK);
        assert_eq!(g.state.streams[&2].request_body, b"XYXYllo");
        // (0, more than there is): replace all.
        assert_eq!(set(&mut g, 0, 0, 100), status::OK);
        assert_eq!(g.state.streams[&2].request_body, b"XY");
        // At or past the end: append.
        assert_eq!(set(&mut g, 0, 2, 0), status::OK);
        assert_eq!(set(&mut g, 0, 99, 5), status::OK);
        assert_eq!(g.state.streams[&2].request_body, b"XYXYXY");
        // In the middle: refused, nothing changed.
        assert_eq!(set(&mut g, 0, 3, 1), status::BAD_ARGUMENT);
        assert_eq!(g.state.streams[&2].request_body, b"XYXYXY");
        assert!(g.state.streams[&2].modified);
        // The response buffer is reachable while it is being buffered, in any callback.
        let s = g.in_stream();
        s.in_request_body = false;
        s.response_body = b"abc".to_vec();
        assert_eq!(set(&mut g, 1, 0, 3), status::BAD_ARGUMENT);
        g.in_stream().response_buffering = true;
        assert_eq!(set(&mut g, 1, 0, 3), status::OK);
        assert_eq!(g.state.streams[&2].response_body, b"XY");
        // Not in the access log, not other buffer types.
        g.in_stream().access_log_phase = true;
        assert_eq!(set(&mut g, 1, 0, 3), status::BAD_ARGUMENT);
        assert_eq!(set(&mut g, 6, 0, 0), status::BAD_ARGUMENT);
        assert_eq!(set(&mut g, 7, 0, 0), status::NOT_FOUND);
    }

    #[test]
    fn header_maps_follow_envoy() {
        let mut g = FakeGuest::new();
        let (kp, kl) = g.put(b"Content-Type");
        g.in_stream();
        // Response headers not delivered yet: BadArgument; during on_log: NotFound.
        assert_eq!(
            proxy_get_header_map_value(&mut g, &[2, kp, kl, RET, RET_LEN]).unwrap(),
            status::BAD_ARGUMENT
        );
        g.in_stream().access_log_phase = true;
        assert_eq!(
            proxy_get_header_map_value(&mut g, &[2, kp, kl, RET, RET_LEN]).unwrap(),
            status::NOT_FOUND
        );
        let s = g.in_stream();
        s.access_log_phase = false;
        s.response_headers = Some(vec![(
            b"content-type".to_vec(),
            b"text/event-stream".to_vec(),
        )]);
        // Delivered but already continued: out of the filter's reach.
        assert_eq!(
            proxy_get_header_map_value(&mut g, &[2, kp, kl, RET, RET_LEN]).unwrap(),
            status::BAD_ARGUMENT
        );
        g.in_stream().live_maps.response_headers = true;
        assert_eq!(
            proxy_get_header_map_value(&mut g, &[2, kp, kl, RET, RET_LEN]).unwrap(),
            status::OK
        );
        assert_eq!(g.returned(16, 20), b"text/event-stream");
        let (mp, ml) = g.put(b"x-missing");
        assert_eq!(
            proxy_get_header_map_value(&mut g, &[2, mp, ml, RET, RET_LEN]).unwrap(),
            status::NOT_FOUND
        );
        assert_eq!(
            proxy_get_header_map_pairs(&mut g, &[2, RET, RET_LEN]).unwrap(),
            status::OK
        );
        let pairs = deserialize_pairs(&g.returned(16, 20)).unwrap();
        assert_eq!(
            pairs,
            vec![(b"content-type".to_vec(), b"text/event-stream".to_vec())]
        );
    }

    #[test]
    fn wasi_output_becomes_logs() {
        let mut g = FakeGuest::new();
        let (dp, dl) = g.put(b"panicked at x\n");
        let mut iov = (dp as u32).to_le_bytes().to_vec();
        iov.extend_from_slice(&(dl as u32).to_le_bytes());
        let (ip, _) = g.put(&iov);
        assert_eq!(wasi_fd_write(&mut g, &[2, ip, 1, 40]).unwrap(), 0);
        assert_eq!(g.u32_at(40), dl as u32);
        assert_eq!(g.state.logs[0].level, 4);
        assert_eq!(g.state.logs[0].message, "panicked at x");
        assert_eq!(wasi_fd_write(&mut g, &[3, ip, 1, 40]).unwrap(), WASI_EBADF);
        assert!(wasi_proc_exit(&mut g, &[1]).is_err());
        assert_eq!(
            wasi_clock_time_get(&mut g, &[1, 0, 40]).unwrap(),
            WASI_ENOTSUP
        );
    }

    #[test]
    fn pairs_round_trip() {
        let m: HeaderMap = vec![
            (b":path".to_vec(), b"/x".to_vec()),
            (b"a".to_vec(), Vec::new()),
        ];
        assert_eq!(deserialize_pairs(&serialize_pairs(&m)).unwrap(), m);
        assert!(deserialize_pairs(&[1, 0, 0, 0]).is_none());
    }

    #[test]
    fn table_has_no_duplicates() {
        for (i, f) in HOST_FUNCTIONS.iter().enumerate() {
            assert!(
                HOST_FUNCTIONS[i + 1..]
                    .iter()
                    .all(|g| (g.module, g.name) != (f.module, f.name)),
                "{}",
                f.name
            );
        }
        assert!(lookup("env", "proxy_log").is_some());
        assert!(lookup("env", "proxy_nope").is_none());
    }
}
