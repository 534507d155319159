//! The wasmtime (Cranelift JIT) backend, behind the `wasmtime` feature.

use std::collections::{BTreeMap, BTreeSet};

use wasmtime::{
    Caller, Config, Engine, ExternType, Func, Instance, Linker, Memory, Module, Store, Val, ValType,
};

use super::{dispatch, resolve, Backend};
use crate::abi::{Guest, Trap, Ty};
use crate::state::HostState;
use crate::vm::HostError;

pub(crate) struct Compiled {
    engine: Engine,
    module: Module,
}

fn ty(t: &ValType) -> Option<Ty> {
    match t {
        ValType::I32 => Some(Ty::I32),
        ValType::I64 => Some(Ty::I64),
        _ => None,
    }
}

impl Compiled {
    pub(crate) fn new(wasm: &[u8]) -> Result<Compiled, HostError> {
        let mut config = Config::new();
        // For profiling the filter (`benches/README.md`): with this variable set, the JIT
        // code's functions are named in `/tmp/perf-<pid>.map`, which `perf report` reads.
        if std::env::var_os("LLM_USAGE_WASMTIME_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| HostError::Load(e.to_string()))?;
        let module = Module::new(&engine, wasm).map_err(|e| HostError::Load(e.to_string()))?;
        Ok(Compiled { engine, module })
    }

    pub(crate) fn imports(&self) -> Vec<String> {
        self.module
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect()
    }

    pub(crate) fn instantiate(&self, state: HostState) -> Result<Box<dyn Backend>, HostError> {
        let mut store = Store::new(&self.engine, state);
        let mut linker = Linker::<HostState>::new(&self.engine);
        let mut bound = BTreeSet::new();
        for import in self.module.imports() {
            let full = format!("{}.{}", import.module(), import.name());
            let ExternType::Func(fty) = import.ty() else {
                return Err(HostError::MissingImport(full));
            };
            let params: Option<Vec<Ty>> = fty.params().map(|t| ty(&t)).collect();
            let results: Option<Vec<Ty>> = fty.results().map(|t| ty(&t)).collect();
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
                    move |mut caller: Caller<'_, HostState>, args: &[Val], results: &mut [Val]| {
                        let args: Vec<u64> = args
                            .iter()
                            .map(|v| match v {
                                Val::I32(x) => *x as u32 as u64,
                                Val::I64(x) => *x as u64,
                                _ => 0,
                            })
                            .collect();
                        let mut guest = WasmtimeGuest::new(&mut caller);
                        let ret = dispatch(&mut guest, f, &args)
                            .map_err(|t| wasmtime::format_err!("{}", t.0))?;
                        if let Some(r) = results.first_mut() {
                            *r = Val::I32(ret);
                        }
                        Ok(())
                    },
                )
                .map_err(|e| HostError::Load(e.to_string()))?;
        }
        let instance = linker
            .instantiate(&mut store, &self.module)
            .map_err(|e| HostError::Load(e.to_string()))?;
        Ok(Box::new(Running {
            store,
            instance,
            exports: BTreeMap::new(),
        }))
    }
}

struct WasmtimeGuest<'a, 'b> {
    caller: &'a mut Caller<'b, HostState>,
    memory: Option<Memory>,
}

impl<'a, 'b> WasmtimeGuest<'a, 'b> {
    fn new(caller: &'a mut Caller<'b, HostState>) -> Self {
        let memory = caller.get_export("memory").and_then(|e| e.into_memory());
        WasmtimeGuest { caller, memory }
    }
}

impl Guest for WasmtimeGuest<'_, '_> {
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
            .zip(args.iter().chain(std::iter::repeat(&0)))
            .map(|(t, v)| match t {
                ValType::I64 => Val::I64(*v),
                _ => Val::I32(*v as i32),
            })
            .collect();
        let mut results: Vec<Val> = fty.results().map(|_| Val::I32(0)).collect();
        f.call(&mut self.store, &params, &mut results)
            .map_err(|e| format!("{e:?}"))?;
        Ok(results.first().map(|v| match v {
            Val::I32(x) => *x as i64,
            Val::I64(x) => *x,
            _ => 0,
        }))
    }
}
