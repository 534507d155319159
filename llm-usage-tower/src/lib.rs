//! llm-usage-tower: stub (being written).
