//! The module's exports: the proxy-wasm ABI 0.2.1 callbacks (`proxy_on_*`), the guest
//! allocator, and the table of contexts that routes each callback to its root or stream.
//!
//! This replaces the dispatcher of the proxy-wasm Rust SDK (0.2.5), which the filter used
//! before (issue 6): the SDK routes every callback through `dyn` trait objects whose vtables
//! keep every default trait method alive — HTTP and gRPC callouts, shared data and queues,
//! each with its host-call wrapper and panic messages, and 24 extra imports — plus hash
//! maps for contexts and callouts: about 50 KB of a module that must stay under 300 KiB.
//! The filter has root contexts and HTTP contexts only.
//!
//! The exports, their signatures and their answers are the SDK's: the same functions are
//! exported; a callback for an unknown context id panics (so the VM traps) as the SDK's
//! does; `proxy_on_done` answers `true`; the root's `proxy_on_vm_start`, `proxy_on_tick`
//! and `proxy_on_queue_ready` do nothing; the callbacks of the features the filter never
//! uses (TCP streams, HTTP and gRPC callouts, foreign functions) behave as the SDK's do when
//! no such stream or callout exists. One difference: a flag such as `end_of_stream` is read
//! as "not 0", where the SDK reads it as a Rust `bool` (undefined behaviour for a value
//! other than 0 or 1).

use std::collections::BTreeMap;

use crate::filter::{Root, Stream};

/// The live contexts of the VM, by id.
pub(crate) struct Contexts {
    roots: BTreeMap<u32, Root>,
    streams: BTreeMap<u32, Box<Stream>>,
}

/// The SDK's answer to a callback for a context id it does not know: a panic, which traps.
#[cold]
fn invalid_context() -> ! {
    panic!("invalid context_id")
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
impl Contexts {
    /// No contexts.
    pub(crate) const fn new() -> Contexts {
        Contexts {
            roots: BTreeMap::new(),
            streams: BTreeMap::new(),
        }
    }

    /// `proxy_on_context_create`: a root context when `root_context_id` is 0, else an HTTP
    /// stream of that root.
    pub(crate) fn create(&mut self, context_id: u32, root_context_id: u32) {
        if root_context_id == 0 {
            if self.roots.insert(context_id, Root::new()).is_some() {
                panic!("duplicate context_id")
            }
            return;
        }
        let Some(root) = self.roots.get(&root_context_id) else {
            panic!("invalid root_context_id and missing constructors")
        };
        let stream = Box::new(root.create_http_context());
        if self.streams.insert(context_id, stream).is_some() {
            panic!("duplicate context_id")
        }
    }

    /// The root context `id`.
    pub(crate) fn root(&mut self, id: u32) -> &mut Root {
        self.roots.get_mut(&id).unwrap_or_else(|| invalid_context())
    }

    /// The HTTP stream context `id`.
    pub(crate) fn stream(&mut self, id: u32) -> &mut Stream {
        self.streams
            .get_mut(&id)
            .unwrap_or_else(|| invalid_context())
    }

    /// `proxy_on_log`: the stream's access-log phase (nothing for a root).
    pub(crate) fn log(&mut self, id: u32) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.on_log();
        } else if !self.roots.contains_key(&id) {
            invalid_context()
        }
    }

    /// `proxy_on_done`: every context is done at once.
    pub(crate) fn done(&mut self, id: u32) -> bool {
        if !self.streams.contains_key(&id) && !self.roots.contains_key(&id) {
            invalid_context()
        }
        true
    }

    /// `proxy_on_delete`: drops the context.
    pub(crate) fn delete(&mut self, id: u32) {
        if self.streams.remove(&id).is_none() && self.roots.remove(&id).is_none() {
            invalid_context()
        }
    }
}

/// The exported functions (wasm32 only: elsewhere there is no host to call them).
#[cfg(target_arch = "wasm32")]
mod exports {
    use std::cell::RefCell;
    use std::mem::MaybeUninit;

    use super::{invalid_context, Contexts};
    use crate::abi::Action;

    thread_local! {
        // wasm32-wasip1 has one thread: this is a plain static.
        static CONTEXTS: RefCell<Contexts> = const { RefCell::new(Contexts::new()) };
    }

    /// Runs `f` on the contexts. Callbacks never nest (the filter makes no host call that
    /// calls back), so the borrow cannot fail.
    fn with<R>(f: impl FnOnce(&mut Contexts) -> R) -> R {
        CONTEXTS.with(|c| f(&mut c.borrow_mut()))
    }

    fn stream(id: u32, f: impl FnOnce(&mut crate::filter::Stream) -> Action) -> u32 {
        with(|c| f(c.stream(id))) as u32
    }

    extern "C" {
        fn __wasm_call_ctors();
    }

