//! The usage record: what one LLM exchange cost, normalised across providers.
//!
//! Every token figure is an `Option`: `None` means the traffic did not carry the figure
//! (or carried something that is not a valid count), which is different from a reported
//! zero. The normalisation follows the OpenTelemetry GenAI semantic conventions:
//! `input_tokens` includes cached and cache-creation tokens, `output_tokens` includes
//! reasoning tokens, and `total_tokens` is the provider's own total when it reports one.

use core::fmt;

/// The provider family a dialect belongs to.
///
/// [`Provider::as_str`] gives the OpenTelemetry `gen_ai.provider.name` value where the
/// conventions define one, and a short lowercase name otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// OpenAI, and any server speaking the OpenAI HTTP API.
    OpenAi,
    /// Azure OpenAI (deployment paths).
    AzureOpenAi,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini API (generativelanguage.googleapis.com).
    Gemini,
    /// Google Vertex AI.
    VertexAi,
    /// AWS Bedrock runtime.
    Bedrock,
    /// Alibaba Cloud DashScope (native protocol or compatible mode).
    DashScope,
    /// Ollama's native API.
    Ollama,
    /// Cohere v2.
    Cohere,
    /// Mistral AI.
    Mistral,
    /// DeepSeek.
    DeepSeek,
    /// Moonshot AI (Kimi): OpenAI- and Anthropic-compatible APIs.
    Moonshot,
    /// xAI (Grok): an OpenAI-compatible API.
    XAi,
}

impl Provider {
    /// Every provider, in a stable order.
    pub const ALL: [Provider; 13] = [
        Provider::OpenAi,
        Provider::AzureOpenAi,
        Provider::Anthropic,
        Provider::Gemini,
        Provider::VertexAi,
        Provider::Bedrock,
        Provider::DashScope,
        Provider::Ollama,
        Provider::Cohere,
        Provider::Mistral,
        Provider::DeepSeek,
        Provider::Moonshot,
        Provider::XAi,
    ];

    /// The `gen_ai.provider.name` value (OpenTelemetry GenAI registry) or a short name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::AzureOpenAi => "azure.ai.openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gcp.gemini",
            Provider::VertexAi => "gcp.vertex_ai",
            Provider::Bedrock => "aws.bedrock",
            Provider::DashScope => "dashscope",
            Provider::Ollama => "ollama",
            Provider::Cohere => "cohere",
            Provider::Mistral => "mistral_ai",
            Provider::DeepSeek => "deepseek",
            Provider::Moonshot => "moonshot_ai",
            Provider::XAi => "x_ai",
        }
    }

    /// Parses a provider name: the [`as_str`](Provider::as_str) value or a common alias
    /// (`azure`, `gemini`, `vertex`, `bedrock`, `mistral`, `qwen`, ...), case-insensitive.
    pub fn from_name(name: &str) -> Option<Provider> {
        let lower = name.trim().to_ascii_lowercase();
        let p = match lower.as_str() {
            "openai" | "openai-compatible" | "openai_compatible" | "vllm" | "compatible" => {
                Provider::OpenAi
            }
            "azure" | "azure-openai" | "azure_openai" | "azure.ai.openai" => Provider::AzureOpenAi,
            "anthropic" | "claude" => Provider::Anthropic,
            "gemini" | "google" | "gcp.gemini" => Provider::Gemini,
            "vertex" | "vertexai" | "vertex_ai" | "vertex-ai" | "gcp.vertex_ai" => {
                Provider::VertexAi
            }
            "bedrock" | "aws" | "aws.bedrock" => Provider::Bedrock,
            "dashscope" | "qwen" | "aliyun" | "bailian" => Provider::DashScope,
            "ollama" => Provider::Ollama,
            "cohere" => Provider::Cohere,
            "mistral" | "mistral_ai" | "mistralai" => Provider::Mistral,
            "deepseek" => Provider::DeepSeek,
            "moonshot" | "moonshot_ai" | "kimi" => Provider::Moonshot,
            "xai" | "x_ai" | "grok" => Provider::XAi,
            _ => return None,
        };
        Some(p)
    }
}

/// The error of parsing a [`Provider`] from a name [`Provider::from_name`] does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProvider(pub alloc::string::String);

