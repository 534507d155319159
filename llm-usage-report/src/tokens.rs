//! The token figures of a record, and what each becomes in every sink: one table.
//!
//! A frontend never names a record field: it walks [`TOKEN_FIELDS`] and asks each row for
//! its value, its filter-state key, its per-type counter and its OpenTelemetry token type.
//! A figure added to `UsageRecord` (another token kind) is one more row here, and the
//! filter's state and counters, the tower layer's and the reqwest adapter's counters and
//! histograms all carry it.

use llm_usage_core::UsageRecord;

/// A kind of token counted, in the OpenTelemetry `gen_ai.token.type` vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenType {
    /// All input tokens (cached ones included): `input`.
    Input,
    /// All output tokens (reasoning included): `output`.
    Output,
    /// Input tokens read from a provider cache: `input_cache_read`.
    InputCacheRead,
    /// Input tokens written to a provider cache: `input_cache_write`.
    InputCacheWrite,
    /// Reasoning tokens: `reasoning`.
    Reasoning,
}

impl TokenType {
    /// Every token type, in a stable order.
    pub const ALL: [TokenType; 5] = [
        TokenType::Input,
        TokenType::Output,
        TokenType::InputCacheRead,
        TokenType::InputCacheWrite,
        TokenType::Reasoning,
    ];

    /// The `gen_ai.token.type` value.
    ///
    /// ```
    /// assert_eq!(llm_usage_report::tokens::TokenType::InputCacheRead.as_str(), "input_cache_read");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenType::Input => "input",
            TokenType::Output => "output",
            TokenType::InputCacheRead => "input_cache_read",
            TokenType::InputCacheWrite => "input_cache_write",
            TokenType::Reasoning => "reasoning",
        }
    }

    /// Whether the type is a subset of another (cache reads and writes of `input`,
    /// reasoning of `output`). The OpenTelemetry `gen_ai.token.type` values are `input`
    /// and `output` only: the `gen_ai.client.token.usage` histogram carries those two, so
    /// a sum over its types counts each token once; subsets have counters of their own
    /// (`gen_ai.client.inference.usage.*`, [`TokenField::otel_counter`]).
    ///
    /// ```
    /// use llm_usage_report::tokens::TokenType;
    /// let on_histogram: Vec<_> = TokenType::ALL.iter().filter(|t| !t.is_subset()).collect();
    /// assert_eq!(on_histogram, [&TokenType::Input, &TokenType::Output]);
    /// ```
    pub const fn is_subset(self) -> bool {
        !matches!(self, TokenType::Input | TokenType::Output)
    }

    /// This type's figure in `record` (`None`: unknown, never 0).
    pub fn value(self, record: &UsageRecord) -> Option<u64> {
        self.field().value(record)
    }

    /// This type's row of [`TOKEN_FIELDS`].
    pub fn field(self) -> &'static TokenField {
        match self {
            TokenType::Input => &TOKEN_FIELDS[0],
            TokenType::Output => &TOKEN_FIELDS[1],
            TokenType::InputCacheRead => &TOKEN_FIELDS[3],
            TokenType::InputCacheWrite => &TOKEN_FIELDS[4],
            TokenType::Reasoning => &TOKEN_FIELDS[5],
        }
    }
}

