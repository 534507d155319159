//! The OCI layout of the real filter module, checked from the files alone: digests
//! recomputed with coreutils' `sha256sum`, the layer opened with GNU `tar`, the media types
//! and structure Istio's image fetcher requires (compat variant: the last layer a tar+gzip
//! holding `plugin.wasm`).

use std::path::{Path, PathBuf};
use std::process::Command;

use llm_usage_oci::{write_layout, Error};

// The host tests' helper that builds (once) and finds the release filter; this crate sits
// at the same depth in the workspace, so its paths hold here too.
#[path = "../../../llm-usage-wasm/host/tests/common/mod.rs"]
mod common;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `sha256sum FILE`, the hex digest.
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (coreutils) runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Checks a descriptor against the blob it names; returns the blob's path.
fn check_descriptor(dir: &Path, desc: &serde_json::Value, media_type: &str) -> PathBuf {
    assert_eq!(desc["mediaType"], media_type);
    let digest = desc["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let blob = dir.join("blobs/sha256").join(hex);
    assert_eq!(sha256sum(&blob), hex, "blob content matches its name");
    assert_eq!(
        desc["size"].as_u64().unwrap(),
        std::fs::metadata(&blob).unwrap().len()
    );
    blob
}

#[test]
fn layout_of_the_filter_is_what_istio_pulls() {
    let wasm_path = common::wasm_path();
    let wasm = std::fs::read(wasm_path).unwrap();
    let dir = scratch("oci-filter");
    let img = write_layout(&wasm, &dir, "0.1.0").expect("layout written");

    assert_eq!(
        std::fs::read_to_string(dir.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index = json(&dir.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], llm_usage_oci::INDEX_MEDIA_TYPE);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        "0.1.0"
    );
    let manifest_path = check_descriptor(
        &dir,
        &manifests[0],
        "application/vnd.oci.image.manifest.v1+json",
    );
    // The digest that goes into the WasmPlugin's sha256 for an oci:// URL.
    assert_eq!(sha256sum(&manifest_path), img.manifest_digest);
    assert_eq!(sha256sum(wasm_path), img.wasm_sha256);

    let manifest = json(&manifest_path);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config_path = check_descriptor(
        &dir,
        &manifest["config"],
        "application/vnd.oci.image.config.v1+json",
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let layer_path = check_descriptor(
        &dir,
        layers.last().unwrap(),
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    assert_eq!(sha256sum(&layer_path), img.layer_digest);
    assert_eq!(sha256sum(&config_path), img.config_digest);
    // Three blobs and nothing else.
    assert_eq!(
        std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count(),
        3
    );

    // GNU tar lists exactly plugin.wasm, and extracts the module byte for byte.
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(&layer_path)
        .output()
        .expect("tar runs");
    assert!(list.status.success());
    assert_eq!(String::from_utf8(list.stdout).unwrap(), "plugin.wasm\n");
    let extracted = Command::new("tar")
        .arg("-xzOf")
        .arg(&layer_path)
        .arg("plugin.wasm")
        .output()
        .expect("tar runs");
    assert!(extracted.status.success());
    assert!(extracted.stdout == wasm, "plugin.wasm is the module");

    // The config's diff_id is the digest of the uncompressed layer.
    let tar_path = dir.join("layer.tar");
    let gunzip = Command::new("gzip")
        .arg("-dc")
        .arg(&layer_path)
        .output()
        .expect("gzip runs");
    assert!(gunzip.status.success());
    std::fs::write(&tar_path, &gunzip.stdout).unwrap();
    let config = json(&config_path);
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256sum(&tar_path))
    );
    assert_eq!(config["rootfs"]["type"], "layers");
}

#[test]
fn the_same_module_gives_the_same_digests() {
    let wasm = std::fs::read(common::wasm_path()).unwrap();
    let a = write_layout(&wasm, &scratch("oci-a"), "v1").unwrap();
    let b = write_layout(&wasm, &scratch("oci-b"), "v1").unwrap();
    assert_eq!(a, b);
    let mut other = wasm.clone();
    other.extend_from_slice(b"\0\x04name\x00"); // one more (custom) section: another module
    let c = write_layout(&other, &scratch("oci-c"), "v1").unwrap();
    assert_ne!(a.manifest_digest, c.manifest_digest);
    assert_ne!(a.wasm_sha256, c.wasm_sha256);
}

#[test]
fn bad_inputs_are_refused() {
    let wasm = b"\0asm\x01\0\0\0";
    assert!(matches!(
        write_layout(b"{\"not\": \"wasm\"}", &scratch("oci-bad"), "v1"),
        Err(Error::NotWasm)
    ));
    assert!(matches!(
        write_layout(wasm, &scratch("oci-tag"), "-v1"),
        Err(Error::BadTag)
    ));
    assert!(matches!(
        write_layout(wasm, &scratch("oci-tag2"), "a/b"),
        Err(Error::BadTag)
    ));
    let dir = scratch("oci-twice");
    write_layout(wasm, &dir, "v1").unwrap();
    assert!(matches!(
        write_layout(wasm, &dir, "v1"),
        Err(Error::OutputNotEmpty)
    ));
}
