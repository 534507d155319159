//! Overrides of the `proxy-wasm` SDK's default trait methods that the filter never calls.
//!
//! The SDK's dispatcher keeps contexts as `Box<dyn RootContext>` and `Box<dyn HttpContext>`,
//! so every method of those traits sits in a vtable and is linked in, used or not. The
//! default bodies call the SDK's `hostcalls` wrappers, which decode header maps into
//! `String`s, `unwrap()` every status and format panic messages: about 56 KB of the module
//! for code no callback reaches (twiggy). Default bodies are instantiated per implementing
//! type, so overriding each one with a small body keeps this filter's two contexts from
//! adding their own copies: measured, about 9 KB. The rest stays, because the SDK's own
//! placeholder root context (`NoopRoot`, in its dispatcher) implements the traits with
//! every default; only a change to the SDK could drop it. The dispatcher is untouched.
//!
//! The filter reads the host only through [`crate::abi`], and its callbacks call none of
//! these methods. Still, each body does something honest:
//!
//! * getters of time, properties, configuration, headers, trailers and bodies read the host
//!   through [`crate::abi`] (returning nothing where the SDK would have panicked);
//! * calls that return a `Result` (shared data, queues, HTTP and gRPC callouts, foreign
//!   functions) answer `Err(Status::InternalFailure)`: this filter does not support them;
//! * getters of callout responses, gRPC streams and shared data answer "nothing there",
//!   since no callout, stream or shared datum is ever started or written;
//! * calls that change the stream (header or body rewrites, resume, reset, local replies)
//!   and the remaining calls with no way to report an error do nothing: the filter only
//!   observes traffic and never changes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::types::{BufferType, Bytes, MapType};

use crate::abi::{self, parse_pairs};

/// The host clock (the Unix epoch if the host cannot tell the time).
pub(crate) fn current_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(abi::now_nanos().unwrap_or(0))
}

/// A property by path elements; `None` if absent or unreadable.
pub(crate) fn property(path: &[&str]) -> Option<Bytes> {
    abi::get_property(path.join("\0").as_bytes())
        .ok()
        .filter(|v| !v.is_empty())
}

/// Sets (or, with `None`, clears) a property; a failure is ignored.
pub(crate) fn set_property(path: &[&str], value: Option<&[u8]>) {
    let _ = abi::set_property(path.join("\0").as_bytes(), value.unwrap_or_default());
}

/// Bytes of a host buffer; `None` if absent, empty or unreadable.
pub(crate) fn buffer(buffer_type: BufferType, start: usize, max_size: usize) -> Option<Bytes> {
    abi::get_buffer(buffer_type as u32, start, max_size)
        .ok()
        .filter(|b| !b.is_empty())
}

/// A header map as (name, value bytes); empty if absent or unreadable.
pub(crate) fn map_bytes(map_type: MapType) -> Vec<(String, Bytes)> {
    let buf = abi::get_header_map_pairs(map_type as u32).unwrap_or_default();
    parse_pairs(&buf)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
        .collect()
}

