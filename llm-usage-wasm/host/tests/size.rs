//! The release filter stays within the size budget of issue 6: at most 300 KiB.
//!
//! The module is the one the other tests load: built by `cargo build --release -p
//! llm-usage-wasm --target wasm32-wasip1` (symbols stripped by the release profile of the
//! workspace `Cargo.toml`), or the file `LLM_USAGE_WASM` names.

mod common;

/// 300 KiB.
const BUDGET: u64 = 300 * 1024;

#[test]
fn the_release_wasm_is_at_most_300_kib() {
    let path = common::wasm_path();
    let size = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    println!(
        "{}: {size} bytes, {} KiB; budget {BUDGET} bytes ({} bytes left)",
        path.display(),
        size / 1024,
        BUDGET.saturating_sub(size)
    );
    assert!(
        size <= BUDGET,
        "{} is {size} bytes, over the {BUDGET}-byte (300 KiB) budget by {} bytes; \
         see what grew with `twiggy top -n 40` on an unstripped build (cargo build --release \
         -p llm-usage-wasm --target wasm32-wasip1 \
         --config 'profile.release.package.llm-usage-wasm.strip=\"debuginfo\"')",
        path.display(),
        size - BUDGET
    );
}
