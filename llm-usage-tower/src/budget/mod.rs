//! Token budgets for the tower layer: async stores and the check / charge around them.
//!
//! The semantics (limits, buckets, windows, the `429` reply, failing open) are
//! `llm-usage-cost`'s [`Budgets`], the same as in the proxy-wasm filter; this module only
//! reads and writes counters, asynchronously, so a store round trip never blocks an
//! executor thread:
//!
//! - [`MemoryStore`] (from `llm-usage-cost`): one process, sharded, no I/O;
//! - [`RedisStore`]: many replicas sharing one budget through one Redis server.
//!
//! A service calls [`check`] when a request arrives (a [`Decision::Deny`] is answered
//! with its reply instead of calling the inner service) and [`charge`] when the response
//! ends, with the record and cost of the exchange.

mod redis_store;

use llm_usage_core::{Provider, UsageRecord};
use llm_usage_cost::{Amount, Bucket, Budgets, Charge, Decision, KeyFacts, StoreError};
use std::future::Future;
use std::pin::Pin;

pub use llm_usage_cost::MemoryStore;
pub use redis_store::RedisStore;

/// A boxed future, as the store methods return (object safe: `Arc<dyn AsyncBudgetStore>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where budget counters live, read and charged asynchronously (see
/// [`llm_usage_cost::BudgetStore`] for the contract: a charge is atomic).
pub trait AsyncBudgetStore: Send + Sync {
    /// The amount charged so far to `bucket` in `window`.
    fn used<'a>(&'a self, bucket: &'a str, window: u64) -> StoreFuture<'a, u64>;
    /// Applies one charge and returns the counter's new total.
    fn charge<'a>(&'a self, charge: &'a Charge) -> StoreFuture<'a, u64>;
}

impl AsyncBudgetStore for MemoryStore {
    fn used<'a>(&'a self, bucket: &'a str, window: u64) -> StoreFuture<'a, u64> {
        let r = llm_usage_cost::BudgetStore::used(self, bucket, window);
        Box::pin(std::future::ready(r))
    }
    fn charge<'a>(&'a self, c: &'a Charge) -> StoreFuture<'a, u64> {
        let r = llm_usage_cost::BudgetStore::charge(self, &c.bucket, c.window, c.amount, c.ttl_s);
        Box::pin(std::future::ready(r))
    }
}

/// Checks a request at `now_s` (seconds since the Unix epoch): the buckets that apply,
/// their counters read from `store`, the decision. Store errors fail open (and are
/// counted in [`Decision::Allow`]).
pub async fn check(
    budgets: &Budgets,
    store: &dyn AsyncBudgetStore,
    facts: &KeyFacts<'_>,
    provider: Option<Provider>,
    now_s: u64,
) -> Decision {
    let buckets: Vec<Bucket> = budgets.buckets(facts);
    let mut used = Vec::with_capacity(buckets.len());
    for b in &buckets {
        let window = budgets.limits()[b.limit].window(now_s);
        used.push(store.used(&b.name, window).await);
    }
    budgets.decide(buckets, &used, provider, now_s)
}

/// Charges a finished exchange (its record and cost) to the buckets [`check`] returned.
/// Returns the store errors met: each failed charge is lost (fail open).
pub async fn charge(
    budgets: &Budgets,
    store: &dyn AsyncBudgetStore,
    buckets: &[Bucket],
    record: &UsageRecord,
    cost: Option<Amount>,
    now_s: u64,
) -> u32 {
    let mut errors = 0;
    for c in budgets.charges(buckets, record, cost, now_s) {
        if store.charge(&c).await.is_err() {
            errors += 1;
        }
    }
    errors
}