/// A header map as (name, value) strings (invalid UTF-8 replaced).
pub(crate) fn map(map_type: MapType) -> Vec<(String, String)> {
    map_bytes(map_type)
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// The first value of header `name` (ASCII case-insensitive).
pub(crate) fn map_value_bytes(map_type: MapType, name: &str) -> Option<Bytes> {
    map_bytes(map_type)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The first value of header `name` as a string (invalid UTF-8 replaced).
pub(crate) fn map_value(map_type: MapType, name: &str) -> Option<String> {
    map_value_bytes(map_type, name).map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Overrides of the `Context` methods the filter never calls (see the module docs).
macro_rules! context_methods {
    () => {
        fn get_current_time(&self) -> std::time::SystemTime {
            $crate::sdk::current_time()
        }
        fn get_property(&self, path: Vec<&str>) -> Option<proxy_wasm::types::Bytes> {
            $crate::sdk::property(&path)
        }
        fn set_property(&self, path: Vec<&str>, value: Option<&[u8]>) {
            $crate::sdk::set_property(&path, value)
        }
        fn get_shared_data(&self, _key: &str) -> (Option<proxy_wasm::types::Bytes>, Option<u32>) {
            (None, None)
        }
        fn set_shared_data(
            &self,
            _key: &str,
            _value: Option<&[u8]>,
            _cas: Option<u32>,
        ) -> Result<(), proxy_wasm::types::Status> {
            Err(proxy_wasm::types::Status::InternalFailure)
        }
        fn remove_shared_data(
            &self,
            _key: &str,
            _cas: Option<u32>,
        ) -> Result<(), proxy_wasm::types::Status> {
            Err(proxy_wasm::types::Status::InternalFailure)
        }
        fn register_shared_queue(&self, _name: &str) -> u32 {
            // This call has no way to report an error, and the filter uses no queues: 0.
            0
        }
        fn resolve_shared_queue(&self, _vm_id: &str, _name: &str) -> Option<u32> {
            None
        }
        fn dequeue_shared_queue(
            &self,
            _queue_id: u32,
        ) -> Result<Option<proxy_wasm::types::Bytes>, proxy_wasm::types::Status> {
            Err(proxy_wasm::types::Status::InternalFailure)
        }
        fn enqueue_shared_queue(
            &self,
            _queue_id: u32,
            _value: Option<&[u8]>,
        ) -> Result<(), proxy_wasm::types::Status> {
            Err(proxy_wasm::types::Status::InternalFailure)
        }
        fn dispatch_http_call(
            &self,
            _upstream: &str,
            _headers: Vec<(&str, &str)>,
            _body: Option<&[u8]>,
            _trailers: Vec<(&str, &str)>,
            _timeout: std::time::Duration,
        ) -> Result<u32, proxy_wasm::types::Status> {
            Err(proxy_wasm::types::Status::InternalFailure)
        }
        fn get_http_call_response_headers(&self) -> Vec<(String, String)> {
            Vec::new()
        }
        fn get_http_call_response_headers_bytes(&self) -> Vec<(String, proxy_wasm::types::Bytes)> {
            Vec::new()
        }
        fn get_http_call_response_header(&self, _name: &str) -> Option<String> {
            None
        }
        fn get_http_call_response_header_bytes(
            &self,
            _name: &str,
        ) -> Option<proxy_wasm::types::Bytes> {
            None
        }
        fn get_http_call_response_body(
            &self,
            _start: usize,
            _max_size: usize,
        ) -> Option<proxy_wasm::types::Bytes> {
            None
        }
        fn get_http_call_response_trailers(&self) -> Vec<(String, String)> {
            Vec::new()
        }
        fn get_http_call_response_trailers_bytes(&self) -> Vec<(String, proxy_wasm::types::Bytes)> {
            Vec::new()
        }
        fn get_http_call_response_trailer(&self, _name: &str) -> Option<String> {
            None
        }
        fn get_http_call_response_trailer_bytes(
            &self,
            _name: &str,
        ) -> Option<proxy_wasm::types::Bytes> {
            None
        }
        fn dispatch_grpc_call(
            &self,
            _upstream_name: &str,
            _service_name: &str,
            _method_name: &str,
            _initial_metadata: Vec<(&str, &[u8])>,
            _message: Option<&[u8]>,
            _timeout: std::time::Duration,
        ) -> Result<u32, proxy_wasm::types::Status> {
            Err(proxy_wasm::types::Status::InternalFailure)
        }
        fn get_grpc_call_response_body(
            &self,
            _start: usize,
            _max_size: usize,
        ) -> Option<proxy_wasm::types::Bytes> {
            None
        }
        fn cancel_grpc_call(&self, _token_id: u32) {}
        fn open_grpc_stream(
            &self,
            _cluster_name: &str,
            _service_name: &str,
            _method_name: &str,
            _initial_metadata: Vec<(&str, &[u8])>,
        ) -> Result<u32, proxy_wasm::types::Status> {
            Err(proxy_wasm::types::Status::InternalFailure)
        }
        fn get_grpc_stream_initial_metadata(&self) -> Vec<(String, proxy_wasm::types::Bytes)> {
            Vec::new()
        }
        fn get_grpc_stream_initial_metadata_value(
            &self,
            _name: &str,
        ) -> Option<proxy_wasm::types::Bytes> {
            None
        }
        fn send_grpc_stream_message(
            &self,
            _token_id: u32,
            _message: Option<&[u8]>,
            _end_stream: bool,
        ) {
        }
        fn get_grpc_stream_message(
            &mut self,
            _start: usize,
            _max_size: usize,
        ) -> Option<proxy_wasm::types::Bytes> {
            None
        }
        fn get_grpc_stream_trailing_metadata(&self) -> Vec<(String, proxy_wasm::types::Bytes)> {
            Vec::new()
        }
        fn get_grpc_stream_trailing_metadata_value(
            &self,
            _name: &str,
        ) -> Option<proxy_wasm::types::Bytes> {
            None
        }
        fn cancel_grpc_stream(&self, _token_id: u32) {}
        fn close_grpc_stream(&self, _token_id: u32) {}
        fn get_grpc_status(&self) -> (u32, Option<String>) {
            // No gRPC call is ever made: UNKNOWN (2), no message.
            (2, None)
        }
        fn call_foreign_function(
            &self,
            _function_name: &str,
            _arguments: Option<&[u8]>,
        ) -> Result<Option<proxy_wasm::types::Bytes>, proxy_wasm::types::Status> {
            Err(proxy_wasm::types::Status::InternalFailure)
        }
        fn done(&self) {}
    };
}
pub(crate) use context_methods;

/// Overrides of the `RootContext` methods the filter never calls (see the module docs).
macro_rules! root_methods {
    () => {
        fn get_vm_configuration(&self) -> Option<proxy_wasm::types::Bytes> {
            $crate::sdk::buffer(
                proxy_wasm::types::BufferType::VmConfiguration,
                0,
                usize::MAX,
            )
        }
        fn get_plugin_configuration(&self) -> Option<proxy_wasm::types::Bytes> {
            $crate::sdk::buffer(
                proxy_wasm::types::BufferType::PluginConfiguration,
                0,
                usize::MAX,
            )
        }
        fn set_tick_period(&self, _period: std::time::Duration) {}
    };
}
pub(crate) use root_methods;

/// Overrides of the `HttpContext` methods the filter never calls (see the module docs).
macro_rules! http_methods {
    () => {
        fn get_http_request_headers(&self) -> Vec<(String, String)> {
            $crate::sdk::map(proxy_wasm::types::MapType::HttpRequestHeaders)
        }
        fn get_http_request_headers_bytes(&self) -> Vec<(String, proxy_wasm::types::Bytes)> {
            $crate::sdk::map_bytes(proxy_wasm::types::MapType::HttpRequestHeaders)
        }
        fn set_http_request_headers(&self, _request_headers: Vec<(&str, &str)>) {}
        fn set_http_request_headers_bytes(&self, _request_headers: Vec<(&str, &[u8])>) {}
        fn get_http_request_header(&self, name: &str) -> Option<String> {
            $crate::sdk::map_value(proxy_wasm::types::MapType::HttpRequestHeaders, name)
        }
        fn get_http_request_header_bytes(&self, name: &str) -> Option<proxy_wasm::types::Bytes> {
            $crate::sdk::map_value_bytes(proxy_wasm::types::MapType::HttpRequestHeaders, name)
        }
        fn set_http_request_header(&self, _name: &str, _value: Option<&str>) {}
        fn set_http_request_header_bytes(&self, _name: &str, _value: Option<&[u8]>) {}
        fn add_http_request_header(&self, _name: &str, _value: &str) {}
        fn add_http_request_header_bytes(&self, _name: &str, _value: &[u8]) {}
        fn remove_http_request_header(&self, _name: &str) {}
        fn get_http_request_body(
            &self,
            start: usize,
            max_size: usize,
        ) -> Option<proxy_wasm::types::Bytes> {
            $crate::sdk::buffer(
                proxy_wasm::types::BufferType::HttpRequestBody,
                start,
                max_size,
            )
        }
        fn set_http_request_body(&self, _start: usize, _size: usize, _value: &[u8]) {}
        fn get_http_request_trailers(&self) -> Vec<(String, String)> {
            $crate::sdk::map(proxy_wasm::types::MapType::HttpRequestTrailers)
        }
        fn get_http_request_trailers_bytes(&self) -> Vec<(String, proxy_wasm::types::Bytes)> {
            $crate::sdk::map_bytes(proxy_wasm::types::MapType::HttpRequestTrailers)
        }
        fn set_http_request_trailers(&self, _request_trailers: Vec<(&str, &str)>) {}
        fn set_http_request_trailers_bytes(&self, _request_trailers: Vec<(&str, &[u8])>) {}
        fn get_http_request_trailer(&self, name: &str) -> Option<String> {
            $crate::sdk::map_value(proxy_wasm::types::MapType::HttpRequestTrailers, name)
        }
        fn get_http_request_trailer_bytes(&self, name: &str) -> Option<proxy_wasm::types::Bytes> {
            $crate::sdk::map_value_bytes(proxy_wasm::types::MapType::HttpRequestTrailers, name)
        }
        fn set_http_request_trailer(&self, _name: &str, _value: Option<&str>) {}
        fn set_http_request_trailer_bytes(&self, _name: &str, _value: Option<&[u8]>) {}
        fn add_http_request_trailer(&self, _name: &str, _value: &str) {}
        fn add_http_request_trailer_bytes(&self, _name: &str, _value: &[u8]) {}
        fn remove_http_request_trailer(&self, _name: &str) {}
        fn resume_http_request(&self) {}
        fn reset_http_request(&self) {}
        fn get_http_response_headers(&self) -> Vec<(String, String)> {
            $crate::sdk::map(proxy_wasm::types::MapType::HttpResponseHeaders)
        }
        fn get_http_response_headers_bytes(&self) -> Vec<(String, proxy_wasm::types::Bytes)> {
            $crate::sdk::map_bytes(proxy_wasm::types::MapType::HttpResponseHeaders)
        }
        fn set_http_response_headers(&self, _response_headers: Vec<(&str, &str)>) {}
        fn set_http_response_headers_bytes(&self, _response_headers: Vec<(&str, &[u8])>) {}
        fn get_http_response_header(&self, name: &str) -> Option<String> {
            $crate::sdk::map_value(proxy_wasm::types::MapType::HttpResponseHeaders, name)
        }
        fn get_http_response_header_bytes(&self, name: &str) -> Option<proxy_wasm::types::Bytes> {
            $crate::sdk::map_value_bytes(proxy_wasm::types::MapType::HttpResponseHeaders, name)
        }
        fn set_http_response_header(&self, _name: &str, _value: Option<&str>) {}
        fn set_http_response_header_bytes(&self, _name: &str, _value: Option<&[u8]>) {}
        fn add_http_response_header(&self, _name: &str, _value: &str) {}
        fn add_http_response_header_bytes(&self, _name: &str, _value: &[u8]) {}
        fn remove_http_response_header(&self, _name: &str) {}
        fn get_http_response_body(
            &self,
            start: usize,
            max_size: usize,
        ) -> Option<proxy_wasm::types::Bytes> {
            $crate::sdk::buffer(
                proxy_wasm::types::BufferType::HttpResponseBody,
                start,
                max_size,
            )
        }
        fn set_http_response_body(&self, _start: usize, _size: usize, _value: &[u8]) {}
        fn get_http_response_trailers(&self) -> Vec<(String, String)> {
            $crate::sdk::map(proxy_wasm::types::MapType::HttpResponseTrailers)
        }
        fn get_http_response_trailers_bytes(&self) -> Vec<(String, proxy_wasm::types::Bytes)> {
            $crate::sdk::map_bytes(proxy_wasm::types::MapType::HttpResponseTrailers)
        }
        fn set_http_response_trailers(&self, _response_trailers: Vec<(&str, &str)>) {}
        fn set_http_response_trailers_bytes(&self, _response_trailers: Vec<(&str, &[u8])>) {}
        fn get_http_response_trailer(&self, name: &str) -> Option<String> {
            $crate::sdk::map_value(proxy_wasm::types::MapType::HttpResponseTrailers, name)
        }
        fn get_http_response_trailer_bytes(&self, name: &str) -> Option<proxy_wasm::types::Bytes> {
            $crate::sdk::map_value_bytes(proxy_wasm::types::MapType::HttpResponseTrailers, name)
        }
        fn set_http_response_trailer(&self, _name: &str, _value: Option<&str>) {}
        fn set_http_response_trailer_bytes(&self, _name: &str, _value: Option<&[u8]>) {}
        fn add_http_response_trailer(&self, _name: &str, _value: &str) {}
        fn add_http_response_trailer_bytes(&self, _name: &str, _value: &[u8]) {}
        fn remove_http_response_trailer(&self, _name: &str) {}
        fn resume_http_response(&self) {}
        fn reset_http_response(&self) {}
        fn send_http_response(
            &self,
            _status_code: u32,
            _headers: Vec<(&str, &str)>,
            _body: Option<&[u8]>,
        ) {
        }
        fn send_grpc_response(
            &self,
            _grpc_status: proxy_wasm::types::GrpcStatusCode,
            _grpc_status_message: Option<&str>,
            _custom_metadata: Vec<(&str, &[u8])>,
        ) {
        }
    };
}
pub(crate) use http_methods;