impl fmt::Display for UnknownProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown provider {:?}; expected one of ", self.0)?;
        for (i, p) in Provider::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(p.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownProvider {}

/// Parses a name as [`Provider::from_name`] does.
///
/// ```
/// use llm_usage_core::Provider;
///
/// assert_eq!("gcp.vertex_ai".parse::<Provider>(), Ok(Provider::VertexAi));
/// assert_eq!("Claude".parse::<Provider>(), Ok(Provider::Anthropic));
/// let err = "nope".parse::<Provider>().unwrap_err();
/// assert!(err.to_string().starts_with("unknown provider \"nope\""));
/// ```
impl core::str::FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Provider, UnknownProvider> {
        Provider::from_name(s).ok_or_else(|| UnknownProvider(s.into()))
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of request, as OpenTelemetry's `gen_ai.operation.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// A chat turn: OpenAI Chat Completions and Responses, Anthropic Messages, Bedrock
    /// Converse, Cohere and Mistral chat, Ollama `/api/chat`, DashScope generation.
    Chat,
    /// A legacy completion from a prompt: OpenAI `/v1/completions`, Ollama `/api/generate`.
    TextCompletion,
    /// Embeddings.
    Embeddings,
    /// Gemini / Vertex `generateContent` and `streamGenerateContent`; OpenAI Images
    /// generations and edits (the conventions' multimodal content generation: they name
    /// no image operation).
    GenerateContent,
}

impl Operation {
    /// The `gen_ai.operation.name` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::TextCompletion => "text_completion",
            Operation::Embeddings => "embeddings",
            Operation::GenerateContent => "generate_content",
        }
    }

    /// Parses an [`as_str`](Operation::as_str) value (exact, as the conventions spell it).
    pub fn from_name(name: &str) -> Option<Operation> {
        [
            Operation::Chat,
            Operation::TextCompletion,
            Operation::Embeddings,
            Operation::GenerateContent,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The normalised usage of one exchange.
///
/// Built by [`Exchange::record`](crate::Exchange::record) and
/// [`Exchange::finish`](crate::Exchange::finish). New figures are added as the providers
/// report them, so the struct is `#[non_exhaustive]`: outside this crate, start from
/// [`UsageRecord::default()`] and set fields.
///
/// With the `serde` feature it serialises to the JSON the `llm-usage` command prints
/// (`provider` and `operation` as their [`as_str`](Provider::as_str) names, unknown
/// figures as `null`) and deserialises from it; a field missing from the input is
/// unknown (`None`, or `false` for `complete` and `estimated`).
///
/// ```
/// use llm_usage_core::UsageRecord;
///
/// let mut r = UsageRecord::default();
/// r.model = Some("gpt-4o".into());
/// r.input_tokens = Some(12);
/// assert_eq!(r.output_tokens, None); // unknown, not 0
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct UsageRecord {
    /// The provider family, when it could be told from the path, headers or override.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "ser_provider", deserialize_with = "de_provider")
    )]
    pub provider: Option<Provider>,
    /// The best model name: `response_model`, else `request_model`, else the model named
    /// in the URL path (Gemini/Vertex `models/{m}`, Bedrock `/model/{id}`).
    pub model: Option<String>,
    /// The request body's top-level `model`.
    pub request_model: Option<String>,
    /// The last non-empty model the response reported.
    pub response_model: Option<String>,
    /// Whether the request asked for a streamed response.
    pub stream: Option<bool>,
    /// All input tokens, cached and cache-creation tokens included.
    pub input_tokens: Option<u64>,
    /// All output tokens, reasoning tokens included.
    pub output_tokens: Option<u64>,
    /// The provider's total, else `input + output` when both are known.
    pub total_tokens: Option<u64>,
    /// Input tokens read from a provider-managed cache (a subset of `input_tokens`).
    pub cached_input_tokens: Option<u64>,
    /// Input tokens written to a provider-managed cache (a subset of `input_tokens`).
    pub cache_creation_input_tokens: Option<u64>,
    /// Reasoning or thinking tokens (a subset of `output_tokens`).
    pub reasoning_tokens: Option<u64>,
    /// The audio part of `input_tokens`.
    pub input_audio_tokens: Option<u64>,
    /// The image part of `input_tokens` (Gemini counts PDF pages as images).
    pub input_image_tokens: Option<u64>,
    /// The audio part of `output_tokens`.
    pub output_audio_tokens: Option<u64>,
    /// The image part of `output_tokens`.
    pub output_image_tokens: Option<u64>,
    /// Cache writes with a 5-minute lifetime: part of `cache_creation_input_tokens`
    /// (unknown when the split the provider gave no longer sums to it).
    pub cache_creation_5m_input_tokens: Option<u64>,
    /// Cache writes with a 1-hour lifetime: part of `cache_creation_input_tokens`
    /// (unknown when the split no longer sums to it).
    pub cache_creation_1h_input_tokens: Option<u64>,
    /// Server-side web searches, billed per request (Anthropic `server_tool_use`, OpenAI
    /// Responses `web_search_call` items). Gemini's grounding with Google Search leaves it
    /// unknown: its responses list the queries run but no billed count (Gemini 3 bills
    /// per unique non-empty query, older models per grounded prompt).
    pub web_search_requests: Option<u64>,
    /// Server-side web fetches, billed per request (Anthropic `server_tool_use`).
    pub web_fetch_requests: Option<u64>,
    /// The service tier the response reports (`default`, `flex`, `priority`, `standard`,
    /// `batch`, `ON_DEMAND`, ...), as the provider spells it.
    pub service_tier: Option<String>,
    /// The kind of request (OpenTelemetry `gen_ai.operation.name`), from the API path.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "ser_operation", deserialize_with = "de_operation")
    )]
    pub operation: Option<Operation>,
    /// `true` when the whole response was observed and ended on a clean boundary (and,
    /// for a stream, carried its provider's end); `false` for a record taken before the
    /// end, from a cut stream, or after a framing error.
    pub complete: bool,
    /// `true` when a token figure is an estimate made from the text the exchange carried
    /// (the provider never reported it: a stream without usage, a stream cut before its
    /// usage); `false` when every known figure came from the provider.
    pub estimated: bool,
}

