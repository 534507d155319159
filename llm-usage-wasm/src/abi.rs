//! Raw proxy-wasm ABI 0.2.1 host calls that never panic.
//!
//! The SDK's `hostcalls` wrappers panic on any status they do not expect, and its `Status`
//! enum has no variant for some statuses a host may return (`InvalidMemoryAccess` 6,
//! `Unimplemented` 12), so reading such a status into it would be undefined behaviour.
//! This module declares the few imports the filter needs with plain integer types and turns
//! every status into a `Result`. The SDK is still used for its dispatcher (the exported
//! `proxy_on_*` callbacks) and its allocator (`proxy_on_memory_allocate`), which the host
//! calls to hand buffers to the filter.
//!
//! On targets other than `wasm32` (host-side unit tests, `cargo clippy`) every call returns
//! [`Status::Unimplemented`]: there is no proxy to talk to.

/// A proxy-wasm status code other than `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 1: the key, property, buffer or map does not exist.
    NotFound,
    /// 2: the host refused an argument.
    BadArgument,
    /// 6: the host could not read or write guest memory.
    InvalidMemoryAccess,
    /// 7: nothing there.
    Empty,
    /// 8: a shared-data write whose CAS stamp is stale.
    CasMismatch,
    /// 10: the host failed internally.
    InternalFailure,
    /// 12: the host does not implement the call.
    Unimplemented,
    /// Any other code.
    Other(u32),
}

impl Status {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn from_code(code: u32) -> Result<(), Status> {
        Err(match code {
            0 => return Ok(()),
            1 => Status::NotFound,
            2 => Status::BadArgument,
            6 => Status::InvalidMemoryAccess,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            10 => Status::InternalFailure,
            12 => Status::Unimplemented,
            other => Status::Other(other),
        })
    }
}

/// Buffer types (spec "BufferType").
pub mod buffer {
    /// The current HTTP request body chunk.
    pub const HTTP_REQUEST_BODY: u32 = 0;
    /// The current HTTP response body chunk.
    pub const HTTP_RESPONSE_BODY: u32 = 1;
    /// The plugin configuration.
    pub const PLUGIN_CONFIGURATION: u32 = 7;
}

/// Header map types (spec "MapType").
pub mod map {
    /// HTTP request headers (with pseudo-headers).
    pub const HTTP_REQUEST_HEADERS: u32 = 0;
    /// HTTP response headers (with `:status`).
    pub const HTTP_RESPONSE_HEADERS: u32 = 2;
}

/// Metric types (spec "MetricType").
pub mod metric {
    /// A monotonically increasing counter.
    pub const COUNTER: u32 = 0;
    /// A histogram of recorded values.
    pub const HISTOGRAM: u32 = 2;
}

/// Log levels (spec "LogLevel").
pub mod level {
    /// Informational.
    pub const INFO: u32 = 2;
    /// Warning.
    pub const WARN: u32 = 3;
    /// Error.
    pub const ERROR: u32 = 4;
}

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        pub fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_buffer_data: *mut *mut u8,
            return_buffer_size: *mut usize,
        ) -> u32;
        pub fn proxy_set_buffer_bytes(
            buffer_type: u32,
            start: usize,
            size: usize,
            buffer_data: *const u8,
            buffer_size: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        pub fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_define_metric(
            metric_type: u32,
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        pub fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
        pub fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
        pub fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
    }
}

