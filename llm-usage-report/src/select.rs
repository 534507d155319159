//! Which exchanges are reported, and which model each is reported under.
//!
//! A frontend may know a model the traffic did not name (the filter's configured default
//! for a route, or a header rule): it passes it as `configured`, and it is used only where
//! the traffic named none.

use llm_usage_core::UsageRecord;

/// Whether the exchange is LLM traffic worth reporting: a model is known (from the
/// traffic or configuration) or a token figure is. A recognised provider alone is not
/// enough (a health check on an OpenAI-compatible path names no model and no tokens).
///
/// ```
/// use llm_usage_report::{select::is_llm, UsageRecord};
///
/// let mut r = UsageRecord::default();
/// assert!(!is_llm(&r, None));
/// assert!(is_llm(&r, Some("qwen-turbo")));
/// r.output_tokens = Some(0);
/// assert!(is_llm(&r, None));
/// ```
pub fn is_llm(record: &UsageRecord, configured: Option<&str>) -> bool {
    record.model.is_some()
        || configured.is_some()
        || record.input_tokens.is_some()
        || record.output_tokens.is_some()
        || record.total_tokens.is_some()
}

/// The request's model: the request body's, else the configured one.
pub fn request_model<'a>(record: &'a UsageRecord, configured: Option<&'a str>) -> Option<&'a str> {
    record.request_model.as_deref().or(configured)
}

/// The model to report for an exchange (a `model` label): the record's best model
/// (response, else request, else path), else the configured one.
pub fn model<'a>(record: &'a UsageRecord, configured: Option<&'a str>) -> Option<&'a str> {
    record.model.as_deref().or(configured)
}

/// Where the reported model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    /// The response reported it.
    Response,
    /// The request body named it.
    Request,
    /// The URL path named it (Gemini, Vertex, Bedrock).
    Path,
    /// The frontend's configuration (the traffic named none).
    Config,
}

impl ModelSource {
    /// `response`, `request`, `path` or `config` (the filter's `model_source` state).
    pub const fn as_str(self) -> &'static str {
        match self {
            ModelSource::Response => "response",
            ModelSource::Request => "request",
            ModelSource::Path => "path",
            ModelSource::Config => "config",
        }
    }
}

/// The model to report and where it came from (`None`: no model is known).
///
/// ```
/// use llm_usage_report::{select::{model_with_source, ModelSource}, UsageRecord};
///
/// let mut r = UsageRecord::default();
/// assert_eq!(model_with_source(&r, Some("cfg")), Some(("cfg", ModelSource::Config)));
/// r.request_model = Some("gpt-4o".into());
/// r.response_model = Some("gpt-4o-2024-08-06".into());
/// assert_eq!(model_with_source(&r, None), Some(("gpt-4o-2024-08-06", ModelSource::Response)));
/// ```
pub fn model_with_source<'a>(
    record: &'a UsageRecord,
    configured: Option<&'a str>,
) -> Option<(&'a str, ModelSource)> {
    match (&record.response_model, &record.request_model, &record.model) {
        (Some(m), _, _) => Some((m, ModelSource::Response)),
        (None, Some(m), _) => Some((m, ModelSource::Request)),
        (None, None, Some(m)) => Some((m, ModelSource::Path)),
        (None, None, None) => configured.map(|m| (m, ModelSource::Config)),
    }
}

/// A record-derived label value: the dimensions every frontend offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordLabel {
    /// The provider (`gen_ai.provider.name` values).
    Provider,
    /// The best model ([`model`]).
    Model,
    /// The request's model ([`request_model`]).
    RequestModel,
    /// The model the response reported.
    ResponseModel,
}

impl RecordLabel {
    /// Whether values are model names (and so fall under the model cap).
    pub const fn is_model(self) -> bool {
        !matches!(self, RecordLabel::Provider)
    }

    /// The raw value for `record` (`None`: unknown).
    pub fn value<'a>(
        self,
        record: &'a UsageRecord,
        configured: Option<&'a str>,
    ) -> Option<&'a str> {
        match self {
            RecordLabel::Provider => record.provider.map(|p| p.as_str()),
            RecordLabel::Model => model(record, configured),
            RecordLabel::RequestModel => request_model(record, configured),
            RecordLabel::ResponseModel => record.response_model.as_deref(),
        }
    }
}
