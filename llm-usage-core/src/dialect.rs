//! Provider dialects as data: which paths feed which record fields, and how.
//!
//! A dialect is a table, not a parser. Each [`Watch`] names a JSON path (relative to the
//! root of one document: a body, an SSE event, an NDJSON line, an event-stream payload)
//! and the record *slot* it feeds. A record field has up to three slots; the dialect says
//! how they combine ([`Combine::Sum`] for formulas like Anthropic's
//! `input + cache_read + cache_creation`, [`Combine::First`] for fallbacks like Cohere's
//! `billed_units` before `tokens`). The same path may feed two slots (Anthropic's
//! `cache_read_input_tokens` is both a term of the input and the cached figure).
//!
//! Streams report cumulative snapshots, so a slot is *set*, never added to: the last
//! value wins, slot by slot, and a later event that omits a field leaves it alone.
//!
//! Detection ([`detect`]) looks at the path first (it is the most reliable signal),
//! then at request headers; a provider override keeps the path's choice of API within
//! that provider's family (Bedrock Converse versus InvokeModel, say).

use crate::record::{Operation, Provider};
use crate::scan::Watch;

/// Number of record fields fed by slots.
pub(crate) const FIELDS: usize = 14;
/// Slots per field.
pub(crate) const SLOTS: usize = 3;

/// A token field of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Input = 0,
    Output = 1,
    Total = 2,
    Cached = 3,
    CacheCreation = 4,
    Reasoning = 5,
    /// The audio part of the input.
    InputAudio = 6,
    /// The image part of the input.
    InputImage = 7,
    /// The audio part of the output.
    OutputAudio = 8,
    /// The image part of the output.
    OutputImage = 9,
    /// Cache writes with a 5-minute lifetime (part of `CacheCreation`).
    CacheCreation5m = 10,
    /// Cache writes with a 1-hour lifetime (part of `CacheCreation`).
    CacheCreation1h = 11,
    /// Server-side web searches billed per request.
    WebSearch = 12,
    /// Server-side web fetches billed per request.
    WebFetch = 13,
}

/// What a watched value feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A token count slot.
    Slot(Field, u8),
    /// The request body's model.
    RequestModel,
    /// A model the response reports (last non-empty wins).
    ResponseModel,
    /// The request body's stream flag.
    Stream,
    /// The service tier the response reports.
    ServiceTier,
    /// Adds one to a field when the string equals this (an OpenAI Responses output item
    /// of type `web_search_call` is one web search).
    CountIf(Field, &'static str),
    /// The `modality` of an entry of a Gemini token-count list (`promptTokensDetails`,
    /// `candidatesTokensDetails`): the entry's count goes to the list's field of that
    /// modality (see `values::ModalityList`).
    Modality(ModalityList),
    /// The `tokenCount` of an entry of a Gemini token-count list.
    ModalityCount(ModalityList),
    /// A base64 string holding the provider's own stream event (Bedrock
    /// InvokeModelWithResponseStream `chunk.bytes`), scanned with the dialect's `inner` table.
    Inner,
    /// A string of generated text (response) or prompt text (request), counted as it
    /// streams by (see `text`): an event carrying some is a *content* event.
    Text,
    /// A chat message of the request (its `role`): counted, for the tokens a chat
    /// template adds around each message's text (see `Exchange::estimated_tokens`).
    Message,
    /// A value that, when [`EndIf`] holds, is (part of) the provider's end of a stream:
    /// sets bit `1 << n` of the end marks ([`Dialect::end`]).
    End(EndIf, u8),
}

/// A list of token counts per modality, and the fields its audio and image entries fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModalityList {
    /// The input's breakdown: `InputAudio`, `InputImage`.
    Input = 0,
    /// The output's breakdown: `OutputAudio`, `OutputImage`.
    Output = 1,
}

impl ModalityList {
    /// The field of a modality in this list; `None` for a modality without one (`TEXT`,
    /// `VIDEO`, `DOCUMENT`, `MODALITY_UNSPECIFIED`).
    pub(crate) fn field(self, modality: &[u8]) -> Option<Field> {
        match (self, modality) {
            (ModalityList::Input, b"AUDIO") => Some(Field::InputAudio),
            (ModalityList::Input, b"IMAGE") => Some(Field::InputImage),
            (ModalityList::Output, b"AUDIO") => Some(Field::OutputAudio),
            (ModalityList::Output, b"IMAGE") => Some(Field::OutputImage),
            _ => None,
        }
    }
}

/// When a watched value marks the end of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndIf {
    /// A string equal to this (Anthropic `type: message_stop`).
    Is(&'static str),
    /// A non-empty string other than this (DashScope's `finish_reason`, `"null"` until the
    /// last chunk; Gemini's `finishReason`, any).
    IsNot(&'static str),
    /// `true` (Ollama `done`).
    True,
    /// Any number (Bedrock's closing metrics).
    Number,
}

/// The end marks of a dialect's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ends {
    /// The marks a streamed response must carry to be complete (every bit set); 0 when
    /// the dialect has no end of its own (the framing's end is the end).
    pub required: u8,
    /// The mark an SSE event whose data is exactly `[DONE]` sets (0: none).
    pub done: u8,
}

/// One mark, bit 0: most dialects end on one event.
const END_ON_ONE: Ends = Ends {
    required: 1,
    done: 0,
};

/// How a field's slots combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Combine {
    /// Sum of the known slots; unknown when none is known.
    Sum,
    /// The first known slot.
    First,
}

/// How the stream flag is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamRule {
    /// The request body's `stream`; `default` when the body has none.
    Body { default: bool },
    /// The path contains one of these markers.
    Path(&'static [&'static str]),
    /// A request header equals a value (case-insensitive, spaces trimmed).
    Header(StreamHeader, &'static str),
}

/// A request header that a stream rule reads. The request head reader keeps the first
/// value of each of [`StreamHeader::ALL`] and of no other header, so a rule names its
/// header by this type: a table row cannot name one that the reader throws away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamHeader {
    /// DashScope's native API streams when `X-DashScope-SSE: enable`.
    DashScopeSse,
}

impl StreamHeader {
    /// Every variant, at the index of its discriminant (the reader's slot).
    pub(crate) const ALL: [StreamHeader; 1] = [StreamHeader::DashScopeSse];

    /// The header's name, lower-case.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            StreamHeader::DashScopeSse => "x-dashscope-sse",
        }
    }
}

/// Where a model name may sit in the URL path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathModel {
    None,
    /// `…/models/{model}:method` (Gemini, Vertex).
    Models,
    /// `/model/{modelId}/…` (Bedrock), percent-decoded.
    Bedrock,
}