/// Takes ownership of a buffer the host wrote through the guest allocator.
#[cfg(target_arch = "wasm32")]
fn take_host_buffer(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the host obtained `ptr` from the SDK's exported `proxy_on_memory_allocate(len)`,
    // which leaks a boxed slice of exactly `len` bytes from the global allocator, and then
    // filled it. Nothing else owns that allocation, so rebuilding a Vec with capacity `len`
    // takes ownership of it with the same layout it was allocated with.
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

/// Writes a log line at `level`. The status is ignored: there is nowhere to report it.
pub fn log(level: u32, message: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the pointer and length describe a live `&str` for the duration of the call;
    // the host only reads it.
    unsafe {
        imports::proxy_log(level, message.as_ptr(), message.len());
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// The host's wall-clock time in nanoseconds since the Unix epoch.
pub fn now_nanos() -> Result<u64, Status> {
    #[cfg(target_arch = "wasm32")]
    {
        let mut t: u64 = 0;
        // SAFETY: `t` is a live, aligned u64 the host writes once.
        let code = unsafe { imports::proxy_get_current_time_nanoseconds(&mut t) };
        Status::from_code(code).map(|()| t)
    }
    #[cfg(not(target_arch = "wasm32"))]
    Err(Status::Unimplemented)
}

/// Copies `max` bytes from `start` of a host buffer. An absent or empty buffer is an empty Vec.
pub fn get_buffer(buffer_type: u32, start: usize, max: usize) -> Result<Vec<u8>, Status> {
    #[cfg(target_arch = "wasm32")]
    {
        let mut ptr: *mut u8 = core::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: `ptr` and `len` are live locals the host writes; the returned memory is
        // taken over by `take_host_buffer`.
        let code =
            unsafe { imports::proxy_get_buffer_bytes(buffer_type, start, max, &mut ptr, &mut len) };
        match Status::from_code(code) {
            Ok(()) => Ok(take_host_buffer(ptr, len)),
            Err(Status::NotFound) | Err(Status::Empty) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (buffer_type, start, max);
        Err(Status::Unimplemented)
    }
}

/// Replaces `size` bytes from `start` of a host buffer with `data` (Envoy: `start` 0 drains
/// `size` bytes and prepends `data`; `start` at or past the end appends).
pub fn set_buffer(buffer_type: u32, start: usize, size: usize, data: &[u8]) -> Result<(), Status> {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: `data` is live and only read by the host for the duration of the call.
        let code = unsafe {
            imports::proxy_set_buffer_bytes(buffer_type, start, size, data.as_ptr(), data.len())
        };
        Status::from_code(code)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (buffer_type, start, size, data);
        Err(Status::Unimplemented)
    }
}

/// Removes header `name` (lower case) from the map `map_type`.
pub fn remove_header(map_type: u32, name: &str) -> Result<(), Status> {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: `name` is live and only read by the host for the duration of the call.
        let code =
            unsafe { imports::proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) };
        Status::from_code(code)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (map_type, name);
        Err(Status::Unimplemented)
    }
}

/// The serialized header map of `map_type` (see [`parse_pairs`]).
pub fn get_header_map_pairs(map_type: u32) -> Result<Vec<u8>, Status> {
    #[cfg(target_arch = "wasm32")]
    {
        let mut ptr: *mut u8 = core::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: as in `get_buffer`.
        let code = unsafe { imports::proxy_get_header_map_pairs(map_type, &mut ptr, &mut len) };
        Status::from_code(code).map(|()| take_host_buffer(ptr, len))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = map_type;
        Err(Status::Unimplemented)
    }
}

/// Reads a property. `path` is the serialized path: elements joined by NUL bytes.
pub fn get_property(path: &[u8]) -> Result<Vec<u8>, Status> {
    #[cfg(target_arch = "wasm32")]
    {
        let mut ptr: *mut u8 = core::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: `path` is live and only read; `ptr`/`len` as in `get_buffer`.
        let code =
            unsafe { imports::proxy_get_property(path.as_ptr(), path.len(), &mut ptr, &mut len) };
        Status::from_code(code).map(|()| take_host_buffer(ptr, len))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = path;
        Err(Status::Unimplemented)
    }
}

/// Sets a property: in Envoy, the filter state object `wasm.<path>`.
pub fn set_property(path: &[u8], value: &[u8]) -> Result<(), Status> {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: both slices are live for the call and only read by the host.
        let code = unsafe {
            imports::proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len())
        };
        Status::from_code(code)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (path, value);
        Err(Status::Unimplemented)
    }
}

/// Defines (or looks up) a metric and returns its id.
pub fn define_metric(metric_type: u32, name: &str) -> Result<u32, Status> {
    #[cfg(target_arch = "wasm32")]
    {
        let mut id: u32 = 0;
        // SAFETY: `name` is live and only read; `id` is a live u32 the host writes.
        let code = unsafe {
            imports::proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id)
        };
        Status::from_code(code).map(|()| id)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (metric_type, name);
        Err(Status::Unimplemented)
    }
}

/// Adds `offset` to a counter (Envoy refuses offsets ≤ 0 for counters).
pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: plain integer arguments.
    return Status::from_code(unsafe { imports::proxy_increment_metric(id, offset) });
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (id, offset);
        Err(Status::Unimplemented)
    }
}

