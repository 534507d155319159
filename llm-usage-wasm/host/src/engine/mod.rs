//! The engine-specific part of a VM: binding host functions, guest memory, calling exports.

use crate::abi::{self, Guest, HostFn, Trap, Ty};
use crate::state::HostState;
use crate::vm::HostError;

/// One backend over an engine crate. wasmi mirrors wasmtime's embedding API (`Engine`,
/// `Module`, `Linker::func_new`, `Caller`, `Memory`, `Func::call` over `Val` slices), so one
/// body serves both: `$krate` names the crate; what differs is given: how the engine is
/// made (a `Result<Engine, HostError>`), the linker's instantiating method, a host
/// function's trap as the crate's error, and a call's error as text.
macro_rules! backend {
    (
        $krate:ident,
        engine: $engine:expr,
        instantiate: $instantiate:ident,
        trap: $trap:expr,
        call_error: $call_error:expr $(,)?
    ) => {
        use std::collections::{BTreeMap, BTreeSet};

        use $krate::{
            Caller, Engine, ExternType, Func, Instance, Linker, Memory, Module, Store, Val, ValType,
        };

        use $crate::abi::{Guest, Trap, Ty};
        use $crate::engine::{dispatch, resolve, Backend};
        use $crate::state::HostState;
        use $crate::vm::HostError;

        pub(crate) struct Compiled {
            engine: Engine,
            module: Module,
        }

        /// A value type (wasmi lists a function type's as a slice, wasmtime as values).
        fn ty(t: impl std::borrow::Borrow<ValType>) -> Option<Ty> {
            match t.borrow() {
                ValType::I32 => Some(Ty::I32),
                ValType::I64 => Some(Ty::I64),
                _ => None,
            }
        }

        impl Compiled {
            pub(crate) fn new(wasm: &[u8]) -> Result<Compiled, HostError> {
                let engine = $engine?;
                let module =
                    Module::new(&engine, wasm).map_err(|e| HostError::Load(e.to_string()))?;
                Ok(Compiled { engine, module })
            }

            pub(crate) fn imports(&self) -> Vec<String> {
                self.module
                    .imports()
                    .map(|i| format!("{}.{}", i.module(), i.name()))
                    .collect()
            }

            pub(crate) fn instantiate(
                &self,
                state: HostState,
            ) -> Result<Box<dyn Backend>, HostError> {
                let mut store = Store::new(&self.engine, state);
                let mut linker = Linker::<HostState>::new(&self.engine);
                let mut bound = BTreeSet::new();
                for import in self.module.imports() {
                    let full = format!("{}.{}", import.module(), import.name());
                    let ExternType::Func(fty) = import.ty() else {
                        return Err(HostError::MissingImport(full));
                    };
                    let params: Option<Vec<Ty>> = fty.params().into_iter().map(ty).collect();
                    let results: Option<Vec<Ty>> = fty.results().into_iter().map(ty).collect();
                    let (Some(params), Some(results)) = (params, results) else {
                        return Err(HostError::BadSignature(full));
                    };
                    let f = resolve(import.module(), import.name(), &params, &results)?;
                    if !bound.insert(full) {
                        continue;
                    }
                    linker
                        .func_new(
                            import.module(),
                            import.name(),
                            fty.clone(),
                            move |mut caller: Caller<'_, HostState>,
                                  args: &[Val],
                                  results: &mut [Val]| {
                                let args: Vec<u64> = args
                                    .iter()
                                    .map(|v| match v {
                                        Val::I32(x) => *x as u32 as u64,
                                        Val::I64(x) => *x as u64,
                                        _ => 0,
                                    })
                                    .collect();
                                let mut guest = CallerGuest::new(&mut caller);
                                let ret = dispatch(&mut guest, f, &args).map_err($trap)?;
                                if let Some(r) = results.first_mut() {
                                    *r = Val::I32(ret);
                                }
                                Ok(())
                            },
                        )
                        .map_err(|e| HostError::Load(e.to_string()))?;
                }
                let instance = linker
                    .$instantiate(&mut store, &self.module)
                    .map_err(|e| HostError::Load(e.to_string()))?;
                Ok(Box::new(Running {
                    store,
                    instance,
                    exports: BTreeMap::new(),
                }))
            }
        }

        struct CallerGuest<'a, 'b> {
            caller: &'a mut Caller<'b, HostState>,
            memory: Option<Memory>,
        }

        impl<'a, 'b> CallerGuest<'a, 'b> {
            fn new(caller: &'a mut Caller<'b, HostState>) -> Self {
                let memory = caller.get_export("memory").and_then(|e| e.into_memory());
                CallerGuest { caller, memory }
            }
        }

        impl Guest for CallerGuest<'_, '_> {
            fn state(&mut self) -> &mut HostState {
                self.caller.data_mut()
            }

            fn read(&mut self, ptr: u32, len: u32) -> Option<Vec<u8>> {
                let mem = self.memory?;
                let mut buf = vec![0u8; len as usize];
                mem.read(&*self.caller, ptr as usize, &mut buf).ok()?;
                Some(buf)
            }

            fn write(&mut self, ptr: u32, data: &[u8]) -> bool {
                match self.memory {
                    Some(mem) => mem.write(&mut *self.caller, ptr as usize, data).is_ok(),
                    None => false,
                }
            }

            fn alloc(&mut self, size: u32) -> Result<u32, Trap> {
                // cpp-host looks for `malloc` first, then `proxy_on_memory_allocate`.
                let f = self
                    .caller
                    .get_export("malloc")
                    .and_then(|e| e.into_func())
                    .or_else(|| {
                        self.caller
                            .get_export("proxy_on_memory_allocate")
                            .and_then(|e| e.into_func())
                    })
                    .ok_or_else(|| Trap("the module exports no allocator".into()))?;
                let mut out = [Val::I32(0)];
                f.call(&mut *self.caller, &[Val::I32(size as i32)], &mut out)
                    .map_err(|e| Trap(format!("allocator trapped: {e}")))?;
                match out[0] {
                    Val::I32(p) => Ok(p as u32),
                    _ => Err(Trap("allocator returned a non-i32".into())),
                }
            }
        }

        struct Running {
            store: Store<HostState>,
            instance: Instance,
            exports: BTreeMap<String, Option<Func>>,
        }

        impl Running {
            fn func(&mut self, name: &str) -> Option<Func> {
                if let Some(f) = self.exports.get(name) {
                    return *f;
                }
                let f = self.instance.get_func(&mut self.store, name);
                self.exports.insert(name.to_string(), f);
                f
            }
        }

        impl Backend for Running {
            fn state(&self) -> &HostState {
                self.store.data()
            }

            fn state_mut(&mut self) -> &mut HostState {
                self.store.data_mut()
            }

            fn has_export(&mut self, name: &str) -> bool {
                self.func(name).is_some()
            }

            fn call(&mut self, name: &str, args: &[i64]) -> Result<Option<i64>, String> {
                let Some(f) = self.func(name) else {
                    return Ok(None);
                };
                let fty = f.ty(&self.store);
                let params: Vec<Val> = fty
                    .params()
                    .into_iter()
                    .zip(args.iter().chain(std::iter::repeat(&0)))
                    .map(|(t, v)| match ty(t) {
                        Some(Ty::I64) => Val::I64(*v),
                        _ => Val::I32(*v as i32),
                    })
                    .collect();
                let mut results: Vec<Val> =
                    fty.results().into_iter().map(|_| Val::I32(0)).collect();
                f.call(&mut self.store, &params, &mut results)
                    .map_err($call_error)?;
                Ok(results.first().map(|v| match v {
                    Val::I32(x) => *x as i64,
                    Val::I64(x) => *x,
                    _ => 0,
                }))
            }
        }
    };
}

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