/// One dialect.
#[derive(Debug)]
pub(crate) struct Dialect {
    pub name: &'static str,
    pub request: &'static [Watch<Target>],
    pub response: &'static [Watch<Target>],
    pub inner: &'static [Watch<Target>],
    pub headers: &'static [(&'static str, Target)],
    pub combine: [Combine; FIELDS],
    pub stream: StreamRule,
    pub path_model: PathModel,
    /// What ends a streamed response (`complete` needs it).
    pub end: Ends,
}

const fn w(path: &'static [&'static str], target: Target) -> Watch<Target> {
    Watch { path, target }
}

/// Watches each path both at the document root and under `$prefix`: the non-stream body
/// and the stream events of one API share their field names (Anthropic's message versus
/// `message_start.message`, the Responses object versus `response.completed.response`).
/// Watches after a `;` are added as they are (end marks, which sit at the root only).
macro_rules! root_and_under {
    ($prefix:literal; $([$($seg:literal),+] => $target:expr),+ $(,)? $(; $($extra:expr),+ $(,)?)?) => {
        &[$(w(&[$($seg),+], $target), w(&[$prefix, $($seg),+], $target),)+ $($($extra,)+)?]
    };
}

use Field::*;
use Target::*;

const FIRST: [Combine; FIELDS] = [Combine::First; FIELDS];
const SUM_IN_OUT: [Combine; FIELDS] = {
    let mut c = FIRST;
    c[Field::Input as usize] = Combine::Sum;
    c[Field::Output as usize] = Combine::Sum;
    c
};

const MODEL_AND_STREAM: &[Watch<Target>] = &[w(&["model"], RequestModel), w(&["stream"], Stream)];

/// OpenAI-family requests: model, stream flag, and the prompt text, for an estimate of the
/// input when the response never reports it (a stream without `include_usage`).
const OPENAI_REQUEST: &[Watch<Target>] = &[
    w(&["model"], RequestModel),
    w(&["stream"], Stream),
    w(&["messages", "role"], Message),
    w(&["messages", "content"], Text),
    w(&["messages", "content", "text"], Text),
    w(&["prompt"], Text),
];

/// OpenAI Chat Completions, legacy Completions, Embeddings, and every server that
/// speaks them (Azure, vLLM, Mistral, DeepSeek, DashScope compatible mode, Ollama `/v1`).
static OPENAI_CHAT: Dialect = Dialect {
    name: "openai-chat",
    request: OPENAI_REQUEST,
    response: &[
        w(&["model"], ResponseModel),
        // Generated text of stream chunks: content, reasoning (DeepSeek, vLLM, Qwen:
        // `reasoning_content`; others: `reasoning`), tool-call arguments, legacy text.
        w(&["choices", "delta", "content"], Text),
        w(&["choices", "delta", "reasoning_content"], Text),
        w(&["choices", "delta", "reasoning"], Text),
        w(
            &["choices", "delta", "tool_calls", "function", "arguments"],
            Text,
        ),
        w(&["choices", "text"], Text),
        // Mistral's reasoning models stream `content` as typed parts: text parts, and
        // thinking parts that hold text parts.
        w(&["choices", "delta", "content", "text"], Text),
        w(&["choices", "delta", "content", "thinking", "text"], Text),
        // Perplexity ends its streams with a `chat.completion.done` chunk, no `[DONE]`.
        w(&["object"], End(EndIf::Is("chat.completion.done"), 0)),
        w(&["usage", "prompt_tokens"], Slot(Input, 0)),
        w(&["usage", "completion_tokens"], Slot(Output, 0)),
        w(&["usage", "total_tokens"], Slot(Total, 0)),
        w(
            &["usage", "prompt_tokens_details", "cached_tokens"],
            Slot(Cached, 0),
        ),
        w(&["usage", "prompt_cache_hit_tokens"], Slot(Cached, 1)),
        w(
            &[
                "usage",
                "prompt_tokens_details",
                "cache_creation_input_tokens",
            ],
            Slot(CacheCreation, 0),
        ),
        w(
            &["usage", "prompt_tokens_details", "cache_write_tokens"],
            Slot(CacheCreation, 1),
        ),
        w(
            &["usage", "completion_tokens_details", "reasoning_tokens"],
            Slot(Reasoning, 0),
        ),
        // Audio and image parts (gpt-4o audio models, multimodal inputs).
        w(
            &["usage", "prompt_tokens_details", "audio_tokens"],
            Slot(InputAudio, 0),
        ),
        w(
            &["usage", "prompt_tokens_details", "image_tokens"],
            Slot(InputImage, 0),
        ),
        w(
            &["usage", "completion_tokens_details", "audio_tokens"],
            Slot(OutputAudio, 0),
        ),
        w(&["service_tier"], ServiceTier),
    ],
    inner: &[],
    headers: &[],
    combine: FIRST,
    stream: StreamRule::Body { default: false },
    path_model: PathModel::None,
    // `data: [DONE]` ends every stream of the family (the include_usage chunk comes just
    // before it); Perplexity's `chat.completion.done` chunk too.
    end: Ends {
        required: 1,
        done: 1,
    },
};

/// OpenAI Responses API: the response object, or `response` inside stream events.
static OPENAI_RESPONSES: Dialect = Dialect {
    name: "openai-responses",
    request: MODEL_AND_STREAM,
    response: root_and_under!["response";
        ["model"] => ResponseModel,
        ["usage", "input_tokens"] => Slot(Input, 0),
        ["usage", "output_tokens"] => Slot(Output, 0),
        ["usage", "total_tokens"] => Slot(Total, 0),
        ["usage", "input_tokens_details", "cached_tokens"] => Slot(Cached, 0),
        ["usage", "input_tokens_details", "cache_write_tokens"] => Slot(CacheCreation, 0),
        ["usage", "output_tokens_details", "reasoning_tokens"] => Slot(Reasoning, 0),
        ["service_tier"] => ServiceTier,
        // Each hosted web search is an output item of its own.
        ["output", "type"] => CountIf(WebSearch, "web_search_call");
        // Text, reasoning summary and function-argument deltas.
        w(&["delta"], Text),
        // The three terminal events of a Responses stream.
        w(&["type"], End(EndIf::Is("response.completed"), 0)),
        w(&["type"], End(EndIf::Is("response.incomplete"), 0)),
        w(&["type"], End(EndIf::Is("response.failed"), 0)),
    ],
    inner: &[],
    headers: &[],
    combine: FIRST,
    stream: StreamRule::Body { default: false },
    path_model: PathModel::None,
    end: END_ON_ONE,
};

