//! `llm-usage-wasm-host`: replay captured LLM exchanges through the proxy-wasm filter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use llm_usage_wasm_host::replay::{self, Delivery};
use llm_usage_wasm_host::{EngineKind, Host, HostOptions, StatsConfig};
use serde_json::{json, Value};

const USAGE: &str = "\
usage: llm-usage-wasm-host replay --wasm FILE [options] CASE_DIR...

Replays each exchange (a directory with case.json, request.json, response.bin) through the
filter in one VM, chunked like a network would deliver it, then prints one JSON line per
exchange with the filter state it set, then the Prometheus text Envoy would serve.

options:
  --wasm FILE                 the filter module (llm_usage_wasm.wasm)
  --config FILE               plugin configuration JSON (default: none, i.e. defaults)
  --node-metadata KEY=VALUE   node metadata (repeatable), e.g. WORKLOAD_NAME=sleep
  --legacy-node-paths         serve node.* instead of xds.node.* (Envoy < 1.33)
  --stats-config FILE         bootstrap stats_config (JSON, bare object or ConfigMap fragment);
                              default: the ASM ConfigMap stats_tags
  --extra-stat-tags A,B,...   add Istio extraStatTags regexes for these tags
  --authority HOST            :authority when case.json has no host header (default: upstream)
  --chunk-size N              largest body chunk in bytes (default 1460)
  --no-jitter                 fixed-size chunks instead of varied ones
  --reset                     cut each stream after the response body (no end of stream)
  --check                     compare the filter state with case.json `expect`; exit 1 on mismatch
  --engine wasmi|wasmtime     the engine (wasmtime needs the `wasmtime` cargo feature)
  --workers N                 N VMs of the filter sharing one process's shared data, as
                              Envoy runs one per worker thread; exchanges are dealt to
                              them in turn (default 1). The Prometheus text sums them.

Each JSON line also carries `worker` (the VM it ran in) and `local_reply` (status, headers
and body of a reply the filter sent instead of forwarding, else null).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("llm-usage-wasm-host: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<ExitCode, String> {
    let mut it = args.into_iter();
    match it.next().as_deref() {
        Some("replay") => {}
        Some("-h") | Some("--help") | None => {
            print!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        Some(other) => return Err(format!("unknown command {other:?}\n{USAGE}")),
    }
    let mut wasm = None;
    let mut options = HostOptions::default();
    let mut stats = None;
    let mut extra_tags: Vec<String> = Vec::new();
    let mut authority = "upstream".to_string();
    let mut delivery = Delivery::default();
    let mut check = false;
    let mut engine = EngineKind::Wasmi;
    let mut workers = 1usize;
    let mut cases = Vec::new();
    let need = |it: &mut std::vec::IntoIter<String>, flag: &str| {
        it.next().ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--wasm" => wasm = Some(PathBuf::from(need(&mut it, &a)?)),
            "--config" => {
                let p = need(&mut it, &a)?;
                options.plugin_config = std::fs::read(&p).map_err(|e| format!("{p}: {e}"))?;
            }
            "--node-metadata" => {
                let kv = need(&mut it, &a)?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or("--node-metadata takes KEY=VALUE")?;
                options.node_metadata.insert(k.to_string(), v.to_string());
            }
            "--legacy-node-paths" => options.node_paths = llm_usage_wasm_host::NodePaths::Legacy,
            "--stats-config" => {
                let p = need(&mut it, &a)?;
                let text = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
                stats = Some(StatsConfig::parse(&text).map_err(|e| format!("{p}: {e}"))?);
            }
            "--extra-stat-tags" => {
                extra_tags.extend(need(&mut it, &a)?.split(',').map(|s| s.trim().to_string()))
            }
            "--authority" => authority = need(&mut it, &a)?,
            "--chunk-size" => {
                delivery.chunk_size = need(&mut it, &a)?
                    .parse()
                    .map_err(|_| "--chunk-size takes a number")?
            }
            "--no-jitter" => delivery.jitter = false,
            "--reset" => delivery.reset = true,
            "--check" => check = true,
            "--workers" => {
                workers = need(&mut it, &a)?
                    .parse()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or("--workers takes a number from 1 to 256")?
            }
            "--engine" => {
                engine = match need(&mut it, &a)?.as_str() {
                    "wasmi" => EngineKind::Wasmi,
                    #[cfg(feature = "wasmtime")]
                    "wasmtime" => EngineKind::Wasmtime,
                    other => return Err(format!("unknown or disabled engine {other:?}")),
                }
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"))
            }
            _ => cases.push(PathBuf::from(a)),
        }
    }
    let wasm = wasm.ok_or("--wasm FILE is required")?;
    if cases.is_empty() {
        return Err("give at least one CASE_DIR".into());
    }
    let mut stats = stats.unwrap_or_else(StatsConfig::asm);
    if !extra_tags.is_empty() {
        let tags: Vec<&str> = extra_tags.iter().map(String::as_str).collect();
        stats
            .stats_tags
            .extend(StatsConfig::istio_extra_stat_tags(&tags).stats_tags);
    }
    let prefix = serde_json::from_slice::<Value>(&options.plugin_config)
        .ok()
        .and_then(|v| {
            v.get("property_prefix")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "asm.llmproxy".to_string());
    let host = Host::from_file_with(&wasm, engine).map_err(|e| e.to_string())?;
    let mut vms = Vec::with_capacity(workers);
    for _ in 0..workers {
        vms.push(host.start(options.clone()).map_err(|e| e.to_string())?);
    }
    let mut failures = 0;
    for (i, dir) in cases.iter().enumerate() {
        let worker = i % workers;
        let vm = &mut vms[worker];
        let ex = replay::load_case(dir, &authority)?;
        let out = replay::run(vm, &ex, &delivery).map_err(|e| format!("{}: {e}", ex.name))?;
        let mut line: BTreeMap<&str, Value> = BTreeMap::new();
        line.insert("case", json!(ex.name));
        line.insert("worker", json!(worker));
        line.insert(
            "local_reply",
            match &out.local_response {
                Some(r) => json!({
                    "status": r.status,
                    "headers": r.headers.iter().map(|(k, v)| json!([
                        String::from_utf8_lossy(k), String::from_utf8_lossy(v)
                    ])).collect::<Vec<_>>(),
                    "body": String::from_utf8_lossy(&r.body),
                }),
                None => Value::Null,
            },
        );
        line.insert("filter_state", json!(out.filter_state));
        line.insert("all_continue", json!(out.all_continue));
        line.insert("forwarded_unchanged", json!(out.forwarded_unchanged));
        if check {
            let bad = match &ex.expect {
                Some(e) => replay::check_expect(&out.filter_state, e, &prefix),
                None => vec!["case.json has no expect".to_string()],
            };
            if !bad.is_empty() || !out.all_continue || !out.forwarded_unchanged {
                failures += 1;
            }
            line.insert("mismatches", json!(bad));
        }
        println!(
            "{}",
            serde_json::to_string(&line).map_err(|e| e.to_string())?
        );
    }
    let mut total = llm_usage_wasm_host::Stats::default();
    for vm in &vms {
        total.merge(vm.stats());
    }
    print!("{}", total.prometheus(&stats));
    for (w, vm) in vms.iter().enumerate() {
        for l in vm.logs().iter().filter(|l| l.level >= 3) {
            eprintln!("filter log [worker {w}] [{}]: {}", l.level, l.message);
        }
    }
    if check && failures > 0 {
        eprintln!(
            "llm-usage-wasm-host: {failures} of {} exchanges did not match",
            cases.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