/// One token figure of the record and its names in every sink.
#[derive(Debug)]
pub struct TokenField {
    /// The `UsageRecord` field, as the record's JSON names it.
    pub field: &'static str,
    /// Its OpenTelemetry token type, for histograms and counters labelled by type (`None`:
    /// not a type of its own, e.g. the total, which would double-count).
    pub token_type: Option<TokenType>,
    /// The filter-state key (`wasm.<prefix>.<key>`), ASM's names.
    pub state_key: &'static str,
    /// The key naming its per-type counter in the filter's `metrics` configuration.
    pub metric_key: &'static str,
    /// Its per-type counter in the `asm` profile (`None`: not counted there by default).
    pub asm_counter: Option<&'static str>,
    /// Its OpenTelemetry GenAI counter, `gen_ai.client.inference.usage.*` (unit
    /// `{token}`), written with `_` for the `metrics` facade, without `_total` (`None`:
    /// not a usage counter, e.g. the total). Cache and reasoning counters are subsets of
    /// the input and output ones: a sum over these names double-counts, a sum of one does
    /// not.
    pub otel_counter: Option<&'static str>,
    /// Its span attribute (`gen_ai.usage.*`, the current names: `cache_write`, not
    /// `cache_creation`), declared on the span of [`crate::span`] (`None`: not one).
    pub span_attribute: Option<&'static str>,
    /// Its `gen_ai.token.modality` (`text`, `image`, `audio`), when the figure counts one
    /// modality; `None` for a figure over all of them (reported as `unknown`).
    pub modality: Option<&'static str>,
    /// For a part of another figure that is not an OpenTelemetry token type (audio and
    /// image parts of input and output, the 5-minute / 1-hour parts of cache writes): the
    /// token-type label value a sink that labels parts by type gives it (the filter's
    /// per-exchange histogram). Such a series is a subset of its parent's: a sum over
    /// token types double-counts; sum `input` and `output` only.
    pub part_type: Option<&'static str>,
    get: fn(&UsageRecord) -> Option<u64>,
}

impl TokenField {
    /// The figure in `record`.
    pub fn value(&self, record: &UsageRecord) -> Option<u64> {
        (self.get)(record)
    }

    /// The token-type label value of this figure's series: its OpenTelemetry type, or for
    /// a part its [`part_type`](TokenField::part_type) (`None`: no series by type, the
    /// total).
    ///
    /// ```
    /// use llm_usage_report::tokens::TOKEN_FIELDS;
    /// let labels: Vec<_> = TOKEN_FIELDS.iter().filter_map(|f| f.type_label()).collect();
    /// assert_eq!(labels[..2], ["input", "output"]);
    /// assert!(labels.contains(&"input_audio"));
    /// ```
    pub fn type_label(&self) -> Option<&'static str> {
        self.token_type.map(TokenType::as_str).or(self.part_type)
    }
}

/// One known token figure of a record that has series of its own: a token type, or a part
/// of one (audio, image, a cache-write lifetime).
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// Its row of [`TOKEN_FIELDS`].
    pub field: &'static TokenField,
    /// Its token type (`None`: a part; [`Figure::type_label`] names it).
    pub token_type: Option<TokenType>,
    /// The token-type label value of its series ([`TokenField::type_label`]).
    pub type_label: &'static str,
    /// The figure.
    pub value: u64,
}

/// The known figures of `record` with series of their own, in table order: every token
/// type and every part the traffic carried (unknown figures are left out, never 0; the
/// total has no series by type). The one walk every sink's token series start from: a
/// sink puts types and parts on its counters by type (parts: a subset of their parent,
/// a sum over types double-counts), and only types where a series must stay a sum of
/// types (the OpenTelemetry histogram and `gen_ai.client.inference.usage.*` counters).
///
/// ```
/// use llm_usage_report::{tokens::figures, UsageRecord};
///
/// let mut r = UsageRecord::default();
/// r.input_tokens = Some(120);
/// r.input_audio_tokens = Some(100);
/// r.total_tokens = Some(130);
/// let f: Vec<_> = figures(&r).map(|f| (f.type_label, f.value)).collect();
/// assert_eq!(f, [("input", 120), ("input_audio", 100)]);
/// ```
pub fn figures(record: &UsageRecord) -> impl Iterator<Item = Figure> + '_ {
    TOKEN_FIELDS.iter().filter_map(move |field| {
        Some(Figure {
            field,
            token_type: field.token_type,
            type_label: field.type_label()?,
            value: field.value(record)?,
        })
    })
}

