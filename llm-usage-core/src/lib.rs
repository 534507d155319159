//! llm-usage-core: stub (being written).
mod record;
pub use record::{Provider, UsageRecord};

/// Options for one [`Exchange`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Force a provider family instead of detecting it.
    pub provider: Option<Provider>,
    /// Stop inspecting a body after this many (decoded) bytes. `None`: no limit.
    pub max_body_bytes: Option<u64>,
}

/// One HTTP exchange being observed.
#[derive(Debug, Default)]
pub struct Exchange {
    _opts: Options,
}

impl Exchange {
    /// A new exchange with auto-detection.
    pub fn new() -> Self { Self::default() }
    /// A new exchange with options.
    pub fn with_options(opts: Options) -> Self { Exchange { _opts: opts } }
    /// Request line and headers.
    pub fn on_request_head<I, K, V>(&mut self, _method: &str, _path_and_query: &str, _headers: I)
    where I: IntoIterator<Item = (K, V)>, K: AsRef<[u8]>, V: AsRef<[u8]> {}
    /// A request body chunk.
    pub fn on_request_body(&mut self, _chunk: &[u8]) {}
    /// The request body ended.
    pub fn on_request_end(&mut self) {}
    /// Response status and headers.
    pub fn on_response_head<I, K, V>(&mut self, _status: u16, _headers: I)
    where I: IntoIterator<Item = (K, V)>, K: AsRef<[u8]>, V: AsRef<[u8]> {}
    /// A response body chunk.
    pub fn on_response_body(&mut self, _chunk: &[u8]) {}
    /// The response body ended normally.
    pub fn on_response_end(&mut self) {}
    /// Number of complete response events (documents) seen so far.
    pub fn response_events(&self) -> u64 { 0 }
    /// The request model known so far.
    pub fn request_model(&self) -> Option<&str> { None }
    /// The best model known so far.
    pub fn model(&self) -> Option<&str> { None }
    /// A snapshot of the record so far.
    pub fn record(&self) -> UsageRecord { UsageRecord::default() }
    /// The final record (partial if the response did not end).
    pub fn finish(&mut self) -> UsageRecord { self.record() }
}
