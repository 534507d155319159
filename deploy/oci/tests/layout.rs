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

/// Whether `skopeo` (containers/image, the library of podman and CRI-O) is installed;
/// without it, a `skipped:` line, or a failure under `LLM_USAGE_REQUIRE_TOOLS=1`.
fn skopeo() -> bool {
    have("skopeo", "install skopeo (apt-get install -y skopeo)")
}

fn have(tool: &str, hint: &str) -> bool {
    if Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    if std::env::var("LLM_USAGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("{tool} is required (LLM_USAGE_REQUIRE_TOOLS=1) but not found: {hint}");
    }
    eprintln!("skipped: {tool} not found; {hint}");
    false
}

/// A child process killed and reaped when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 GET on loopback: the response head (lower-cased) and body.
fn get(port: u16, path: &str, accept: &str) -> Option<(String, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n\r\n"
    )
    .ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase(),
        resp[split + 4..].to_vec(),
    ))
}

/// The layout pushed by skopeo to a real registry (Debian's docker-registry, the CNCF
/// distribution server) and fetched back the way Istio's agent does (the manifest by tag,
/// then its last layer by digest): the registry's image digest is the one printed for the
/// `WasmPlugin`, and the layer holds the module.
#[test]
fn pushed_to_a_registry_it_is_what_istio_fetches() {
    let hint = "install docker-registry (apt-get install -y docker-registry)";
    if !skopeo() || !have("docker-registry", hint) {
        return;
    }
    let wasm = std::fs::read(common::wasm_path()).unwrap();
    let dir = scratch("oci-push");
    let img = write_layout(&wasm, &dir, "0.1.0").unwrap();
    let work = scratch("registry");
    std::fs::create_dir_all(&work).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = work.join("config.yml");
    let settings = serde_json::json!({
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": work.join("data")}},
        "http": {"addr": format!("127.0.0.1:{port}")},
    });
    std::fs::write(&config, settings.to_string()).unwrap();
    let log = std::fs::File::create(work.join("registry.log")).unwrap();
    let _registry = Proc(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts"),
    );
    let up = (0..100).any(|i| {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        get(port, "/v2/", "*/*").is_some_and(|(head, _)| head.contains(" 200 "))
    });
    assert!(
        up,
        "the registry did not come up: {}",
        std::fs::read_to_string(work.join("registry.log")).unwrap_or_default()
    );

    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:0.1.0", dir.display()))
        .arg(format!("docker://127.0.0.1:{port}/llm-usage-wasm:0.1.0"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The manifest by tag, as an OCI manifest: its bytes hash to the printed digest.
    let (head, manifest) = get(
        port,
        "/v2/llm-usage-wasm/manifests/0.1.0",
        "application/vnd.oci.image.manifest.v1+json",
    )
    .expect("the registry answers");
    assert!(head.contains(" 200 "), "{head}");
    assert!(
        head.contains("content-type: application/vnd.oci.image.manifest.v1+json"),
        "{head}"
    );
    assert!(
        head.contains(&format!(
            "docker-content-digest: sha256:{}",
            img.manifest_digest
        )),
        "{head}"
    );
    let fetched = work.join("manifest.json");
    std::fs::write(&fetched, &manifest).unwrap();
    assert_eq!(sha256sum(&fetched), img.manifest_digest);

    // The last layer by digest: a tar.gz whose plugin.wasm is the module.
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer = m["layers"].as_array().unwrap().last().unwrap();
    assert_eq!(
        layer["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let (head, blob) = get(
        port,
        &format!(
            "/v2/llm-usage-wasm/blobs/{}",
            layer["digest"].as_str().unwrap()
        ),
        "*/*",
    )
    .unwrap();
    assert!(head.contains(" 200 "), "{head}");
    let blob_path = work.join("layer.tar.gz");
    std::fs::write(&blob_path, &blob).unwrap();
    let extracted = Command::new("tar")
        .arg("-xzOf")
        .arg(&blob_path)
        .arg("plugin.wasm")
        .output()
        .unwrap();
    assert!(extracted.status.success());
    assert!(extracted.stdout == wasm, "the registry serves the module");
}

/// A real OCI implementation reads the layout: skopeo computes the same image digest and
/// layer, and copies the image to another layout, verifying every blob on the way.
#[test]
fn skopeo_reads_the_layout() {
    if !skopeo() {
        return;
    }
    let wasm = std::fs::read(common::wasm_path()).unwrap();
    let dir = scratch("oci-skopeo");
    let img = write_layout(&wasm, &dir, "0.1.0").unwrap();
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:0.1.0", dir.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect["Digest"], format!("sha256:{}", img.manifest_digest));
    assert_eq!(
        inspect["Layers"],
        serde_json::json!([format!("sha256:{}", img.layer_digest)])
    );
    assert_eq!(inspect["Os"], "wasip1");
    assert_eq!(inspect["Architecture"], "wasm");

    let copy = scratch("oci-skopeo-copy");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:0.1.0", dir.display()))
        .arg(format!("oci:{}:0.1.0", copy.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copied = json(&copy.join("index.json"));
    assert_eq!(
        copied["manifests"][0]["digest"],
        format!("sha256:{}", img.manifest_digest),
        "the copy keeps the image digest (the WasmPlugin's sha256)"
    );
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