/// OpenAI Images (`/v1/images/generations`, `/v1/images/edits`; GPT image models): the
/// `usage` of the images response, or of the stream's `image_generation.completed` /
/// `image_edit.completed` event, both at the root. The output is image tokens: the
/// documented `output_tokens` is "the number of image tokens in the output image", so it
/// fills the output image part unless `output_tokens_details.image_tokens` says otherwise.
/// No model in the response (the request's, when it is JSON; an edit's multipart form is
/// not read), no text to count (DALL·E models report no usage and are billed per image:
/// their tokens stay unknown, never estimated). The base64 images (`b64_json`, megabytes)
/// are skipped like any long string.
static OPENAI_IMAGES: Dialect = Dialect {
    name: "openai-images",
    request: MODEL_AND_STREAM,
    response: &[
        w(&["usage", "input_tokens"], Slot(Input, 0)),
        w(&["usage", "output_tokens"], Slot(Output, 0)),
        w(&["usage", "total_tokens"], Slot(Total, 0)),
        w(
            &["usage", "input_tokens_details", "image_tokens"],
            Slot(InputImage, 0),
        ),
        w(
            &["usage", "output_tokens_details", "image_tokens"],
            Slot(OutputImage, 0),
        ),
        w(&["usage", "output_tokens"], Slot(OutputImage, 1)),
        w(&["type"], End(EndIf::Is("image_generation.completed"), 0)),
        w(&["type"], End(EndIf::Is("image_edit.completed"), 0)),
    ],
    inner: &[],
    headers: &[],
    combine: FIRST,
    stream: StreamRule::Body { default: false },
    path_model: PathModel::None,
    end: END_ON_ONE,
};

/// Watch lists joined at compile time into one table (`N`: their total length), for
/// tables that share rows.
const fn concat<const N: usize>(parts: &[&[Watch<Target>]]) -> [Watch<Target>; N] {
    let mut out = [w(&[], Stream); N];
    let mut n = 0;
    let mut p = 0;
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            out[n] = parts[p][i];
            n += 1;
            i += 1;
        }
        p += 1;
    }
    assert!(n == N, "N is the parts' total length");
    out
}

/// `concat` with `N` counted: `joined![A, B]` is a `&'static` table of `A`'s rows, then `B`'s.
macro_rules! joined {
    ($($part:expr),+ $(,)?) => {
        &concat::<{ 0 $(+ $part.len())+ }>(&[$($part),+])
    };
}

/// What Anthropic's and Moonshot's Messages streams both read at the root: the message
/// not streamed and the cumulative `message_delta` (its usage counts cache reads and
/// writes apart from `input_tokens`, so they are input too), the end mark, the text.
const ANTHROPIC_ROOT: &[Watch<Target>] = &[
    w(&["model"], ResponseModel),
    w(&["usage", "input_tokens"], Slot(Input, 0)),
    w(&["usage", "cache_read_input_tokens"], Slot(Input, 1)),
    w(&["usage", "cache_read_input_tokens"], Slot(Cached, 0)),
    w(&["usage", "cache_creation_input_tokens"], Slot(Input, 2)),
    w(
        &["usage", "cache_creation_input_tokens"],
        Slot(CacheCreation, 0),
    ),
    // The final figure: `message_delta` (stream) or the message (not streamed).
    w(&["usage", "output_tokens"], Slot(Output, 0)),
    w(&["type"], End(EndIf::Is("message_stop"), 0)),
    // `content_block_delta`: text, thinking, tool input.
    w(&["delta", "text"], Text),
    w(&["delta", "thinking"], Text),
    w(&["delta", "partial_json"], Text),
];

/// What both read of `message_start.message`: the model, the input, the cache reads and
/// writes (as input or not: see each table).
const ANTHROPIC_MESSAGE_START: &[Watch<Target>] = &[
    w(&["message", "model"], ResponseModel),
    w(&["message", "usage", "input_tokens"], Slot(Input, 0)),
    w(
        &["message", "usage", "cache_read_input_tokens"],
        Slot(Cached, 0),
    ),
    w(
        &["message", "usage", "cache_creation_input_tokens"],
        Slot(CacheCreation, 0),
    ),
];

/// What only Anthropic's table reads: the figures Moonshot's does not (thinking, the cache
/// writes' lifetimes, server tools, service tier), at the root and in `message_start`;
/// and `message_start`'s cache reads and writes as input, as at the root.
const ANTHROPIC_ONLY: &[Watch<Target>] = root_and_under!["message";
    ["usage", "output_tokens_details", "thinking_tokens"] => Slot(Reasoning, 0),
    ["usage", "cache_creation", "ephemeral_5m_input_tokens"] => Slot(CacheCreation5m, 0),
    ["usage", "cache_creation", "ephemeral_1h_input_tokens"] => Slot(CacheCreation1h, 0),
    ["usage", "server_tool_use", "web_search_requests"] => Slot(WebSearch, 0),
    ["usage", "server_tool_use", "web_fetch_requests"] => Slot(WebFetch, 0),
    ["usage", "service_tier"] => ServiceTier;
    w(&["message", "usage", "cache_read_input_tokens"], Slot(Input, 1)),
    w(&["message", "usage", "cache_creation_input_tokens"], Slot(Input, 2)),
];

/// Anthropic Messages: the message (non-stream), `message_start.message`, and the
/// cumulative `message_delta.usage`. The `output_tokens` of `message_start` is
/// provisional (documented as such): it is not read, so a stream that never reaches its
/// `message_delta` has an unknown output, estimated from its text.
static ANTHROPIC: Dialect = Dialect {
    name: "anthropic-messages",
    request: MODEL_AND_STREAM,
    response: joined![ANTHROPIC_ROOT, ANTHROPIC_MESSAGE_START, ANTHROPIC_ONLY],
    inner: &[],
    headers: &[],
    combine: SUM_IN_OUT,
    stream: StreamRule::Body { default: false },
    path_model: PathModel::None,
    end: END_ON_ONE,
};

