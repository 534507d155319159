//! Packs a proxy-wasm module as an OCI image layout in the form Istio's `WasmPlugin` pulls,
//! without Docker or a registry client.
//!
//! Istio's agent (`pkg/wasm/imagefetcher.go`) accepts three image forms: a Docker image whose
//! last layer is a tar.gz, the *compat* variant (an OCI image whose last layer is an
//! `application/vnd.oci.image.layer.v1.tar+gzip` tar holding a file named `plugin.wasm`),
//! and the *oci* variant (two layers, one of media type
//! `application/vnd.module.wasm.content.layer.v1+wasm`). This crate writes the compat
//! variant: it is the one every OCI registry stores as a plain image, and tools such as
//! `skopeo` and `oras` copy an image layout to a registry as it is.
//!
//! Digests: for an `oci://` URL Istio checks the `WasmPlugin`'s `sha256` against the
//! **manifest** digest (the image's digest, what `…@sha256:` pins), not the module's; for a
//! `file://` or `https://` URL against the module bytes. [`Image`] has both.
//!
//! Everything is deterministic (tar and gzip times are zero, ownership root, mode 0644), so
//! the same `.wasm` always gives the same digests.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Media type of the image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the layout's `index.json`.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of the image configuration.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the layer Istio's compat-variant reader expects.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file name Istio looks for in the layer.
pub const WASM_FILE_NAME: &str = "plugin.wasm";
/// The annotation naming a manifest in an image layout's index (the tag).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Hex SHA-256 of the manifest: the image digest, the `WasmPlugin` `sha256` for
    /// `oci://` URLs.
    pub manifest_digest: String,
    /// Hex SHA-256 of the module itself: the `sha256` for `file://` and `https://` URLs.
    pub wasm_sha256: String,
    /// Hex SHA-256 of the compressed layer.
    pub layer_digest: String,
    /// Hex SHA-256 of the configuration.
    pub config_digest: String,
    /// The tag recorded in `index.json`.
    pub tag: String,
}

/// Why an image could not be written.
#[derive(Debug)]
pub enum Error {
    /// The input is not a WebAssembly binary module (magic `\0asm`, version 1).
    NotWasm,
    /// The output directory exists and is not empty.
    OutputNotEmpty,
    /// The tag is not a valid OCI reference tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
    BadTag,
    /// Reading or writing failed.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotWasm => f.write_str("not a WebAssembly module (no \\0asm version 1 header)"),
            Error::OutputNotEmpty => f.write_str("the output directory exists and is not empty"),
            Error::BadTag => f.write_str("invalid tag: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The uncompressed layer: a tar with `plugin.wasm` alone.
fn layer_tar(wasm: &[u8]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    builder.append_data(&mut header, WASM_FILE_NAME, wasm)?;
    builder.into_inner()
}

fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    enc.finish()
}

fn descriptor(media_type: &str, blob: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": format!("sha256:{}", sha256_hex(blob)),
        "size": blob.len(),
    })
}

fn write_blob(dir: &Path, blob: &[u8]) -> io::Result<()> {
    std::fs::write(dir.join("blobs/sha256").join(sha256_hex(blob)), blob)
}

/// Writes `wasm` as an OCI image layout in `dir` (created; it must not exist or be empty)
/// with `tag` as its reference name.
pub fn write_layout(wasm: &[u8], dir: &Path, tag: &str) -> Result<Image, Error> {
    if wasm.len() < 8 || wasm[..8] != *b"\0asm\x01\0\0\0" {
        return Err(Error::NotWasm);
    }
    if !valid_tag(tag) {
        return Err(Error::BadTag);
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(Error::OutputNotEmpty);
    }
    std::fs::create_dir_all(dir.join("blobs/sha256"))?;

    let tar = layer_tar(wasm)?;
    let layer = gzip(&tar)?;
    // GOOS/GOARCH-style platform of a WASI module; Istio reads no field of the config.
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))] },
    }))
    .map_err(io::Error::other)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, &config),
        "layers": [descriptor(LAYER_MEDIA_TYPE, &layer)],
    }))
    .map_err(io::Error::other)?;
    let mut manifest_desc = descriptor(MANIFEST_MEDIA_TYPE, &manifest);
    manifest_desc["annotations"] = serde_json::json!({ REF_NAME_ANNOTATION: tag });
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [manifest_desc],
    }))
    .map_err(io::Error::other)?;

    for blob in [&layer, &config, &manifest] {
        write_blob(dir, blob)?;
    }
    std::fs::write(dir.join("index.json"), index)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(Image {
        manifest_digest: sha256_hex(&manifest),
        wasm_sha256: sha256_hex(wasm),
        layer_digest: sha256_hex(&layer),
        config_digest: sha256_hex(&config),
        tag: tag.to_owned(),
    })
}
