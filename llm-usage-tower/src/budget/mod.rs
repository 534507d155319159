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
//! [`LlmUsageLayer::budgets`](crate::LlmUsageLayer::budgets) does both for every observed
//! request: [`check`] when a request arrives (a [`Decision::Deny`] is answered with its
//! reply instead of calling the inner service) and [`charge`] when the response ends, with
//! the record and cost of the exchange. Both are public for services that check and charge
//! themselves.

mod redis_store;

use llm_usage_core::{Provider, UsageRecord};
use llm_usage_cost::{Amount, Bucket, Budgets, Charge, Decision, KeyFacts, StoreError};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

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

impl<T: AsyncBudgetStore + ?Sized> AsyncBudgetStore for Arc<T> {
    fn used<'a>(&'a self, bucket: &'a str, window: u64) -> StoreFuture<'a, u64> {
        (**self).used(bucket, window)
    }
    fn charge<'a>(&'a self, charge: &'a Charge) -> StoreFuture<'a, u64> {
        (**self).charge(charge)
    }
}

/// The clock budget windows are read from, in seconds since the Unix epoch.
///
/// Implemented for closures `Fn() -> u64` and for [`SystemClock`] (the default).
///
/// ```
/// // A fixed instant, e.g. in a test.
/// let layer = llm_usage_tower::LlmUsageLayer::new().budget_clock(|| 1_800_000_000u64);
/// # let _ = layer;
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current time, in whole seconds since the Unix epoch.
    fn now_s(&self) -> u64;
}

impl<F> Clock for F
where
    F: Fn() -> u64 + Send + Sync + 'static,
{
    fn now_s(&self) -> u64 {
        self()
    }
}

/// The system clock ([`std::time::SystemTime`]); a clock before 1970 reads 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_s(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The budgets of a layer: the limits, the store, the clock.
#[derive(Clone)]
pub(crate) struct Enforcer {
    pub(crate) budgets: Arc<Budgets>,
    pub(crate) store: Arc<dyn AsyncBudgetStore>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// A store read (the `used` of each bucket) then the decision, owning all it needs.
pub(crate) async fn decide_owned(
    e: Enforcer,
    buckets: Vec<Bucket>,
    provider: Option<Provider>,
    now_s: u64,
) -> Decision {
    let mut used = Vec::with_capacity(buckets.len());
    for b in &buckets {
        let window = e.budgets.limits()[b.limit].window(now_s);
        used.push(e.store.used(&b.name, window).await);
    }
    e.budgets.decide(buckets, &used, provider, now_s)
}

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Applies a finished exchange's charges: at once when the store answers at once (the
/// in-memory store), else on the runtime the request came in on. With neither, the
/// charges are lost (fail open).
pub(crate) fn apply_charges(
    e: &Enforcer,
    charges: Vec<Charge>,
    runtime: Option<&tokio::runtime::Handle>,
) {
    if charges.is_empty() {
        return;
    }
    let store = e.store.clone();
    let mut fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
        for c in &charges {
            // A failed charge is lost: fail open.
            let _ = store.charge(c).await;
        }
    });
    let waker = Waker::from(Arc::new(Noop));
    match runtime {
        Some(rt) => {
            // In the runtime's context, whatever thread ends the exchange: a store's timers
            // and sockets need it.
            let _entered = rt.enter();
            if fut.as_mut().poll(&mut Context::from_waker(&waker)) == Poll::Pending {
                rt.spawn(fut);
            }
        }
        None => {
            // No runtime: only a store that answers at once can be charged; one that needs
            // a runtime fails (its panic stays here) and the charge is lost (fail open).
            let _ = catch_unwind(AssertUnwindSafe(|| {
                fut.as_mut().poll(&mut Context::from_waker(&waker))
            }));
        }
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