/// Moonshot's (Kimi's) Anthropic-compatible Messages API. Its `message_start` counts the
/// cached tokens inside `input_tokens` while its `message_delta` (and a message not
/// streamed) counts them apart as Anthropic does: so `message_start`'s cache reads are
/// only the cached part, not more input, and a stream cut before `message_delta` does
/// not count them twice. The rest is Anthropic's table, without [`ANTHROPIC_ONLY`].
static ANTHROPIC_MOONSHOT: Dialect = Dialect {
    name: "anthropic-messages",
    response: joined![ANTHROPIC_MESSAGE_START, ANTHROPIC_ROOT],
    request: MODEL_AND_STREAM,
    inner: &[],
    headers: &[],
    combine: SUM_IN_OUT,
    stream: StreamRule::Body { default: false },
    path_model: PathModel::None,
    end: END_ON_ONE,
};

/// What the Gemini API's responses and Gemini Live's turns both carry in `usageMetadata`:
/// the prompt (with the tool-use prompt), thoughts (part of the output), total, cache
/// reads, and the prompt's per-modality breakdown (not the cache and tool-use-prompt
/// breakdowns: parts of the prompt's, which would count twice).
const GEMINI_USAGE: &[Watch<Target>] = &[
    w(&["usageMetadata", "promptTokenCount"], Slot(Input, 0)),
    w(
        &["usageMetadata", "toolUsePromptTokenCount"],
        Slot(Input, 1),
    ),
    w(&["usageMetadata", "thoughtsTokenCount"], Slot(Output, 1)),
    w(&["usageMetadata", "thoughtsTokenCount"], Slot(Reasoning, 0)),
    w(&["usageMetadata", "totalTokenCount"], Slot(Total, 0)),
    w(
        &["usageMetadata", "cachedContentTokenCount"],
        Slot(Cached, 0),
    ),
    w(
        &["usageMetadata", "promptTokensDetails", "modality"],
        Modality(ModalityList::Input),
    ),
    w(
        &["usageMetadata", "promptTokensDetails", "tokenCount"],
        ModalityCount(ModalityList::Input),
    ),
];

const GEMINI_RESPONSE: &[Watch<Target>] = joined![
    &[w(&["modelVersion"], ResponseModel)],
    GEMINI_USAGE,
    &[
        // The candidates' output and its per-modality breakdown.
        w(&["usageMetadata", "candidatesTokenCount"], Slot(Output, 0)),
        w(
            &["usageMetadata", "candidatesTokensDetails", "modality"],
            Modality(ModalityList::Output),
        ),
        w(
            &["usageMetadata", "candidatesTokensDetails", "tokenCount"],
            ModalityCount(ModalityList::Output),
        ),
        // The Gemini API's tier; Vertex's `ON_DEMAND` / `PROVISIONED_THROUGHPUT`.
        w(&["usageMetadata", "serviceTier"], ServiceTier),
        w(&["usageMetadata", "trafficType"], ServiceTier),
        // Generated text (thoughts included).
        w(&["candidates", "content", "parts", "text"], Text),
        // The last chunk gives each candidate its finish reason.
        w(&["candidates", "finishReason"], End(EndIf::IsNot(""), 0)),
    ],
];

const GEMINI_FIELDS: Dialect = Dialect {
    name: "gemini",
    request: &[w(&["model"], RequestModel)],
    response: GEMINI_RESPONSE,
    inner: &[],
    headers: &[],
    combine: SUM_IN_OUT,
    stream: StreamRule::Path(&[":streamGenerateContent"]),
    path_model: PathModel::Models,
    end: END_ON_ONE,
};

/// Gemini API `generateContent` / `streamGenerateContent`.
static GEMINI: Dialect = GEMINI_FIELDS;

/// Vertex AI: the same wire format as the Gemini API.
static VERTEX: Dialect = Dialect {
    name: "vertex",
    ..GEMINI_FIELDS
};

const BEDROCK_STREAM_PATHS: &[&str] = &["/converse-stream", "/invoke-with-response-stream"];

/// Bedrock Converse and ConverseStream (`metadata` event): `usage.inputTokens` excludes
/// the cache tokens.
static BEDROCK_CONVERSE: Dialect = Dialect {
    name: "bedrock-converse",
    request: &[],
    response: &[
        w(&["usage", "inputTokens"], Slot(Input, 0)),
        w(&["usage", "cacheReadInputTokens"], Slot(Input, 1)),
        w(&["usage", "cacheReadInputTokens"], Slot(Cached, 0)),
        w(&["usage", "cacheWriteInputTokens"], Slot(Input, 2)),
        w(&["usage", "cacheWriteInputTokens"], Slot(CacheCreation, 0)),
        w(&["usage", "outputTokens"], Slot(Output, 0)),
        w(&["usage", "totalTokens"], Slot(Total, 0)),
        w(&["serviceTier", "type"], ServiceTier),
        // `contentBlockDelta`: text, reasoning, tool input.
        w(&["delta", "text"], Text),
        w(&["delta", "reasoningContent", "text"], Text),
        w(&["delta", "toolUse", "input"], Text),
        // ConverseStream ends with `messageStop` (its `stopReason`), then `metadata`.
        w(&["stopReason"], End(EndIf::IsNot(""), 0)),
        w(&["metrics", "latencyMs"], End(EndIf::Number, 1)),
    ],
    inner: &[],
    headers: &[],
    combine: SUM_IN_OUT,
    stream: StreamRule::Path(BEDROCK_STREAM_PATHS),
    path_model: PathModel::Bedrock,
    end: Ends {
        required: 0b11,
        done: 0,
    },
};