#[cfg(feature = "serde")]
fn de_operation<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Operation>, D::Error> {
    use serde::Deserialize;
    match Option::<alloc::borrow::Cow<'de, str>>::deserialize(d)? {
        None => Ok(None),
        Some(name) => Operation::from_name(&name).map(Some).ok_or_else(|| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&name),
                &"a gen_ai.operation.name value: chat, text_completion, embeddings or generate_content",
            )
        }),
    }
}

#[cfg(feature = "serde")]
fn de_provider<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Provider>, D::Error> {
    use serde::Deserialize;
    match Option::<alloc::borrow::Cow<'de, str>>::deserialize(d)? {
        None => Ok(None),
        Some(name) => name.parse().map(Some).map_err(|e: UnknownProvider| {
            serde::de::Error::invalid_value(serde::de::Unexpected::Str(&e.0), &"a provider name")
        }),
    }
}

#[cfg(feature = "serde")]
fn ser_operation<S: serde::Serializer>(o: &Option<Operation>, s: S) -> Result<S::Ok, S::Error> {
    match o {
        Some(o) => s.serialize_str(o.as_str()),
        None => s.serialize_none(),
    }
}

#[cfg(feature = "serde")]
fn ser_provider<S: serde::Serializer>(p: &Option<Provider>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(p.as_str()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(Provider::from_name(p.as_str()), Some(p), "{p}");
        }
        assert_eq!(Provider::from_name("Bedrock"), Some(Provider::Bedrock));
        assert_eq!(Provider::from_name("nope"), None);
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
        }
        assert_eq!(" AWS ".parse::<Provider>(), Ok(Provider::Bedrock));
        let err = "nonesuch".parse::<Provider>().unwrap_err();
        assert_eq!(err, UnknownProvider("nonesuch".into()));
        let text = err.to_string();
        assert!(text.contains("\"nonesuch\""), "{text}");
        for p in Provider::ALL {
            assert!(text.contains(p.as_str()), "{text}");
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn record_json_both_ways() {
        let r = UsageRecord {
            provider: Some(Provider::AzureOpenAi),
            operation: Some(Operation::TextCompletion),
            model: Some("gpt-4o".into()),
            input_tokens: Some(0),
            output_tokens: Some(7),
            complete: true,
            ..Default::default()
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"provider\":\"azure.ai.openai\""), "{text}");
        assert!(text.contains("\"total_tokens\":null"), "{text}");
        assert_eq!(serde_json::from_str::<UsageRecord>(&text).unwrap(), r);
        // Missing fields are unknown; extra ones (the CLI's cost) are ignored.
        let sparse: UsageRecord =
            serde_json::from_str(r#"{"provider":"bedrock","input_tokens":3,"cost":"0.1"}"#)
                .unwrap();
        assert_eq!(sparse.provider, Some(Provider::Bedrock));
        assert_eq!(sparse.input_tokens, Some(3));
        assert_eq!(sparse.output_tokens, None);
        assert!(!sparse.complete);
        // A bad name is an error that says what it is.
        let err = serde_json::from_str::<UsageRecord>(r#"{"provider":"nonesuch"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nonesuch") && err.contains("provider"),
            "{err}"
        );
        let err = serde_json::from_str::<UsageRecord>(r#"{"operation":"dance"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dance") && err.contains("operation"), "{err}");
        let err = serde_json::from_str::<UsageRecord>(r#"{"input_tokens":-1}"#).unwrap_err();
        assert!(err.to_string().contains("-1"), "{err}");
    }

    #[test]
    fn operation_names_round_trip() {
        for o in [
            Operation::Chat,
            Operation::TextCompletion,
            Operation::Embeddings,
            Operation::GenerateContent,
        ] {
            assert_eq!(Operation::from_name(o.as_str()), Some(o));
        }
        assert_eq!(Operation::from_name("Chat"), None);
    }
}