/// Records a value: adds to a counter, sets a gauge, or records into a histogram.
pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: plain integer arguments.
    return Status::from_code(unsafe { imports::proxy_record_metric(id, value) });
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (id, value);
        Err(Status::Unimplemented)
    }
}

/// Reads a shared-data value and its CAS stamp (`Err(NotFound)`: never written).
pub fn get_shared_data(key: &[u8]) -> Result<(Vec<u8>, u32), Status> {
    #[cfg(target_arch = "wasm32")]
    {
        let mut ptr: *mut u8 = core::ptr::null_mut();
        let mut len: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the key is live and only read; `ptr`, `len` and `cas` are live locals the
        // host writes.
        let code = unsafe {
            imports::proxy_get_shared_data(key.as_ptr(), key.len(), &mut ptr, &mut len, &mut cas)
        };
        Status::from_code(code).map(|()| (take_host_buffer(ptr, len), cas))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        Err(Status::Unimplemented)
    }
}

/// Writes a shared-data value if its stamp is still `cas` (0: unconditionally);
/// `Err(CasMismatch)` when another VM wrote in between.
pub fn set_shared_data(key: &[u8], value: &[u8], cas: u32) -> Result<(), Status> {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: key and value are live for the call and only read by the host.
    return Status::from_code(unsafe {
        imports::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    });
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (key, value, cas);
        Err(Status::Unimplemented)
    }
}

/// Answers the stream locally with `status`, `headers` and `body` (Envoy sends it after
/// the callback returns; the request goes no further).
pub fn send_local_response(
    status: u16,
    details: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let h = serialize_pairs(headers);
    #[cfg(target_arch = "wasm32")]
    // SAFETY: every pointer and length describes a live buffer the host only reads.
    return Status::from_code(unsafe {
        imports::proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            h.as_ptr(),
            h.len(),
            -1,
        )
    });
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (status, details, h, body);
        Err(Status::Unimplemented)
    }
}

/// Serializes a header map (spec "Serialization", the inverse of [`parse_pairs`]).
pub fn serialize_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Parses a serialized header map (spec "Serialization"): a u32 LE count, then a (u32 LE
/// key length, u32 LE value length) pair per entry, then each key and value followed by a
/// NUL byte. Returns `None` for a malformed map; an empty buffer is an empty map.
pub fn parse_pairs(buf: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if buf.len() < 4 {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let b = buf.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = read_u32(0)?;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    if sizes_end > buf.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut data = sizes_end;
    for i in 0..count {
        let klen = read_u32(4 + i * 8)?;
        let vlen = read_u32(8 + i * 8)?;
        let key = buf.get(data..data.checked_add(klen)?)?;
        data = data.checked_add(klen)?.checked_add(1)?;
        let value = buf.get(data..data.checked_add(vlen)?)?;
        data = data.checked_add(vlen)?.checked_add(1)?;
        out.push((key, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::serialize_pairs as serialize;

    #[test]
    fn pairs_round_trip() {
        let buf = serialize(&[(":path", "/v1/chat"), ("content-type", ""), ("x", "y")]);
        let pairs = parse_pairs(&buf).unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0], (&b":path"[..], &b"/v1/chat"[..]));
        assert_eq!(pairs[1], (&b"content-type"[..], &b""[..]));
        assert_eq!(pairs[2], (&b"x"[..], &b"y"[..]));
    }

    #[test]
    fn pairs_empty_and_malformed() {
        assert_eq!(parse_pairs(&[]).unwrap().len(), 0);
        assert_eq!(parse_pairs(&[0]).unwrap().len(), 0);
        assert_eq!(parse_pairs(&0u32.to_le_bytes()).unwrap().len(), 0);
        let mut buf = serialize(&[("key", "value")]);
        buf.truncate(buf.len() - 3);
        assert!(parse_pairs(&buf).is_none());
        // A huge count must not allocate or panic.
        assert!(parse_pairs(&u32::MAX.to_le_bytes()).is_none());
    }

    #[test]
    fn statuses() {
        assert_eq!(Status::from_code(0), Ok(()));
        assert_eq!(Status::from_code(1), Err(Status::NotFound));
        assert_eq!(Status::from_code(12), Err(Status::Unimplemented));
        assert_eq!(Status::from_code(99), Err(Status::Other(99)));
    }
}
