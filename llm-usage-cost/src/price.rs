//! The cost of one exchange: its record's counts times its entry's prices.
//!
//! Following the record's OpenTelemetry normalisation, cached and cache-creation tokens
//! are parts of `input_tokens`, and reasoning tokens part of `output_tokens`. The counts
//! form a tree, written once in [`INPUT_PARTS`] / [`OUTPUT_PARTS`] / [`PER_REQUEST`]:
//!
//! ```text
//! input ── cached_input
//!       ├─ cache_creation_input ── cache_creation_1h_input
//!       ├─ input_audio
//!       └─ input_image
//! output ─ output_audio
//!       └─ output_image
//! per request: web_search_request
//! ```
//!
//! Each part with a known count is billed at its own price, else at its parent's (the
//! effective price); what its parts leave of a parent is billed at the parent's. So a
//! part without a price, or with an unknown count, simply stays in its parent: the issue's
//! "cached at `cached_input`, else `input`" and "the 1 h part at `cache_creation_1h_input`
//! when both figures exist". A part's count never needed: unknown counts as 0 (the whole
//! parent is then billed at the parent's price).
//!
//! The counts the entry needs: `input` always (every entry prices it), `output` when the
//! entry prices output. Either unknown makes the cost unknown, never a guess. Parts that
//! add up to more than their parent also make it unknown (the record contradicts itself).
//!
//! A figure the record gains later plugs in through [`Counts::from_record`] alone: its row
//! is already in the tree.

use crate::amount::Amount;
use crate::table::{Entry, PriceTable, Prices};
use llm_usage_core::UsageRecord;

/// The counts pricing reads, taken from a [`UsageRecord`]; `None` is unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// All input tokens.
    pub input: Option<u64>,
    /// Input tokens read from cache.
    pub cached_input: Option<u64>,
    /// Input tokens written to cache (all TTLs).
    pub cache_creation_input: Option<u64>,
    /// The part of the cache writes with a 1 h TTL.
    pub cache_creation_1h_input: Option<u64>,
    /// Audio input tokens.
    pub input_audio: Option<u64>,
    /// Image input tokens.
    pub input_image: Option<u64>,
    /// All output tokens, reasoning included.
    pub output: Option<u64>,
    /// Audio output tokens.
    pub output_audio: Option<u64>,
    /// Image output tokens.
    pub output_image: Option<u64>,
    /// Server-side web searches.
    pub web_search_requests: Option<u64>,
}

impl Counts {
    /// The counts of a record.
    pub fn from_record(r: &UsageRecord) -> Counts {
        Counts {
            input: r.input_tokens,
            cached_input: r.cached_input_tokens,
            cache_creation_input: r.cache_creation_input_tokens,
            cache_creation_1h_input: r.cache_creation_1h_input_tokens,
            input_audio: r.input_audio_tokens,
            input_image: r.input_image_tokens,
            output: r.output_tokens,
            output_audio: r.output_audio_tokens,
            output_image: r.output_image_tokens,
            web_search_requests: r.web_search_requests,
        }
    }
}

/// A figure pricing may need (one per priced figure of the record, which grows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Figure {
    /// `input_tokens`.
    Input,
    /// `output_tokens`.
    Output,
}

/// One priced part: its name, count and price, and its own parts.
#[derive(Debug)]
pub struct Row {
    /// The price field's name in the table.
    pub name: &'static str,
    count: fn(&Counts) -> Option<u64>,
    price: fn(&Prices) -> Option<u64>,
    parts: &'static [Row],
}

/// The parts of `input_tokens`.
pub const INPUT_PARTS: &[Row] = &[
    Row {
        name: "cached_input",
        count: |c| c.cached_input,
        price: |p| p.cached_input,
        parts: &[],
    },
    Row {
        name: "cache_creation_input",
        count: |c| c.cache_creation_input,
        price: |p| p.cache_creation_input,
        parts: &[Row {
            name: "cache_creation_1h_input",
            count: |c| c.cache_creation_1h_input,
            price: |p| p.cache_creation_1h_input,
            parts: &[],
        }],
    },
    Row {
        name: "input_audio",
        count: |c| c.input_audio,
        price: |p| p.input_audio,
        parts: &[],
    },
    Row {
        name: "input_image",
        count: |c| c.input_image,
        price: |p| p.input_image,
        parts: &[],
    },
];

/// The parts of `output_tokens` (reasoning is plain output: no row).
pub const OUTPUT_PARTS: &[Row] = &[
    Row {
        name: "output_audio",
        count: |c| c.output_audio,
        price: |p| p.output_audio,
        parts: &[],
    },
    Row {
        name: "output_image",
        count: |c| c.output_image,
        price: |p| p.output_image,
        parts: &[],
    },
];

/// Charges per request, priced per unit (not per `per_tokens`).
pub const PER_REQUEST: &[Row] = &[Row {
    name: "web_search_request",
    count: |c| c.web_search_requests,
    price: |p| p.web_search_request,
    parts: &[],
}];