/// Bedrock InvokeModel (counts in headers) and InvokeModelWithResponseStream (counts in
/// the `amazon-bedrock-invocationMetrics` of the last base64-wrapped chunk).
static BEDROCK_INVOKE: Dialect = Dialect {
    name: "bedrock-invoke",
    request: &[],
    response: &[
        w(&["model"], ResponseModel),
        w(&["bytes"], Inner),
        // A Claude body (not streamed): the cache-write split and server tools, which the
        // headers do not carry.
        w(
            &["usage", "cache_creation", "ephemeral_5m_input_tokens"],
            Slot(CacheCreation5m, 0),
        ),
        w(
            &["usage", "cache_creation", "ephemeral_1h_input_tokens"],
            Slot(CacheCreation1h, 0),
        ),
        w(
            &["usage", "server_tool_use", "web_search_requests"],
            Slot(WebSearch, 0),
        ),
    ],
    inner: &[
        // Claude's `message_start` split of its cache writes.
        w(
            &[
                "message",
                "usage",
                "cache_creation",
                "ephemeral_5m_input_tokens",
            ],
            Slot(CacheCreation5m, 0),
        ),
        w(
            &[
                "message",
                "usage",
                "cache_creation",
                "ephemeral_1h_input_tokens",
            ],
            Slot(CacheCreation1h, 0),
        ),
        w(&["message", "model"], ResponseModel),
        w(
            &["amazon-bedrock-invocationMetrics", "inputTokenCount"],
            Slot(Input, 0),
        ),
        w(
            &[
                "amazon-bedrock-invocationMetrics",
                "cacheReadInputTokenCount",
            ],
            Slot(Input, 1),
        ),
        w(
            &[
                "amazon-bedrock-invocationMetrics",
                "cacheReadInputTokenCount",
            ],
            Slot(Cached, 0),
        ),
        w(
            &[
                "amazon-bedrock-invocationMetrics",
                "cacheWriteInputTokenCount",
            ],
            Slot(Input, 2),
        ),
        w(
            &[
                "amazon-bedrock-invocationMetrics",
                "cacheWriteInputTokenCount",
            ],
            Slot(CacheCreation, 0),
        ),
        w(
            &["amazon-bedrock-invocationMetrics", "outputTokenCount"],
            Slot(Output, 0),
        ),
        // The provider's own deltas (Anthropic's, for Claude).
        w(&["delta", "text"], Text),
        w(&["delta", "thinking"], Text),
        w(&["delta", "partial_json"], Text),
        // The metrics ride on the provider's last event.
        w(
            &["amazon-bedrock-invocationMetrics", "outputTokenCount"],
            End(EndIf::Number, 0),
        ),
    ],
    headers: &[
        ("x-amzn-bedrock-input-token-count", Slot(Input, 0)),
        (
            "x-amzn-bedrock-cache-read-input-token-count",
            Slot(Input, 1),
        ),
        (
            "x-amzn-bedrock-cache-read-input-token-count",
            Slot(Cached, 0),
        ),
        (
            "x-amzn-bedrock-cache-write-input-token-count",
            Slot(Input, 2),
        ),
        (
            "x-amzn-bedrock-cache-write-input-token-count",
            Slot(CacheCreation, 0),
        ),
        ("x-amzn-bedrock-output-token-count", Slot(Output, 0)),
    ],
    combine: SUM_IN_OUT,
    stream: StreamRule::Path(BEDROCK_STREAM_PATHS),
    path_model: PathModel::Bedrock,
    end: END_ON_ONE,
};

/// DashScope native text generation: model only in the request, cumulative usage.
static DASHSCOPE_NATIVE: Dialect = Dialect {
    name: "dashscope-native",
    request: &[w(&["model"], RequestModel)],
    response: &[
        w(&["usage", "input_tokens"], Slot(Input, 0)),
        w(&["usage", "output_tokens"], Slot(Output, 0)),
        w(&["usage", "total_tokens"], Slot(Total, 0)),
        w(
            &["usage", "prompt_tokens_details", "cached_tokens"],
            Slot(Cached, 0),
        ),
        w(
            &[
                "usage",
                "prompt_tokens_details",
                "cache_creation_input_tokens",
            ],
            Slot(CacheCreation, 0),
        ),
        w(
            &["usage", "output_tokens_details", "reasoning_tokens"],
            Slot(Reasoning, 0),
        ),
        // Generated text, text or message result format (cumulative unless the request
        // asked for `incremental_output`).
        w(&["output", "text"], Text),
        w(&["output", "choices", "message", "content"], Text),
        w(&["output", "choices", "message", "reasoning_content"], Text),
        // `"null"` (a string) until the last chunk; text or message result format.
        w(&["output", "finish_reason"], End(EndIf::IsNot("null"), 0)),
        w(
            &["output", "choices", "finish_reason"],
            End(EndIf::IsNot("null"), 0),
        ),
    ],
    inner: &[],
    headers: &[],
    combine: FIRST,
    stream: StreamRule::Header(StreamHeader::DashScopeSse, "enable"),
    path_model: PathModel::None,
    end: END_ON_ONE,
};

/// Ollama native `/api/chat` and `/api/generate`: streams unless told not to.
static OLLAMA_NATIVE: Dialect = Dialect {
    name: "ollama-native",
    request: MODEL_AND_STREAM,
    response: &[
        w(&["model"], ResponseModel),
        w(&["prompt_eval_count"], Slot(Input, 0)),
        w(&["eval_count"], Slot(Output, 0)),
        w(&["done"], End(EndIf::True, 0)),
        w(&["message", "content"], Text),
        w(&["message", "thinking"], Text),
        w(&["response"], Text),
    ],
    inner: &[],
    headers: &[],
    combine: FIRST,
    stream: StreamRule::Body { default: true },
    path_model: PathModel::None,
    end: END_ON_ONE,
};

/// Cohere v2 chat: billed units first, consumed tokens as the fallback.
static COHERE: Dialect = Dialect {
    name: "cohere-v2",
    request: MODEL_AND_STREAM,
    response: root_and_under!["delta";
        ["usage", "billed_units", "input_tokens"] => Slot(Input, 0),
        ["usage", "tokens", "input_tokens"] => Slot(Input, 1),
        ["usage", "billed_units", "output_tokens"] => Slot(Output, 0),
        ["usage", "tokens", "output_tokens"] => Slot(Output, 1),
        ["usage", "cached_tokens"] => Slot(Cached, 0);
        w(&["type"], End(EndIf::Is("message-end"), 0)),
        // `content-delta`, tool plan and tool-call argument deltas.
        w(&["delta", "message", "content", "text"], Text),
        w(&["delta", "message", "tool_plan"], Text),
        w(
            &["delta", "message", "tool_calls", "function", "arguments"],
            Text,
        ),
    ],
    inner: &[],
    headers: &[],
    combine: FIRST,
    stream: StreamRule::Body { default: false },
    path_model: PathModel::None,
    end: END_ON_ONE,
};

/// OpenAI Realtime (and Azure OpenAI's): JSON events in WebSocket messages after an
/// upgrade. `session.created` / `session.updated` name the model; each `response.done`
/// carries that response's usage and closes one record (see [`record_marks`]). Client
/// events may name the model in `session.update`.
static OPENAI_REALTIME: Dialect = Dialect {
    name: "openai-realtime",
    request: &[w(&["session", "model"], RequestModel)],
    response: &[
        w(&["session", "model"], ResponseModel),
        w(&["response", "usage", "input_tokens"], Slot(Input, 0)),
        w(&["response", "usage", "output_tokens"], Slot(Output, 0)),
        w(&["response", "usage", "total_tokens"], Slot(Total, 0)),
        w(
            &["response", "usage", "input_token_details", "cached_tokens"],
            Slot(Cached, 0),
        ),
        w(
            &["response", "usage", "input_token_details", "audio_tokens"],
            Slot(InputAudio, 0),
        ),
        w(
            &["response", "usage", "input_token_details", "image_tokens"],
            Slot(InputImage, 0),
        ),
        w(
            &["response", "usage", "output_token_details", "audio_tokens"],
            Slot(OutputAudio, 0),
        ),
        w(&["type"], End(EndIf::Is("response.done"), 0)),
    ],
    inner: &[],
    headers: &[],
    combine: FIRST,
    stream: StreamRule::Path(&["/realtime"]),
    path_model: PathModel::None,
    end: END_ON_ONE,
};

