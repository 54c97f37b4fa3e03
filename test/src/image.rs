//! OCI image-layout tars that `ctr images import` (containerd 1.6.20) accepts.
//!
//! Two forms:
//! - rootfs-style (the default): one uncompressed tar layer
//!   (`application/vnd.oci.image.layer.v1.tar`) holding the files added with
//!   [`ImageBuilder::file`], [`ImageBuilder::dir`] and [`ImageBuilder::symlink`]; its digest is
//!   the config's only `diff_id`. This is how a `.wasm` runs on containerd 1.6.20.
//! - OCI Wasm-layer (with [`ImageBuilder::wasm_layer`]): the module itself is a layer of its
//!   own media type (`application/wasm`, ...) with no `diff_id`, in runwasi's form (OCI image
//!   config, `rootfs.diff_ids` naming only tar layers). containerd 1.6.20 refuses these
//!   (`mismatched image rootfs and manifest layers`); see the harness self-tests.
//!
//! The output is deterministic: fixed mtimes, owners and order, so digests are stable.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value, json};
use warden_common::Digest;

/// Media type of an OCI image layout's index.
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The config of the CNCF Wasm OCI artifact layout (TAG Runtime's "Wasm OCI Artifact").
pub const MEDIA_TYPE_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// Media type of an uncompressed OCI tar layer.
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Media type of a Wasm layer per the CNCF Wasm OCI artifact layout.
pub const MEDIA_TYPE_WASM: &str = "application/wasm";
/// Media type runwasi uses for a component layer.
pub const MEDIA_TYPE_WASM_COMPONENT: &str =
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";

/// Annotation containerd's import reads for the image name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI image-layout reference-name annotation.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The mtime of every file in the tars (2000-01-01T00:00:00Z).
pub const MTIME: u64 = 946_684_800;
/// `created` in the image config, matching [`MTIME`].
pub const CREATED: &str = "2000-01-01T00:00:00Z";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// A FIFO (named pipe): what a hostile image puts where a file is expected.
    Fifo {
        path: String,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::File { path, .. }
            | Entry::Dir { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::Fifo { path } => path,
        }
    }
}

/// Builds an OCI image layout as a tar (see the module docs).
///
/// ```no_run
/// use warden_test::image::ImageBuilder;
/// let wasm = std::fs::read("hello.wasm").unwrap();
/// ImageBuilder::new("localhost/warden-test/hello:latest")
///     .file("/hello.wasm", wasm, 0o755)
///     .entrypoint(["/hello.wasm"])
///     .platform("wasip1", "wasm")
///     .write_tar(std::path::Path::new("/tmp/hello.tar"))
///     .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    name: String,
    entries: Vec<Entry>,
    wasm_layers: Vec<(Vec<u8>, String)>,
    /// The CNCF Wasm artifact config (`application/vnd.wasm.config.v0+json`) instead of an
    /// OCI image config.
    cncf_config: bool,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    working_dir: Option<String>,
    labels: Vec<(String, String)>,
    os: String,
    architecture: String,
}

/// Digests and sizes of a built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image name (`io.containerd.image.name`).
    pub name: String,
    /// `sha256:...` of the manifest: the image's digest in containerd.
    pub manifest_digest: String,
    /// `sha256:...` of the config.
    pub config_digest: String,
    /// `(media type, sha256:..., size)` of each layer, in manifest order.
    pub layers: Vec<(String, String, u64)>,
    /// The config's `rootfs.diff_ids`.
    pub diff_ids: Vec<String>,
}

/// Normalises an in-image path: no leading `/`, no empty or `.` components; rejects `..`.
fn clean_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    assert!(
        !parts.contains(&".."),
        "image paths may not hold `..`: {path:?}"
    );
    assert!(!parts.is_empty(), "an image path names no file: {path:?}");
    parts.join("/")
}

