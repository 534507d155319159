//! The wasmtime (Cranelift JIT) backend, behind the `wasmtime` feature.

backend! {
    wasmtime,
    // For profiling the filter (`benches/README.md`): with `LLM_USAGE_WASMTIME_PERFMAP` set,
    // the JIT code's functions are named in `/tmp/perf-<pid>.map`, which `perf report` reads.
    engine: {
        let mut config = wasmtime::Config::new();
        if std::env::var_os("LLM_USAGE_WASMTIME_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        Engine::new(&config).map_err(|e| HostError::Load(e.to_string()))
    },
    instantiate: instantiate,
    trap: |t: Trap| wasmtime::format_err!("{}", t.0),
    call_error: |e: wasmtime::Error| format!("{e:?}"),
}