/// Gemini Live (`BidiGenerateContent`, the Gemini API's and Vertex's): server messages
/// in WebSocket messages after an upgrade. A turn's `usageMetadata` names its counts
/// (`responseTokenCount` for the output, and `responseTokensDetails` for its modalities);
/// `serverContent.turnComplete` closes one record. The client's `setup` names the model.
static GEMINI_LIVE: Dialect = Dialect {
    name: "gemini-live",
    request: &[w(&["setup", "model"], RequestModel)],
    response: joined![
        GEMINI_USAGE,
        &[
            w(&["usageMetadata", "responseTokenCount"], Slot(Output, 0)),
            w(
                &["usageMetadata", "responseTokensDetails", "modality"],
                Modality(ModalityList::Output),
            ),
            w(
                &["usageMetadata", "responseTokensDetails", "tokenCount"],
                ModalityCount(ModalityList::Output),
            ),
            w(&["serverContent", "turnComplete"], End(EndIf::True, 0)),
        ],
    ],
    inner: &[],
    headers: &[],
    combine: SUM_IN_OUT,
    stream: StreamRule::Path(&["BidiGenerateContent"]),
    path_model: PathModel::None,
    end: END_ON_ONE,
};

/// The end marks that close one record of a body carrying several: a realtime session
/// yields one per response (OpenAI's `response.done`, Gemini Live's `turnComplete`).
/// 0: one record per exchange.
pub(crate) fn record_marks(d: &Dialect) -> u8 {
    if core::ptr::eq(d, &OPENAI_REALTIME) || core::ptr::eq(d, &GEMINI_LIVE) {
        d.end.required
    } else {
        0
    }
}

/// The dialect chosen for one exchange, plus the provider to report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Detected {
    pub dialect: &'static Dialect,
    pub provider: Provider,
}

fn provider_from_host(host: &str) -> Option<Provider> {
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let p = if host.ends_with("openai.azure.com") || host.ends_with("cognitiveservices.azure.com") {
        Provider::AzureOpenAi
    } else if host.ends_with("api.mistral.ai") {
        Provider::Mistral
    } else if host.ends_with("deepseek.com") {
        Provider::DeepSeek
    } else if has(&host, "dashscope") && host.ends_with("aliyuncs.com") {
        Provider::DashScope
    } else if host.ends_with("anthropic.com") {
        Provider::Anthropic
    } else if host.ends_with("generativelanguage.googleapis.com") {
        Provider::Gemini
    } else if host.ends_with("aiplatform.googleapis.com") {
        Provider::VertexAi
    } else if has(&host, "bedrock") && host.ends_with("amazonaws.com") {
        Provider::Bedrock
    } else if host.ends_with("cohere.com") || host.ends_with("cohere.ai") {
        Provider::Cohere
    } else if host.ends_with("openai.com") {
        Provider::OpenAi
    } else if host.ends_with("moonshot.ai") || host.ends_with("moonshot.cn") {
        Provider::Moonshot
    } else if host == "x.ai" || host.ends_with(".x.ai") {
        Provider::XAi
    } else {
        return None;
    };
    Some(p)
}

/// The Anthropic Messages dialect, for Anthropic or a host that speaks it (reported as
/// itself): Moonshot's counts `message_start` input differently.
fn anthropic_compatible(host: Option<Provider>) -> Detected {
    match host {
        Some(Provider::Moonshot) => Detected {
            dialect: &ANTHROPIC_MOONSHOT,
            provider: Provider::Moonshot,
        },
        Some(p @ (Provider::DashScope | Provider::DeepSeek)) => Detected {
            dialect: &ANTHROPIC,
            provider: p,
        },
        _ => Detected {
            dialect: &ANTHROPIC,
            provider: Provider::Anthropic,
        },
    }
}

/// Chooses the dialect for a request.
///
/// `path` is the path without its query; `host` the request authority if known.
/// The kind of request (`gen_ai.operation.name`) from the dialect and the API path;
/// `None` for a path that does not say.
pub(crate) fn operation(d: &Dialect, path: &str) -> Option<Operation> {
    let ends = |s: &str| path.ends_with(s);
    let op = match d.name {
        "openai-chat" if ends("/chat/completions") => Operation::Chat,
        "openai-chat" if ends("/completions") => Operation::TextCompletion,
        "openai-chat" if ends("/embeddings") => Operation::Embeddings,
        "openai-responses" | "anthropic-messages" | "bedrock-converse" => Operation::Chat,
        // The conventions name no image operation: `generate_content` is their
        // multimodal content generation.
        "openai-images" => Operation::GenerateContent,
        "gemini" | "vertex" if has(path, ":embedContent") || has(path, ":batchEmbed") => {
            Operation::Embeddings
        }
        "gemini" | "vertex" => Operation::GenerateContent,
        "bedrock-invoke" if has(path, "embed") => Operation::Embeddings,
        "bedrock-invoke" => Operation::Chat,
        "dashscope-native" if has(path, "embedding") => Operation::Embeddings,
        "dashscope-native" => Operation::Chat,
        "ollama-native" if ends("/api/chat") => Operation::Chat,
        "ollama-native" if ends("/api/generate") => Operation::TextCompletion,
        "cohere-v2" if ends("/v2/chat") => Operation::Chat,
        "cohere-v2" if ends("/v2/embed") => Operation::Embeddings,
        _ => return None,
    };
    Some(op)
}