impl ImageBuilder {
    /// A new image named `name` (e.g. `localhost/warden-test/hello:latest`), platform
    /// linux/amd64, no files.
    pub fn new(name: impl Into<String>) -> Self {
        ImageBuilder {
            name: name.into(),
            entries: Vec::new(),
            wasm_layers: Vec::new(),
            cncf_config: false,
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            working_dir: None,
            labels: Vec::new(),
            os: "linux".into(),
            architecture: "amd64".into(),
        }
    }

    /// A rootfs-style Wasm image: `module` at `path_in_image` (mode 0755) as the entrypoint;
    /// platform `wasip1/wasm` for a core module, `wasip2/wasm` for a component.
    pub fn wasm_rootfs(name: impl Into<String>, path_in_image: &str, module: Vec<u8>) -> Self {
        let os = if crate::guests::is_component(&module) {
            "wasip2"
        } else {
            "wasip1"
        };
        ImageBuilder::new(name)
            .file(path_in_image, module, 0o755)
            .entrypoint([path_in_image])
            .platform(os, "wasm")
    }

    /// Adds a regular file at `path` (absolute or relative to the image root) with `mode`.
    /// Missing parent directories are added (mode 0755).
    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.entries.push(Entry::File {
            path: clean_path(path),
            data: bytes.into(),
            mode,
        });
        self
    }

    /// Adds a directory (mode 0755).
    pub fn dir(self, path: &str) -> Self {
        self.dir_with_mode(path, 0o755)
    }

    /// Adds a directory with `mode`.
    pub fn dir_with_mode(mut self, path: &str, mode: u32) -> Self {
        self.entries.push(Entry::Dir {
            path: clean_path(path),
            mode,
        });
        self
    }

    /// Adds a symbolic link at `path` pointing to `target`.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Symlink {
            path: clean_path(path),
            target: target.into(),
        });
        self
    }

    /// Adds a FIFO at `path`.
    pub fn fifo(mut self, path: &str) -> Self {
        self.entries.push(Entry::Fifo {
            path: clean_path(path),
        });
        self
    }

    /// Sets the config's `Entrypoint`.
    pub fn entrypoint<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the config's `Cmd`.
    pub fn cmd<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cmd = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Adds `key=value` to the config's `Env`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Sets the config's `WorkingDir`.
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Adds a label to the config's `Labels`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Sets the platform (config `os` and `architecture`, and the index entry's platform).
    /// Wasm images use os `wasip1` or `wasip2` (runwasi: `wasi`) and architecture `wasm`.
    pub fn platform(mut self, os: &str, architecture: &str) -> Self {
        self.os = os.into();
        self.architecture = architecture.into();
        self
    }

    /// Adds a layer holding `bytes` as they are, with `media_type` (e.g. [`MEDIA_TYPE_WASM`]),
    /// and no `diff_id`: an OCI Wasm-layer image. With no file added, the image has no tar
    /// layer at all (runwasi's form).
    pub fn wasm_layer(mut self, bytes: impl Into<Vec<u8>>, media_type: &str) -> Self {
        self.wasm_layers.push((bytes.into(), media_type.into()));
        self
    }

    /// Uses the CNCF Wasm OCI artifact's config (media type [`MEDIA_TYPE_WASM_CONFIG`]:
    /// `architecture`, `os`, `layerDigests`, no `rootfs`), as `wkg oci push` and other tools of
    /// the Wasm ecosystem publish, instead of an OCI image config.
    pub fn cncf_wasm_config(mut self) -> Self {
        self.cncf_config = true;
        self
    }

    /// The image name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The uncompressed tar layer of the files, or `None` for an image of Wasm layers only.
    pub fn layer_tar(&self) -> Option<Vec<u8>> {
        if self.entries.is_empty() && !self.wasm_layers.is_empty() {
            return None;
        }
        let mut builder = tar::Builder::new(Vec::new());
        // Parent directories first (sorted), then the entries in the order they were added.
        let explicit: BTreeSet<&str> = self
            .entries
            .iter()
            .filter(|entry| matches!(entry, Entry::Dir { .. }))
            .map(Entry::path)
            .collect();
        let mut parents = BTreeSet::new();
        for entry in &self.entries {
            let path = entry.path();
            for (i, _) in path.match_indices('/') {
                let parent = &path[..i];
                if !explicit.contains(parent) {
                    parents.insert(parent.to_string());
                }
            }
        }
        for parent in &parents {
            append_dir(&mut builder, parent, 0o755);
        }
        for entry in &self.entries {
            match entry {
                Entry::Dir { path, mode } => append_dir(&mut builder, path, *mode),
                Entry::File { path, data, mode } => {
                    let mut header = header(tar::EntryType::Regular, *mode);
                    header.set_size(data.len() as u64);
                    builder
                        .append_data(&mut header, path, data.as_slice())
                        .expect("writing to a Vec cannot fail");
                }
                Entry::Symlink { path, target } => {
                    let mut header = header(tar::EntryType::Symlink, 0o777);
                    builder
                        .append_link(&mut header, path, target)
                        .expect("writing to a Vec cannot fail");
                }
                Entry::Fifo { path } => {
                    let mut header = header(tar::EntryType::Fifo, 0o644);
                    builder
                        .append_data(&mut header, path, std::io::empty())
                        .expect("writing to a Vec cannot fail");
                }
            }
        }
        Some(builder.into_inner().expect("writing to a Vec cannot fail"))
    }

    /// Builds the image layout tar in memory.
    pub fn build(&self) -> (Vec<u8>, ImageInfo) {
        let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        if let Some(layer) = self.layer_tar() {
            let digest = Digest::of(&layer);
            // Uncompressed: the diff_id is the layer's own digest.
            diff_ids.push(digest.to_string());
            layers.push((
                MEDIA_TYPE_LAYER_TAR.to_string(),
                digest.to_string(),
                layer.len() as u64,
            ));
            blobs.push((digest, layer));
        }
        for (bytes, media_type) in &self.wasm_layers {
            let digest = Digest::of(bytes);
            layers.push((media_type.clone(), digest.to_string(), bytes.len() as u64));
            blobs.push((digest, bytes.clone()));
        }

        let (config_media_type, config) = if self.cncf_config {
            let digests: Vec<&str> = layers.iter().map(|(_, d, _)| d.as_str()).collect();
            (MEDIA_TYPE_WASM_CONFIG, self.cncf_config_json(&digests))
        } else {
            (MEDIA_TYPE_CONFIG, self.config_json(&diff_ids))
        };
        let config = serde_json::to_vec(&config).expect("JSON");
        let config_digest = Digest::of(&config);
        let config_size = config.len();
        blobs.push((config_digest, config));

        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {
                "mediaType": config_media_type,
                "digest": config_digest,
                "size": config_size,
            },
            "layers": layers.iter().map(|(media_type, digest, size)| json!({
                "mediaType": media_type,
                "digest": digest,
                "size": size,
            })).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).expect("JSON");
        let manifest_digest = Digest::of(&manifest);
        let manifest_size = manifest.len();
        blobs.push((manifest_digest, manifest));

        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [{
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {
                    ANNOTATION_CONTAINERD_NAME: self.name,
                    ANNOTATION_REF_NAME: self.name,
                },
                "platform": {
                    "architecture": self.architecture,
                    "os": self.os,
                },
            }],
        });
        let index = serde_json::to_vec(&index).expect("JSON");

        let mut builder = tar::Builder::new(Vec::new());
        append_file(
            &mut builder,
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        );
        append_file(&mut builder, "index.json", &index);
        append_dir(&mut builder, "blobs", 0o755);
        append_dir(&mut builder, "blobs/sha256", 0o755);
        let mut written = BTreeSet::new();
        for (digest, bytes) in &blobs {
            if written.insert(*digest) {
                append_file(
                    &mut builder,
                    &format!("blobs/sha256/{}", digest.hex()),
                    bytes,
                );
            }
        }
        let tar = builder.into_inner().expect("writing to a Vec cannot fail");
        let info = ImageInfo {
            name: self.name.clone(),
            manifest_digest: manifest_digest.to_string(),
            config_digest: config_digest.to_string(),
            layers,
            diff_ids,
        };
        (tar, info)
    }

    /// Writes the image layout tar to `path`.
    pub fn write_tar(&self, path: &Path) -> std::io::Result<ImageInfo> {
        let (tar, info) = self.build();
        std::fs::write(path, tar)?;
        Ok(info)
    }

    /// The CNCF Wasm artifact config: what the module is for, and its layers' digests.
    fn cncf_config_json(&self, layer_digests: &[&str]) -> Value {
        json!({
            "created": CREATED,
            "architecture": self.architecture,
            "os": self.os,
            "layerDigests": layer_digests,
        })
    }

    fn config_json(&self, diff_ids: &[String]) -> Value {
        let mut config = Map::new();
        if let Some(entrypoint) = &self.entrypoint {
            config.insert("Entrypoint".into(), json!(entrypoint));
        }
        if let Some(cmd) = &self.cmd {
            config.insert("Cmd".into(), json!(cmd));
        }
        if !self.env.is_empty() {
            config.insert("Env".into(), json!(self.env));
        }
        if let Some(dir) = &self.working_dir {
            config.insert("WorkingDir".into(), json!(dir));
        }
        if !self.labels.is_empty() {
            let labels: Map<String, Value> = self
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), json!(value)))
                .collect();
            config.insert("Labels".into(), Value::Object(labels));
        }
        json!({
            "created": CREATED,
            "architecture": self.architecture,
            "os": self.os,
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        })
    }
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_mtime(MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(0);
    header
}

