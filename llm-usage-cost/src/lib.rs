//! # llm-usage-cost
//!
//! What the usage records of `llm-usage-core` cost, and token budgets over them:
//! pure arithmetic over a [`UsageRecord`](llm_usage_core::UsageRecord), no I/O, no clock,
//! no `HashMap`, so that the proxy-wasm filter, the tower layer and the CLI price an
//! exchange the same way.
//!
//! Money is integers (see [`amount`]): prices in nano-units, costs exact in atto-units,
//! printed as a decimal string. "Unknown, never wrong": an exchange whose model has no
//! price, or whose needed counts are unknown, has no cost ([`Pricing`] says why), never 0.
//!
//! ```
//! use llm_usage_cost::PriceTable;
//! use llm_usage_core::UsageRecord;
//!
//! let table = PriceTable::from_json(r#"{"currency": "USD", "per_tokens": 1000000,
//!     "models": {"gpt-4o*": {"input": 2.5, "cached_input": 1.25, "output": 10.0}}}"#)?;
//! let mut record = UsageRecord::default();
//! record.model = Some("gpt-4o-2024-08-06".into());
//! record.input_tokens = Some(1200);
//! record.cached_input_tokens = Some(1000);
//! record.output_tokens = Some(300);
//! // 200 × 2.5 + 1000 × 1.25 + 300 × 10, per million tokens.
//! assert_eq!(table.price(&record).amount().unwrap().to_string(), "0.00475");
//! # Ok::<(), llm_usage_cost::TableError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod amount;
pub mod budget;
pub mod cas;
pub mod memory;
pub mod price;
pub mod table;

pub use amount::Amount;
pub use budget::{
    Bucket, BudgetStore, Budgets, Charge, CountKind, Decision, KeyFacts, KeySpec, Limit,
    LimitError, LocalReply, StoreError,
};
pub use cas::{CasBudgetStore, CasStore, CasWrite};
pub use memory::MemoryStore;
pub use price::{Counts, Figure, Pricing};
pub use table::{Entry, PriceTable, Prices, TableError};