/// Whether `pat` occurs in `hay`. Detection asks this of the same short path about ten
/// times per exchange (`str::contains` set up its two-way searcher each time: 7% of a
/// small exchange's instructions, callgrind), so it is a word-at-a-time scan for the
/// places where both the pattern's first and last bytes are (eight starts per step, see
/// `swar`), each compared whole; a byte-wise scan for the last few starts. At most
/// `hay.len()` comparisons of `pat.len()` bytes, and the patterns are short constants:
/// linear in the path.
pub(crate) fn has(hay: &str, pat: &str) -> bool {
    use crate::swar::{first, rep, word, zeros};
    let (h, p) = (hay.as_bytes(), pat.as_bytes());
    let (Some(&head), Some(&tail)) = (p.first(), p.last()) else {
        return true;
    };
    if h.len() < p.len() {
        return false;
    }
    let last = h.len() - p.len();
    let at_hit = |at: usize| &h[at..at + p.len()] == p;
    let mut at = 0;
    // Eight starts `at..at + 8` per step: their first bytes and their last bytes.
    while at + p.len() + 7 <= h.len() {
        let mut both =
            zeros(word(h, at) ^ rep(head)) & zeros(word(h, at + p.len() - 1) ^ rep(tail));
        while both != 0 {
            if at_hit(at + first(both)) {
                return true;
            }
            both &= both - 1;
        }
        at += 8;
    }
    (at..=last).any(|at| h[at] == head && h[at + p.len() - 1] == tail && at_hit(at))
}

pub(crate) fn detect(
    path: &str,
    host: Option<&str>,
    has_anthropic_version: bool,
    has_dashscope_sse: bool,
    forced: Option<Provider>,
) -> Detected {
    let is_responses = path.ends_with("/responses");
    let is_images = path.ends_with("/images/generations") || path.ends_with("/images/edits");
    // OpenAI `/v1/realtime`, Azure `/openai/realtime` and `/openai/v1/realtime`.
    let is_realtime = path.ends_with("/realtime");
    let is_azure_realtime = is_realtime && path.starts_with("/openai/");
    // Gemini Live, the Gemini API's (`…GenerativeService.BidiGenerateContent`) and
    // Vertex's (`…LlmBidiService/BidiGenerateContent`).
    let is_live = has(path, "BidiGenerateContent");
    let is_azure = has(path, "/openai/deployments/");
    let is_gemini = has(path, ":generateContent") || has(path, ":streamGenerateContent");
    let is_vertex = is_gemini && has(path, "/projects/") && has(path, "/locations/");
    // The suffixes first: cheaper than the search, and they fail on most paths.
    let is_bedrock = (path.ends_with("/converse")
        || path.ends_with("/converse-stream")
        || path.ends_with("/invoke")
        || path.ends_with("/invoke-with-response-stream"))
        && has(path, "/model/");
    let is_converse = path.ends_with("/converse") || path.ends_with("/converse-stream");
    let is_dashscope_native = has(path, "/services/aigc/");
    let is_ollama_native = path.ends_with("/api/chat") || path.ends_with("/api/generate");
    let is_cohere = path.ends_with("/v2/chat");
    let is_anthropic = path.ends_with("/v1/messages") || path.ends_with("/messages");
    let openai_family = |p: Provider| Detected {
        dialect: if is_realtime {
            &OPENAI_REALTIME
        } else if is_images {
            &OPENAI_IMAGES
        } else if is_responses {
            &OPENAI_RESPONSES
        } else {
            &OPENAI_CHAT
        },
        provider: p,
    };
    let bedrock = || Detected {
        dialect: if is_converse {
            &BEDROCK_CONVERSE
        } else {
            &BEDROCK_INVOKE
        },
        provider: Provider::Bedrock,
    };
    if let Some(p) = forced {
        return match p {
            Provider::Anthropic => Detected {
                dialect: &ANTHROPIC,
                provider: p,
            },
            Provider::Moonshot | Provider::DeepSeek | Provider::DashScope
                if is_anthropic || has_anthropic_version =>
            {
                anthropic_compatible(Some(p))
            }
            Provider::Gemini => Detected {
                dialect: if is_live { &GEMINI_LIVE } else { &GEMINI },
                provider: p,
            },
            Provider::VertexAi => Detected {
                dialect: if is_live { &GEMINI_LIVE } else { &VERTEX },
                provider: p,
            },
            Provider::Bedrock => bedrock(),
            Provider::DashScope if is_dashscope_native || has_dashscope_sse => Detected {
                dialect: &DASHSCOPE_NATIVE,
                provider: p,
            },
            Provider::Ollama if is_ollama_native => Detected {
                dialect: &OLLAMA_NATIVE,
                provider: p,
            },
            Provider::Cohere => Detected {
                dialect: &COHERE,
                provider: p,
            },
            _ => openai_family(p),
        };
    }
    let from_host = host.and_then(provider_from_host);
    if is_live {
        let vertex = has(path, "aiplatform") || from_host == Some(Provider::VertexAi);
        return Detected {
            dialect: &GEMINI_LIVE,
            provider: if vertex {
                Provider::VertexAi
            } else {
                Provider::Gemini
            },
        };
    }
    if is_azure || is_azure_realtime {
        return openai_family(Provider::AzureOpenAi);
    }
    if is_vertex {
        return Detected {
            dialect: &VERTEX,
            provider: Provider::VertexAi,
        };
    }
    if is_gemini {
        let provider = if from_host == Some(Provider::VertexAi) {
            Provider::VertexAi
        } else {
            Provider::Gemini
        };
        return Detected {
            dialect: if provider == Provider::VertexAi {
                &VERTEX
            } else {
                &GEMINI
            },
            provider,
        };
    }
    if is_bedrock {
        return bedrock();
    }
    if is_dashscope_native {
        return Detected {
            dialect: &DASHSCOPE_NATIVE,
            provider: Provider::DashScope,
        };
    }
    if is_ollama_native {
        return Detected {
            dialect: &OLLAMA_NATIVE,
            provider: Provider::Ollama,
        };
    }
    if is_cohere {
        return Detected {
            dialect: &COHERE,
            provider: Provider::Cohere,
        };
    }
    if is_anthropic || has_anthropic_version {
        return anthropic_compatible(from_host);
    }
    if has_dashscope_sse {
        return Detected {
            dialect: &DASHSCOPE_NATIVE,
            provider: Provider::DashScope,
        };
    }
    let provider = match from_host {
        Some(
            p @ (Provider::AzureOpenAi
            | Provider::Mistral
            | Provider::DeepSeek
            | Provider::DashScope
            | Provider::Moonshot
            | Provider::XAi),
        ) => p,
        _ if has(path, "/compatible-mode/") => Provider::DashScope,
        _ => Provider::OpenAi,
    };
    openai_family(provider)
}

