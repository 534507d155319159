//! The wasmtime (Cranelift JIT) backend, behind the `wasmtime` feature.

backend! {
    wasmtime,
    engine: Engine::new(&wasmtime::Config::new()).map_err(|e| HostError::Load(e.to_string())),
    instantiate: instantiate,
    trap: |t: Trap| wasmtime::format_err!("{}", t.0),
    call_error: |e: wasmtime::Error| format!("{e:?}"),
}
