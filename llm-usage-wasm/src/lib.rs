//! llm-usage-wasm: stub (being written).