/// Whether detection only guessed: no path, header or host named a provider, and the
/// OpenAI-compatible dialect was picked because it is the most common one. A guessed
/// provider is reported only once the traffic proves to be LLM traffic.
pub(crate) fn guessed(
    path: &str,
    host: Option<&str>,
    detected: &Detected,
    forced: Option<Provider>,
) -> bool {
    let openai_path = [
        "/chat/completions",
        "/completions",
        "/embeddings",
        "/responses",
    ]
    .iter()
    .any(|suffix| path.ends_with(suffix));
    forced.is_none()
        && core::ptr::eq(detected.dialect, &OPENAI_CHAT)
        && detected.provider == Provider::OpenAi
        && !openai_path
        && host.and_then(provider_from_host).is_none()
}

/// The default dialect when no request head was seen.
pub(crate) fn fallback() -> Detected {
    Detected {
        dialect: &OPENAI_CHAT,
        provider: Provider::OpenAi,
    }
}

/// The model named in the URL path, percent-decoded.
pub(crate) fn path_model(rule: PathModel, path: &str) -> Option<String> {
    let raw = match rule {
        PathModel::None => return None,
        PathModel::Models => {
            let start = path.rfind("/models/")? + "/models/".len();
            let rest = &path[start..];
            let end = rest.find([':', '/']).unwrap_or(rest.len());
            &rest[..end]
        }
        PathModel::Bedrock => {
            let start = path.find("/model/")? + "/model/".len();
            let rest = &path[start..];
            // The model id may be an ARN (which percent-encodes its own `/`); the API
            // method is the last segment.
            let end = rest.rfind('/').unwrap_or(rest.len());
            &rest[..end]
        }
    };
    // Like a model in a body: longer than the value cap is unknown (and never copied).
    if raw.len() > 3 * crate::scan::VALUE_CAP {
        return None;
    }
    let decoded = percent_decode(raw);
    if decoded.is_empty() || decoded.len() > crate::scan::VALUE_CAP {
        None
    } else {
        Some(decoded)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `StreamHeader::ALL` holds each variant at its discriminant: the head reader's slot
    /// for a header is `header as usize`.
    #[test]
    fn stream_headers_at_their_slots() {
        for (i, h) in StreamHeader::ALL.into_iter().enumerate() {
            assert_eq!(h as usize, i, "{h:?}");
            assert_eq!(h.name(), h.name().to_ascii_lowercase(), "{h:?}");
        }
    }

    /// `has` answers as `str::contains` does: every substring of some paths (at every
    /// start and length, so first-byte hits that fail later too), patterns longer than
    /// the path, and near misses.
    #[test]
    fn has_agrees_with_contains() {
        let hays = [
            "",
            "/v1/chat/completions",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            "//mmodel//model/x/converse",
            "aaaaab",
            // Bytes one above a pattern byte (`` ` `` after `a`, `.` after `/`): the word
            // scan's zero-byte test may flag them too, and they must not match.
            "a`a`aa`ba`b`/model.`a/mode/./model",
            "/openai/deployments/x/chat/completions?api-version=1",
        ];
        let mut pats: Vec<String> = vec!["".into(), "/model/".into(), "aab".into(), "x/".into()];
        for h in hays {
            for a in 0..=h.len() {
                for b in a..=h.len() {
                    pats.push(h[a..b].to_owned());
                    pats.push(format!("{}!", &h[a..b]));
                }
            }
        }
        for h in hays {
            for p in &pats {
                assert_eq!(has(h, p), h.contains(p.as_str()), "{p:?} in {h:?}");
            }
        }
    }

    #[test]
    fn path_models() {
        assert_eq!(
            path_model(
                PathModel::Models,
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
            ),
            Some("gemini-2.5-flash".into())
        );
        assert_eq!(
            path_model(
                PathModel::Bedrock,
                "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
            ),
            Some("anthropic.claude-3-haiku-20240307-v1:0".into())
        );
        assert_eq!(
            path_model(
                PathModel::Bedrock,
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/converse"
            ),
            Some("arn:aws:bedrock:us-east-1:1:inference-profile/us.x".into())
        );
        assert_eq!(
            path_model(PathModel::Bedrock, "/model/%/converse"),
            Some("%".into())
        );
        assert_eq!(
            path_model(PathModel::Bedrock, "/model/%4"),
            Some("%4".into())
        );
    }

    #[test]
    fn detection_by_path() {
        let d = |p: &str| detect(p, None, false, false, None).dialect.name;
        assert_eq!(d("/v1/chat/completions"), "openai-chat");
        assert_eq!(d("/v1/responses"), "openai-responses");
        assert_eq!(
            d("/openai/deployments/gpt4o-prod/chat/completions"),
            "openai-chat"
        );
        assert_eq!(d("/v1/messages"), "anthropic-messages");
        assert_eq!(
            d("/v1beta/models/gemini-2.0-flash:generateContent"),
            "gemini"
        );
        assert_eq!(
            d("/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:streamGenerateContent"),
            "vertex"
        );
        assert_eq!(
            d("/model/amazon.nova-lite-v1%3A0/converse-stream"),
            "bedrock-converse"
        );
        assert_eq!(d("/model/mistral.mistral-large/invoke"), "bedrock-invoke");
        assert_eq!(
            d("/api/v1/services/aigc/text-generation/generation"),
            "dashscope-native"
        );
        assert_eq!(d("/api/chat"), "ollama-native");
        assert_eq!(d("/v2/chat"), "cohere-v2");
        assert_eq!(d("/whatever"), "openai-chat");
        assert_eq!(d("/v1/realtime"), "openai-realtime");
        assert_eq!(d("/openai/realtime"), "openai-realtime");
        assert_eq!(d("/v1/images/generations"), "openai-images");
        assert_eq!(d("/v1/images/edits"), "openai-images");
        assert_eq!(
            d("/openai/deployments/gpt-image-1/images/generations"),
            "openai-images"
        );
        // Not a generation: DALL·E 2 variations carry no usage, the chat table reads none.
        assert_eq!(d("/v1/images/variations"), "openai-chat");
        assert_eq!(
            d("/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"),
            "gemini-live"
        );
        let p = |p: &str| detect(p, None, false, false, None).provider;
        assert_eq!(p("/openai/realtime"), Provider::AzureOpenAi);
        assert_eq!(p("/v1/realtime"), Provider::OpenAi);
        assert_eq!(
            p("/openai/deployments/gpt-image-1/images/edits"),
            Provider::AzureOpenAi
        );
        let op = |path: &str| operation(detect(path, None, false, false, None).dialect, path);
        assert_eq!(
            op("/v1/images/generations"),
            Some(Operation::GenerateContent)
        );
        assert_eq!(op("/v1/images/edits"), Some(Operation::GenerateContent));
        assert_eq!(
            p("/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"),
            Provider::VertexAi
        );
    }
}
