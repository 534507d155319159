//! The engine-specific part of a VM: binding host functions, guest memory, calling exports.

use crate::abi::{self, Guest, HostFn, Trap, Ty};
use crate::state::HostState;
use crate::vm::HostError;

pub(crate) mod wasmi_engine;
#[cfg(feature = "wasmtime")]
pub(crate) mod wasmtime_engine;

/// A running instance, whatever the engine.
pub(crate) trait Backend: Send {
    fn state(&self) -> &HostState;
    fn state_mut(&mut self) -> &mut HostState;
    fn has_export(&mut self, name: &str) -> bool;
    /// Calls an export; `Ok(None)` if it is missing or returns nothing; `Err` on a trap.
    fn call(&mut self, name: &str, args: &[i64]) -> Result<Option<i64>, String>;
}

/// Finds the host function for an import and checks its signature, as Envoy refuses a
/// module with an import it does not provide.
pub(crate) fn resolve(
    module: &str,
    name: &str,
    params: &[Ty],
    results: &[Ty],
) -> Result<&'static HostFn, HostError> {
    let full = format!("{module}.{name}");
    let f = abi::lookup(module, name).ok_or_else(|| HostError::MissingImport(full.clone()))?;
    let want_results: &[Ty] = if f.returns { &[Ty::I32] } else { &[] };
    if f.params != params || want_results != results {
        return Err(HostError::BadSignature(full));
    }
    Ok(f)
}

/// Runs a host function: counts the call, applies fault injection, and records refusals.
pub(crate) fn dispatch(g: &mut dyn Guest, f: &HostFn, args: &[u64]) -> Result<i32, Trap> {
    let st = g.state();
    *st.calls.entry(f.name.to_string()).or_insert(0) += 1;
    if st.fail_calls.contains(f.name) {
        *st.refused.entry(f.name.to_string()).or_insert(0) += 1;
        return Ok(abi::status::INTERNAL_FAILURE);
    }
    let ret = (f.handler)(g, args)?;
    if ret != 0 && f.name.starts_with("proxy_") {
        *g.state().refused.entry(f.name.to_string()).or_insert(0) += 1;
    }
    Ok(ret)
}
