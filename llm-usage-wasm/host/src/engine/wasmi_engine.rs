//! The wasmi (interpreter) backend: the default.

backend! {
    wasmi,
    engine: Ok::<_, HostError>(Engine::default()),
    instantiate: instantiate_and_start,
    trap: |t: Trap| wasmi::Error::new(t.0),
    call_error: |e: wasmi::Error| e.to_string(),
}