/// The outcome of pricing one exchange (more reasons for no cost may come).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pricing {
    /// The exchange named no model: nothing to look up (counted as a lookup miss).
    NoModel,
    /// No entry matches the model: no cost (a lookup miss).
    Miss,
    /// An entry matched, but a count it needs is unknown.
    Unknown(Figure),
    /// An entry matched, but the record's parts exceed their whole (or the amount
    /// overflows): no cost rather than a wrong one.
    Inconsistent,
    /// The exact cost, and the key of the entry that priced it.
    Cost {
        /// The amount, in the table's currency.
        amount: Amount,
        /// The entry's key.
        key: String,
    },
}

impl Pricing {
    /// The amount, when there is one.
    pub fn amount(&self) -> Option<Amount> {
        match self {
            Pricing::Cost { amount, .. } => Some(*amount),
            _ => None,
        }
    }

    /// Whether this is a price lookup miss (no model, or no entry for it).
    pub fn is_miss(&self) -> bool {
        matches!(self, Pricing::NoModel | Pricing::Miss)
    }
}

impl PriceTable {
    /// Prices a record: its `model` (the response model, else the request model, else the
    /// model in the path) looked up in the table, its counts times the entry's prices.
    pub fn price(&self, record: &UsageRecord) -> Pricing {
        let Some(model) = record.model.as_deref() else {
            return Pricing::NoModel;
        };
        let Some(entry) = self.lookup(model) else {
            return Pricing::Miss;
        };
        self.price_counts(entry, &Counts::from_record(record))
    }

    /// Prices counts with one entry (see the module docs for the rules).
    pub fn price_counts(&self, entry: &Entry, counts: &Counts) -> Pricing {
        let p = &entry.prices;
        let Some(input) = counts.input else {
            return Pricing::Unknown(Figure::Input);
        };
        let output = match (p.output, counts.output) {
            (Some(_), None) => return Pricing::Unknown(Figure::Output),
            (_, o) => o,
        };
        // Σ tokens × nano-unit price: at most 2⁶⁴ × 10¹⁵ per term.
        let mut token_nanos: u128 = 0;
        let mut ok = bill(input, p.input, INPUT_PARTS, p, counts, &mut token_nanos);
        if let Some(output) = output {
            ok &= bill(output, p.output, OUTPUT_PARTS, p, counts, &mut token_nanos);
        } else {
            // No output price, no output count: parts priced on their own still bill.
            for row in OUTPUT_PARTS {
                if let (Some(c), Some(price)) = ((row.count)(counts), (row.price)(p)) {
                    ok &= add(&mut token_nanos, c, price);
                }
            }
        }
        let mut request_nanos: u128 = 0;
        for row in PER_REQUEST {
            if let (Some(c), Some(price)) = ((row.count)(counts), (row.price)(p)) {
                ok &= add(&mut request_nanos, c, price);
            }
        }
        let attos = token_nanos
            .checked_mul(self.atto_factor())
            .zip(request_nanos.checked_mul(1_000_000_000))
            .and_then(|(a, b)| a.checked_add(b));
        match attos {
            Some(attos) if ok => Pricing::Cost {
                amount: Amount::from_attos(attos),
                key: entry.key.clone(),
            },
            _ => Pricing::Inconsistent,
        }
    }
}

fn add(sum: &mut u128, count: u64, price: u64) -> bool {
    match sum.checked_add(u128::from(count) * u128::from(price)) {
        Some(s) => {
            *sum = s;
            true
        }
        None => false,
    }
}

/// Bills `count` tokens of a node whose effective price is `price` (`None`: not billed)
/// and whose parts are `parts`; `false` when the parts exceed the whole or the sum overflows.
/// Whether the entry prices this part, or one of its parts, apart from its whole.
fn priced(row: &Row, prices: &Prices) -> bool {
    (row.price)(prices).is_some() || row.parts.iter().any(|r| priced(r, prices))
}

fn bill(
    count: u64,
    price: Option<u64>,
    parts: &'static [Row],
    prices: &Prices,
    counts: &Counts,
    sum: &mut u128,
) -> bool {
    let mut rest = count;
    let mut ok = true;
    for row in parts {
        // A part the entry gives no price of its own (nor to its parts) costs what its
        // whole does: it is not set apart. So parts of two different splits of one whole
        // (the modality split and the cache split of a Gemini prompt, whose cached tokens
        // may be the image's) only have to fit together when both are priced apart.
        if !priced(row, prices) {
            continue;
        }
        let Some(c) = (row.count)(counts) else {
            continue;
        };
        let Some(r) = rest.checked_sub(c) else {
            return false;
        };
        rest = r;
        let own = (row.price)(prices).or(price);
        ok &= bill(c, own, row.parts, prices, counts, sum);
    }
    if let Some(price) = price {
        ok &= add(sum, rest, price);
    }
    ok
}
