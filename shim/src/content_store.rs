//! OCI Wasm-layer images: the module read from containerd's content store.
//!
//! An image in the CNCF Wasm OCI artifact layout (config
//! `application/vnd.wasm.config.v0+json`, one layer `application/wasm`) or wasmtime's component
//! layer form (`application/vnd.bytecodealliance.wasm.component.layer.v0+wasm`) has no file
//! in the container's rootfs: containerd 1.7 and later unpack nothing for it. The module is
//! the layer blob. [`wasm_layer`] finds it through containerd's API, the way containerd
//! itself knows the image: the container's image name (Containers service), the image's target
//! (Images service), the manifest for the Wasm platform (Content service), the Wasm layer by
//! digest. The bytes are checked against the layer's digest and size before anything uses
//! them, so the digest admission, the `modules` allowlist, the audit record and the compile
//! cache name is the layer's own.
//!
//! Reading is bounded (`WARDEN_MAX_MODULE_BYTES`, and each manifest or index to
//! [`MAX_MANIFEST_BYTES`]). The pure part, choosing the manifest and the layer, is
//! [`choose_manifest`] and [`choose_layer`].

use anyhow::{Context, Result, anyhow, bail};
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetContainerRequest, GetImageRequest, ReadContentRequest};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use tonic::transport::Channel;
use warden_common::Digest;

/// Media types of a layer that is a Wasm module or component.
pub const WASM_LAYER_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// The largest index or manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// A Wasm layer's bytes, checked against its digest.
pub struct WasmLayer {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    /// The image it came from, for messages.
    pub image: String,
}

/// The Wasm layer of container `id`'s image, `None` when the image has none (a rootfs-style
/// image, or a native one). `address` is containerd's socket, `namespace` the container's.
/// Blocks on `handle` (call it from a blocking thread of the shim's runtime).
pub fn wasm_layer(
    handle: &tokio::runtime::Handle,
    address: &str,
    namespace: &str,
    id: &str,
    max_bytes: u64,
) -> Result<Option<WasmLayer>> {
    handle.block_on(async {
        let store = Store::connect(address, namespace).await?;
        store.wasm_layer(id, max_bytes).await
    })
}

struct Store {
    channel: Channel,
    namespace: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Store {
    async fn connect(address: &str, namespace: &str) -> Result<Store> {
        let path = address.strip_prefix("unix://").unwrap_or(address);
        let channel = containerd_client::connect(path)
            .await
            .with_context(|| format!("connecting to containerd at {path}"))?;
        let namespace = namespace
            .parse()
            .map_err(|_| anyhow!("namespace {namespace:?} is not a header value"))?;
        Ok(Store { channel, namespace })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        request
    }

    async fn wasm_layer(&self, id: &str, max_bytes: u64) -> Result<Option<WasmLayer>> {
        let container = ContainersClient::new(self.channel.clone())
            .get(self.request(GetContainerRequest { id: id.to_owned() }))
            .await
            .with_context(|| format!("looking up container {id}"))?
            .into_inner()
            .container
            .ok_or_else(|| anyhow!("containerd has no container {id}"))?;
        if container.image.is_empty() {
            return Ok(None);
        }
        let image = ImagesClient::new(self.channel.clone())
            .get(self.request(GetImageRequest {
                name: container.image.clone(),
            }))
            .await
            .with_context(|| format!("looking up image {}", container.image))?
            .into_inner()
            .image
            .ok_or_else(|| anyhow!("containerd has no image {}", container.image))?;
        let target = image
            .target
            .ok_or_else(|| anyhow!("image {} has no target", container.image))?;
        let mut media_type = target.media_type;
        let mut digest = target.digest;
        if is_index(&media_type) {
            let bytes = self.read(&digest, None, MAX_MANIFEST_BYTES).await?;
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .with_context(|| format!("image {}: its index does not parse", image.name))?;
            let Some(chosen) = choose_manifest(index.manifests()) else {
                return Ok(None);
            };
            media_type = chosen.media_type().to_string();
            digest = chosen.digest().to_string();
        }
        if !is_manifest(&media_type) {
            return Ok(None);
        }
        let bytes = self.read(&digest, None, MAX_MANIFEST_BYTES).await?;
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("image {}: its manifest does not parse", image.name))?;
        let Some(layer) = choose_layer(manifest.layers()) else {
            return Ok(None);
        };
        let size = layer.size();
        if size > max_bytes {
            bail!(
                "the Wasm layer {} of image {} is {size} bytes, more than the {max_bytes} \
                 bytes a module may have on this node (WARDEN_MAX_MODULE_BYTES)",
                layer.digest(),
                image.name
            );
        }
        let digest_text = layer.digest().to_string();
        let bytes = self.read(&digest_text, Some(size), max_bytes).await?;
        let digest: Digest = digest_text
            .parse()
            .map_err(|e| anyhow!("layer digest {digest_text:?}: {e}"))?;
        Ok(Some(WasmLayer {
            bytes,
            digest,
            media_type: layer.media_type().to_string(),
            image: image.name,
        }))
    }