/// Every token figure a record carries, in the order frontends report them.
///
/// ```
/// use llm_usage_report::{tokens::TOKEN_FIELDS, UsageRecord};
///
/// let mut r = UsageRecord::default();
/// r.input_tokens = Some(12);
/// let known: Vec<_> = TOKEN_FIELDS
///     .iter()
///     .filter_map(|f| Some((f.state_key, f.value(&r)?)))
///     .collect();
/// assert_eq!(known, [("request_prompt_tokens", 12)]);
/// ```
pub static TOKEN_FIELDS: [TokenField; 12] = [
    TokenField {
        field: "input_tokens",
        token_type: Some(TokenType::Input),
        state_key: "request_prompt_tokens",
        metric_key: "prompt_tokens",
        asm_counter: Some("asm_llm_proxy_prompt_tokens"),
        otel_counter: Some("gen_ai_client_inference_usage_input_tokens"),
        span_attribute: Some("gen_ai.usage.input_tokens"),
        modality: None,
        part_type: None,
        get: |r| r.input_tokens,
    },
    TokenField {
        field: "output_tokens",
        token_type: Some(TokenType::Output),
        state_key: "request_completion_tokens",
        metric_key: "completion_tokens",
        asm_counter: Some("asm_llm_proxy_completion_tokens"),
        otel_counter: Some("gen_ai_client_inference_usage_output_tokens"),
        span_attribute: Some("gen_ai.usage.output_tokens"),
        modality: None,
        part_type: None,
        get: |r| r.output_tokens,
    },
    TokenField {
        field: "total_tokens",
        token_type: None,
        state_key: "request_total_tokens",
        metric_key: "total_tokens",
        asm_counter: None,
        otel_counter: None,
        span_attribute: None,
        modality: None,
        part_type: None,
        get: |r| r.total_tokens,
    },
    TokenField {
        field: "cached_input_tokens",
        token_type: Some(TokenType::InputCacheRead),
        state_key: "request_cached_tokens",
        metric_key: "cached_tokens",
        asm_counter: Some("asm_llm_proxy_cached_tokens"),
        otel_counter: Some("gen_ai_client_inference_usage_cache_read_input_tokens"),
        span_attribute: Some("gen_ai.usage.cache_read.input_tokens"),
        modality: None,
        part_type: None,
        get: |r| r.cached_input_tokens,
    },
    TokenField {
        field: "cache_creation_input_tokens",
        token_type: Some(TokenType::InputCacheWrite),
        state_key: "request_cache_creation_tokens",
        metric_key: "cache_creation_tokens",
        asm_counter: Some("asm_llm_proxy_cache_creation_tokens"),
        otel_counter: Some("gen_ai_client_inference_usage_cache_write_input_tokens"),
        span_attribute: Some("gen_ai.usage.cache_write.input_tokens"),
        modality: None,
        part_type: None,
        get: |r| r.cache_creation_input_tokens,
    },
    TokenField {
        field: "reasoning_tokens",
        token_type: Some(TokenType::Reasoning),
        state_key: "request_reasoning_tokens",
        metric_key: "reasoning_tokens",
        asm_counter: Some("asm_llm_proxy_reasoning_tokens"),
        otel_counter: Some("gen_ai_client_inference_usage_reasoning_output_tokens"),
        span_attribute: Some("gen_ai.usage.reasoning.output_tokens"),
        modality: None,
        part_type: None,
        get: |r| r.reasoning_tokens,
    },
    // The audio part of `input_tokens`. Not an OpenTelemetry token type: no type of its own, no usage counter
    // or span attribute (its parent's carry it); the filter state and the `asm` counter
    // use the record's name.
    TokenField {
        field: "input_audio_tokens",
        token_type: None,
        state_key: "input_audio_tokens",
        metric_key: "input_audio_tokens",
        asm_counter: Some("asm_llm_proxy_input_audio_tokens"),
        otel_counter: None,
        span_attribute: None,
        modality: Some("audio"),
        part_type: Some("input_audio"),
        get: |r| r.input_audio_tokens,
    },
    // The image part of `input_tokens`. Not an OpenTelemetry token type: no type of its own, no usage counter
    // or span attribute (its parent's carry it); the filter state and the `asm` counter
    // use the record's name.
    TokenField {
        field: "input_image_tokens",
        token_type: None,
        state_key: "input_image_tokens",
        metric_key: "input_image_tokens",
        asm_counter: Some("asm_llm_proxy_input_image_tokens"),
        otel_counter: None,
        span_attribute: None,
        modality: Some("image"),
        part_type: Some("input_image"),
        get: |r| r.input_image_tokens,
    },
    // The audio part of `output_tokens`. Not an OpenTelemetry token type: no type of its own, no usage counter
    // or span attribute (its parent's carry it); the filter state and the `asm` counter
    // use the record's name.
    TokenField {
        field: "output_audio_tokens",
        token_type: None,
        state_key: "output_audio_tokens",
        metric_key: "output_audio_tokens",
        asm_counter: Some("asm_llm_proxy_output_audio_tokens"),
        otel_counter: None,
        span_attribute: None,
        modality: Some("audio"),
        part_type: Some("output_audio"),
        get: |r| r.output_audio_tokens,
    },
    // The image part of `output_tokens`. Not an OpenTelemetry token type: no type of its own, no usage counter
    // or span attribute (its parent's carry it); the filter state and the `asm` counter
    // use the record's name.
    TokenField {
        field: "output_image_tokens",
        token_type: None,
        state_key: "output_image_tokens",
        metric_key: "output_image_tokens",
        asm_counter: Some("asm_llm_proxy_output_image_tokens"),
        otel_counter: None,
        span_attribute: None,
        modality: Some("image"),
        part_type: Some("output_image"),
        get: |r| r.output_image_tokens,
    },
    // The 5-minute part of `cache_creation_input_tokens`. Not an OpenTelemetry token type: no type of its own, no usage counter
    // or span attribute (its parent's carry it); the filter state and the `asm` counter
    // use the record's name.
    TokenField {
        field: "cache_creation_5m_input_tokens",
        token_type: None,
        state_key: "cache_creation_5m_input_tokens",
        metric_key: "cache_creation_5m_tokens",
        asm_counter: Some("asm_llm_proxy_cache_creation_5m_tokens"),
        otel_counter: None,
        span_attribute: None,
        modality: None,
        part_type: Some("input_cache_write_5m"),
        get: |r| r.cache_creation_5m_input_tokens,
    },
    // The 1-hour part of `cache_creation_input_tokens`. Not an OpenTelemetry token type: no type of its own, no usage counter
    // or span attribute (its parent's carry it); the filter state and the `asm` counter
    // use the record's name.
    TokenField {
        field: "cache_creation_1h_input_tokens",
        token_type: None,
        state_key: "cache_creation_1h_input_tokens",
        metric_key: "cache_creation_1h_tokens",
        asm_counter: Some("asm_llm_proxy_cache_creation_1h_tokens"),
        otel_counter: None,
        span_attribute: None,
        modality: None,
        part_type: Some("input_cache_write_1h"),
        get: |r| r.cache_creation_1h_input_tokens,
    },
];

