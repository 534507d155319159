//! Criterion benches: per input, the core (chunked and whole) against the serde
//! baselines and the memchr ceiling. `cargo bench -p llm-usage-benches`.
//!
//! For one quick table with ratios, run the `compare` binary instead.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use llm_usage_benches::baselines::{self, Limit};
use llm_usage_benches::inputs;
use llm_usage_benches::{run_core, Feed};

fn throughput(c: &mut Criterion) {
    for input in inputs::all() {
        let sizes = inputs::chunk_sizes(input.wire.len(), 7);
        let mut g = c.benchmark_group(input.name);
        g.throughput(Throughput::Bytes(input.decoded.len() as u64));
        g.bench_function("core_chunks", |b| {
            b.iter(|| run_core(black_box(&input), Feed::Chunks(&sizes)))
        });
        g.bench_function("core_whole", |b| {
            b.iter(|| run_core(black_box(&input), Feed::Whole))
        });
        g.bench_function("serde_value", |b| {
            b.iter(|| baselines::serde_value(black_box(&input)))
        });
        g.bench_function("serde_typed", |b| {
            b.iter(|| baselines::serde_typed(black_box(&input)))
        });
        let mut limit = Limit::default();
        g.bench_function("memchr_limit", |b| b.iter(|| limit.run(black_box(&input))));
        g.finish();
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