    /// Reads blob `digest` whole (at most `max` bytes), and checks its sha256 (and its size
    /// when the descriptor gave one).
    async fn read(&self, digest: &str, size: Option<u64>, max: u64) -> Result<Vec<u8>> {
        let expected: Digest = digest
            .parse()
            .map_err(|e| anyhow!("blob digest {digest:?}: {e}"))?;
        let mut stream = ContentClient::new(self.channel.clone())
            .read(self.request(ReadContentRequest {
                digest: digest.to_owned(),
                offset: 0,
                size: 0,
            }))
            .await
            .with_context(|| format!("reading blob {digest}"))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .with_context(|| format!("reading blob {digest}"))?
        {
            if bytes.len() as u64 + chunk.data.len() as u64 > max {
                bail!("blob {digest} is larger than {max} bytes");
            }
            bytes.extend_from_slice(&chunk.data);
        }
        if let Some(size) = size
            && bytes.len() as u64 != size
        {
            bail!(
                "blob {digest}: read {} bytes, its descriptor says {size}",
                bytes.len()
            );
        }
        let actual = Digest::of(&bytes);
        if actual != expected {
            bail!("blob {digest}: its bytes hash to {actual}; refusing them");
        }
        Ok(bytes)
    }
}

fn is_index(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.index.v1+json"
            | "application/vnd.docker.distribution.manifest.list.v2+json"
    )
}

fn is_manifest(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.manifest.v1+json"
            | "application/vnd.docker.distribution.manifest.v2+json"
    )
}

/// The manifest of an index to run: one for a Wasm platform (architecture `wasm`, or OS
/// `wasi`, `wasip1`, `wasip2`), else the only one.
pub fn choose_manifest(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let wasm = manifests.iter().find(|m| {
        m.platform().as_ref().is_some_and(|p| {
            p.architecture().to_string() == "wasm"
                || matches!(p.os().to_string().as_str(), "wasi" | "wasip1" | "wasip2")
        })
    });
    match (wasm, manifests) {
        (Some(m), _) => Some(m),
        (None, [only]) => Some(only),
        _ => None,
    }
}

/// The Wasm layer of a manifest: the first layer whose media type is one of
/// [`WASM_LAYER_TYPES`].
pub fn choose_layer(layers: &[Descriptor]) -> Option<&Descriptor> {
    layers
        .iter()
        .find(|l| WASM_LAYER_TYPES.contains(&l.media_type().to_string().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptors(json: &str) -> Vec<Descriptor> {
        serde_json::from_str(json).unwrap()
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn the_wasm_platform_is_chosen_from_an_index() {
        let ms = descriptors(&format!(
            r#"[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D1}","size":1,
              "platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D2}","size":2,
              "platform":{{"architecture":"wasm","os":"wasip1"}}}}]"#
        ));
        assert_eq!(choose_manifest(&ms).unwrap().digest().to_string(), D2);
        assert_eq!(choose_manifest(&ms[..1]).unwrap().digest().to_string(), D1);
        assert!(choose_manifest(&[]).is_none());
        let two_native = vec![ms[0].clone(), ms[0].clone()];
        assert!(choose_manifest(&two_native).is_none());
    }

    #[test]
    fn the_wasm_layer_is_found_by_media_type() {
        let layers = descriptors(&format!(
            r#"[
            {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D1}","size":1}},
            {{"mediaType":"application/vnd.bytecodealliance.wasm.component.layer.v0+wasm","digest":"{D2}","size":2}}]"#
        ));
        assert_eq!(choose_layer(&layers).unwrap().digest().to_string(), D2);
        assert!(choose_layer(&layers[..1]).is_none());
        let cncf = descriptors(&format!(
            r#"[{{"mediaType":"application/wasm","digest":"{D1}","size":1}}]"#
        ));
        assert!(choose_layer(&cncf).is_some());
    }
}