// Field by field: `UsageRecord` may become `#[non_exhaustive]` (issue 18, part 4).
#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_its_row_and_reads_its_field() {
        let mut r = UsageRecord::default();
        r.input_tokens = Some(1);
        r.output_tokens = Some(2);
        r.total_tokens = Some(3);
        r.cached_input_tokens = Some(4);
        r.cache_creation_input_tokens = Some(5);
        r.reasoning_tokens = Some(6);
        r.input_audio_tokens = Some(7);
        r.input_image_tokens = Some(8);
        r.output_audio_tokens = Some(9);
        r.output_image_tokens = Some(10);
        r.cache_creation_5m_input_tokens = Some(11);
        r.cache_creation_1h_input_tokens = Some(12);
        let values: Vec<_> = TOKEN_FIELDS.iter().map(|f| f.value(&r)).collect();
        assert_eq!(values, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map(Some));
        // Keys and counter names are unique.
        for (i, f) in TOKEN_FIELDS.iter().enumerate() {
            for g in &TOKEN_FIELDS[i + 1..] {
                assert!(f.state_key != g.state_key && f.metric_key != g.metric_key);
                assert!(f.asm_counter.is_none() || f.asm_counter != g.asm_counter);
            }
            // A part has no type of its own (it would double-count in a sum by type).
            assert!(f.part_type.is_none() || f.token_type.is_none());
        }
        for t in TokenType::ALL {
            assert_eq!(t.field().token_type, Some(t));
        }
        assert_eq!(
            TOKEN_FIELDS
                .iter()
                .filter(|f| f.token_type.is_some())
                .count(),
            TokenType::ALL.len()
        );
        assert_eq!(TokenType::Reasoning.value(&UsageRecord::default()), None);
    }
}