fn append_dir(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) {
    let mut header = header(tar::EntryType::Directory, mode);
    builder
        .append_data(&mut header, format!("{path}/"), std::io::empty())
        .expect("writing to a Vec cannot fail");
}

fn append_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut header = header(tar::EntryType::Regular, 0o644);
    header.set_size(data.len() as u64);
    builder
        .append_data(&mut header, path, data)
        .expect("writing to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read;

    fn entries(tar_bytes: &[u8]) -> BTreeMap<String, (tar::EntryType, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar_bytes);
        let mut out = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let kind = entry.header().entry_type();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.insert(path, (kind, data));
        }
        out
    }

    fn blob<'a>(layout: &'a BTreeMap<String, (tar::EntryType, Vec<u8>)>, digest: &str) -> &'a [u8] {
        let digest: Digest = digest.parse().unwrap();
        let path = format!("blobs/sha256/{}", digest.hex());
        &layout
            .get(&path)
            .unwrap_or_else(|| panic!("{path} missing"))
            .1
    }

    #[test]
    fn rootfs_image_layout_is_consistent() {
        let image = ImageBuilder::new("localhost/warden-test/x:latest")
            .file("/app/bin/hello.wasm", b"\0asm\x01\0\0\0".to_vec(), 0o755)
            .dir("/data")
            .symlink("/app/link", "bin/hello.wasm")
            .entrypoint(["/app/bin/hello.wasm"])
            .cmd(["a", "b"])
            .env("K", "V")
            .platform("wasip1", "wasm");
        let (tar_bytes, info) = image.build();
        let layout = entries(&tar_bytes);
        assert_eq!(
            layout["oci-layout"].1,
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()
        );

        let index: Value = serde_json::from_slice(&layout["index.json"].1).unwrap();
        let descriptor = &index["manifests"][0];
        assert_eq!(descriptor["digest"], info.manifest_digest);
        assert_eq!(
            descriptor["annotations"][ANNOTATION_CONTAINERD_NAME],
            "localhost/warden-test/x:latest"
        );
        assert_eq!(
            descriptor["annotations"][ANNOTATION_REF_NAME],
            "localhost/warden-test/x:latest"
        );
        assert_eq!(descriptor["platform"]["os"], "wasip1");

        let manifest_bytes = blob(&layout, &info.manifest_digest);
        assert_eq!(Digest::of(manifest_bytes).to_string(), info.manifest_digest);
        assert_eq!(descriptor["size"], manifest_bytes.len());
        let manifest: Value = serde_json::from_slice(manifest_bytes).unwrap();
        assert_eq!(manifest["config"]["digest"], info.config_digest);
        assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_TYPE_LAYER_TAR);

        let config: Value = serde_json::from_slice(blob(&layout, &info.config_digest)).unwrap();
        let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], layer_digest);
        assert_eq!(config["config"]["Entrypoint"][0], "/app/bin/hello.wasm");
        assert_eq!(config["config"]["Cmd"], json!(["a", "b"]));
        assert_eq!(config["config"]["Env"], json!(["K=V"]));
        assert_eq!(config["architecture"], "wasm");

        let layer = entries(blob(&layout, layer_digest));
        assert_eq!(layer["app/"].0, tar::EntryType::Directory);
        assert_eq!(layer["app/bin/"].0, tar::EntryType::Directory);
        assert_eq!(layer["data/"].0, tar::EntryType::Directory);
        assert_eq!(layer["app/bin/hello.wasm"].1, b"\0asm\x01\0\0\0".to_vec());
        assert_eq!(layer["app/link"].0, tar::EntryType::Symlink);
    }

    #[test]
    fn output_is_deterministic() {
        let build = || {
            ImageBuilder::new("localhost/warden-test/d:latest")
                .file("/f", b"x".to_vec(), 0o644)
                .entrypoint(["/f"])
                .build()
        };
        let (first, first_info) = build();
        let (second, second_info) = build();
        assert_eq!(first, second);
        assert_eq!(first_info, second_info);
    }

    #[test]
    fn wasm_layer_image_has_no_tar_layer_and_no_diff_ids() {
        let module = b"\0asm\x01\0\0\0".to_vec();
        let (tar_bytes, info) = ImageBuilder::new("localhost/warden-test/w:latest")
            .wasm_layer(module.clone(), MEDIA_TYPE_WASM)
            .platform("wasip1", "wasm")
            .build();
        assert!(info.diff_ids.is_empty());
        assert_eq!(
            info.layers,
            vec![(
                MEDIA_TYPE_WASM.to_string(),
                Digest::of(&module).to_string(),
                module.len() as u64
            )]
        );
        let layout = entries(&tar_bytes);
        assert_eq!(
            blob(&layout, &Digest::of(&module).to_string()),
            module.as_slice()
        );
        let config: Value = serde_json::from_slice(blob(&layout, &info.config_digest)).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"], json!([]));
    }

    #[test]
    fn wasm_rootfs_picks_the_platform_from_the_bytes() {
        let component = b"\0asm\x0d\0\x01\0".to_vec();
        let (_, info) = ImageBuilder::wasm_rootfs("localhost/c:1", "/c.wasm", component).build();
        assert_eq!(info.layers.len(), 1);
        let image =
            ImageBuilder::wasm_rootfs("localhost/m:1", "/m.wasm", b"\0asm\x01\0\0\0".into());
        assert_eq!(image.os, "wasip1");
        let image =
            ImageBuilder::wasm_rootfs("localhost/c:1", "/c.wasm", b"\0asm\x0d\0\x01\0".into());
        assert_eq!(image.os, "wasip2");
        assert_eq!(image.entrypoint, Some(vec!["/c.wasm".to_string()]));
    }

    #[test]
    #[should_panic(expected = "may not hold `..`")]
    fn dot_dot_is_refused() {
        let _ = ImageBuilder::new("x").file("/a/../b", b"".to_vec(), 0o644);
    }
}
