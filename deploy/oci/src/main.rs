//! `llm-usage-oci --wasm FILE --out DIR [--tag TAG]`: writes the filter as an OCI image
//! layout (Istio's compat Wasm image), prints the digests as JSON on stdout and how to push
//! it on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: llm-usage-oci --wasm FILE --out DIR [--tag TAG]";

fn main() -> ExitCode {
    let mut wasm = None;
    let mut out = None;
    let mut tag = String::from(env!("CARGO_PKG_VERSION"));
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next();
        match (flag.as_str(), value()) {
            ("--wasm", Some(v)) => wasm = Some(PathBuf::from(v)),
            ("--out", Some(v)) => out = Some(PathBuf::from(v)),
            ("--tag", Some(v)) => tag = v,
            _ => {
                eprintln!("llm-usage-oci: bad argument {flag:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(wasm), Some(out)) = (wasm, out) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let bytes = match std::fs::read(&wasm) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("llm-usage-oci: cannot read {}: {e}", wasm.display());
            return ExitCode::FAILURE;
        }
    };
    match llm_usage_oci::write_layout(&bytes, &out, &tag) {
        Ok(img) => {
            println!(
                "{}",
                serde_json::json!({
                    "layout": out.display().to_string(),
                    "tag": img.tag,
                    "manifest_digest": format!("sha256:{}", img.manifest_digest),
                    "wasm_sha256": img.wasm_sha256,
                })
            );
            let dir = out.display();
            eprintln!("wrote {dir} (tag {})", img.tag);
            eprintln!(
                "WasmPlugin sha256 for oci:// URLs (the manifest digest): {}",
                img.manifest_digest
            );
            eprintln!(
                "sha256 for file:// or https:// URLs (the module):       {}",
                img.wasm_sha256
            );
            eprintln!(
                "push: skopeo copy oci:{dir}:{tag} docker://REGISTRY/llm-usage-wasm:{tag}",
                tag = img.tag
            );
            eprintln!(
                "  or: oras cp --from-oci-layout {dir}:{tag} REGISTRY/llm-usage-wasm:{tag}",
                tag = img.tag
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("llm-usage-oci: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