    /// The reactor entry point: runs the static constructors.
    #[no_mangle]
    pub extern "C" fn _initialize() {
        // SAFETY: the host calls `_initialize` once, before any other export, as the
        // WASI reactor model requires; the constructors run exactly then.
        unsafe { __wasm_call_ctors() }
    }

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    /// The allocator the host fills buffers through (`abi::take_host_buffer` takes them
    /// back): a leaked boxed slice of exactly `size` bytes, as the SDK allocates it.
    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        let mut vec: Vec<MaybeUninit<u8>> = Vec::with_capacity(size);
        // SAFETY: the capacity is `size`, and the elements are `MaybeUninit`, so they need
        // no initialisation; the host writes them before the filter reads them.
        unsafe { vec.set_len(size) };
        Box::into_raw(vec.into_boxed_slice()) as *mut u8
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
        with(|c| c.create(context_id, root_context_id))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_vm_start(context_id: u32, _vm_configuration_size: usize) -> bool {
        with(|c| {
            c.root(context_id);
            true
        })
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_configure(context_id: u32, configuration_size: usize) -> bool {
        with(|c| c.root(context_id).on_configure(configuration_size))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_tick(context_id: u32) {
        with(|c| {
            c.root(context_id);
        })
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_queue_ready(context_id: u32, _queue_id: u32) {
        with(|c| {
            c.root(context_id);
        })
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_headers(id: u32, headers: usize, end: u32) -> u32 {
        stream(id, |s| s.on_http_request_headers(headers, end != 0))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_body(id: u32, size: usize, end: u32) -> u32 {
        stream(id, |s| s.on_http_request_body(size, end != 0))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_trailers(id: u32, trailers: usize) -> u32 {
        stream(id, |s| s.on_http_request_trailers(trailers))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(id: u32, headers: usize, end: u32) -> u32 {
        stream(id, |s| s.on_http_response_headers(headers, end != 0))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_body(id: u32, size: usize, end: u32) -> u32 {
        stream(id, |s| s.on_http_response_body(size, end != 0))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_trailers(id: u32, trailers: usize) -> u32 {
        stream(id, |s| s.on_http_response_trailers(trailers))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_log(context_id: u32) {
        with(|c| c.log(context_id))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_done(context_id: u32) -> bool {
        with(|c| c.done(context_id))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_delete(context_id: u32) {
        with(|c| c.delete(context_id))
    }

    // TCP stream callbacks: the filter has no TCP stream contexts, so, as in the SDK, the
    // context id is always unknown.

    #[no_mangle]
    pub extern "C" fn proxy_on_new_connection(_context_id: u32) -> u32 {
        invalid_context()
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_downstream_data(_id: u32, _size: usize, _end: u32) -> u32 {
        invalid_context()
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_downstream_connection_close(_context_id: u32, _peer: u32) {
        invalid_context()
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_upstream_data(_id: u32, _size: usize, _end: u32) -> u32 {
        invalid_context()
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_upstream_connection_close(_context_id: u32, _peer: u32) {
        invalid_context()
    }

    // Callouts: the filter makes none, so no token is ever registered. The SDK panics on an
    // unknown HTTP callout token and ignores unknown gRPC tokens and foreign functions.

    #[no_mangle]
    pub extern "C" fn proxy_on_http_call_response(
        _context_id: u32,
        _token_id: u32,
        _num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        panic!("invalid token_id")
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_grpc_receive_initial_metadata(_id: u32, _token: u32, _n: u32) {}

    #[no_mangle]
    pub extern "C" fn proxy_on_grpc_receive(_id: u32, _token: u32, _size: usize) {}

    #[no_mangle]
    pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(_id: u32, _token: u32, _n: u32) {}

    #[no_mangle]
    pub extern "C" fn proxy_on_grpc_close(_id: u32, _token: u32, _status_code: u32) {}

    #[no_mangle]
    pub extern "C" fn proxy_on_foreign_function(_id: u32, _function_id: u32, _size: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_live_from_create_to_delete() {
        let mut c = Contexts::new();
        c.create(1, 0);
        c.create(2, 1);
        c.create(3, 1);
        c.root(1);
        c.stream(2);
        assert!(c.done(2));
        c.log(2);
        c.delete(2);
        c.log(1);
        assert!(c.done(1));
        c.delete(3);
        c.delete(1);
        assert!(c.roots.is_empty() && c.streams.is_empty());
    }

    #[test]
    #[should_panic(expected = "invalid context_id")]
    fn an_unknown_stream_panics() {
        let mut c = Contexts::new();
        c.create(1, 0);
        c.stream(2);
    }

    #[test]
    #[should_panic(expected = "invalid context_id")]
    fn a_deleted_context_is_unknown() {
        let mut c = Contexts::new();
        c.create(1, 0);
        c.create(2, 1);
        c.delete(2);
        c.delete(2);
    }

    #[test]
    #[should_panic(expected = "invalid root_context_id")]
    fn a_stream_of_an_unknown_root_panics() {
        Contexts::new().create(2, 1);
    }

    #[test]
    #[should_panic(expected = "duplicate context_id")]
    fn a_duplicate_context_panics() {
        let mut c = Contexts::new();
        c.create(1, 0);
        c.create(2, 1);
        c.create(2, 1);
    }
}
