//! What the host side knows about a container, read from its OCI spec (`config.json`).
//!
//! Pure extraction, no I/O: CRI annotations name the pod and container type; for `ctr` (no
//! pod) the containerd namespace stands for the pod's namespace.
//!
//! **Who may claim Kubernetes facts.** The `io.kubernetes.cri.*` annotations decide the
//! namespace whose policy applies and whether a container is the pod sandbox (which may run
//! natively). Anyone who can call containerd can write them, so they are believed only for
//! containers in containerd's CRI namespace (`k8s.io`, or `WARDEN_CRI_NAMESPACE`), which
//! containerd's CRI plugin owns; in any other containerd namespace (`ctr run` in `default`)
//! they are ignored and the containerd namespace is the policy namespace. A sandbox claim
//! must also be self-consistent: CRI names a sandbox container by its own id
//! (`io.kubernetes.cri.sandbox-id` equals the container id).

use std::collections::HashMap;

use oci_spec::runtime::Spec;
use warden_common::names::{HTTP_ANNOTATION, PROFILE_ANNOTATION};

pub const ANN_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const ANN_POD_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
pub const ANN_POD_NAME: &str = "io.kubernetes.cri.sandbox-name";
pub const ANN_IMAGE: &str = "io.kubernetes.cri.image-name";
pub const ANN_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub const ANN_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// containerd's CRI plugin keeps its containers in this containerd namespace.
pub const DEFAULT_CRI_NAMESPACE: &str = "k8s.io";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The namespace the policy applies: the pod's, or containerd's for `ctr`.
    pub namespace: String,
    pub pod_name: Option<String>,
    pub container_name: Option<String>,
    pub image: Option<String>,
    /// A Kubernetes pod sandbox (pause) container.
    pub sandbox: bool,
    /// The profile the pod asked for with `warden.dev/profile`.
    pub requested_profile: Option<String>,
    /// How the pod asked to be served with `warden.dev/http` (`wagi`).
    pub http_mode: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// Destinations of the container's mounts.
    pub mounts: Vec<String>,
    /// The container's mounts with their types, for placing granted paths.
    pub spec_mounts: Vec<crate::grant_paths::SpecMount>,
    /// The container came from CRI (its Kubernetes annotations are believed).
    pub cri: bool,
}

impl Facts {
    /// The facts of container `id`, created in `containerd_namespace`; `cri_namespace` is
    /// the containerd namespace that CRI uses (see the module comment).
    pub fn from_spec(
        spec: &Spec,
        containerd_namespace: &str,
        id: &str,
        cri_namespace: &str,
    ) -> Self {
        let empty = HashMap::new();
        let ann = spec.annotations().as_ref().unwrap_or(&empty);
        let get = |k: &str| ann.get(k).filter(|v| !v.is_empty()).cloned();
        let cri = containerd_namespace == cri_namespace;
        let get_cri = |k: &str| if cri { get(k) } else { None };
        let process = spec.process().as_ref();
        let sandbox = get_cri(ANN_CONTAINER_TYPE).as_deref() == Some("sandbox")
            && get_cri(ANN_SANDBOX_ID).as_deref() == Some(id);
        Facts {
            namespace: get_cri(ANN_POD_NAMESPACE)
                .unwrap_or_else(|| containerd_namespace.to_string()),
            pod_name: get_cri(ANN_POD_NAME),
            container_name: get_cri(ANN_CONTAINER_NAME),
            image: get_cri(ANN_IMAGE),
            sandbox,
            cri,
            requested_profile: get(PROFILE_ANNOTATION),
            http_mode: get(HTTP_ANNOTATION),
            args: process.and_then(|p| p.args().clone()).unwrap_or_default(),
            env: process.and_then(|p| p.env().clone()).unwrap_or_default(),
            cwd: process
                .map(|p| p.cwd().to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into()),
            mounts: spec
                .mounts()
                .as_ref()
                .map(|ms| {
                    ms.iter()
                        .map(|m| m.destination().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            spec_mounts: spec
                .mounts()
                .as_ref()
                .map(|ms| {
                    ms.iter()
                        .map(|m| crate::grant_paths::SpecMount {
                            destination: m.destination().to_string_lossy().into_owned(),
                            kind: m.typ().clone().unwrap_or_default(),
                            source: m
                                .source()
                                .as_ref()
                                .map(|s| s.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The container env as name/value pairs (what the policy filters).
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{MountBuilder, ProcessBuilder, RootBuilder, SpecBuilder};

    use super::*;

    #[test]
    fn cri_annotations_name_the_pod() {
        let ann: HashMap<String, String> = [
            (ANN_POD_NAMESPACE, "payments"),
            (ANN_POD_NAME, "api-0"),
            (ANN_CONTAINER_TYPE, "container"),
            (PROFILE_ANNOTATION, "payments-api"),
            (ANN_IMAGE, "example.com/api:1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let spec = SpecBuilder::default()
            .root(RootBuilder::default().path("rootfs").build().unwrap())
            .process(
                ProcessBuilder::default()
                    .args(vec!["/app.wasm".to_string(), "x".into()])
                    .env(vec!["A=1".to_string(), "B=x=y".into()])
                    .cwd("/srv")
                    .build()
                    .unwrap(),
            )
            .mounts(vec![
                MountBuilder::default()
                    .destination("/data")
                    .build()
                    .unwrap(),
            ])
            .annotations(ann)
            .build()
            .unwrap();
        let f = Facts::from_spec(&spec, "k8s.io", "c1", DEFAULT_CRI_NAMESPACE);
        assert!(f.cri);
        assert_eq!(f.namespace, "payments");
        assert_eq!(f.pod_name.as_deref(), Some("api-0"));
        assert_eq!(f.requested_profile.as_deref(), Some("payments-api"));
        assert_eq!(f.image.as_deref(), Some("example.com/api:1"));
        assert!(!f.sandbox);
        assert_eq!(f.args, vec!["/app.wasm", "x"]);
        assert_eq!(f.cwd, "/srv");
        assert_eq!(f.mounts, vec!["/data"]);
        assert_eq!(
            f.env_pairs(),
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
    }

    #[test]
    fn ctr_containers_use_the_containerd_namespace() {
        let spec = SpecBuilder::default()
            .root(RootBuilder::default().path("rootfs").build().unwrap())
            .build()
            .unwrap();
        let f = Facts::from_spec(&spec, "default", "c1", DEFAULT_CRI_NAMESPACE);
        assert_eq!(f.namespace, "default");
        assert!(!f.sandbox && f.pod_name.is_none() && f.requested_profile.is_none());
    }

    fn claiming(id_claim: &str) -> Spec {
        let ann: HashMap<String, String> = [
            (ANN_POD_NAMESPACE, "payments"),
            (ANN_POD_NAME, "api-0"),
            (ANN_CONTAINER_TYPE, "sandbox"),
            (ANN_SANDBOX_ID, id_claim),
            (PROFILE_ANNOTATION, "payments-api"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        SpecBuilder::default()
            .root(RootBuilder::default().path("rootfs").build().unwrap())
            .annotations(ann)
            .build()
            .unwrap()
    }

    #[test]
    fn ctr_clients_cannot_claim_kubernetes_facts() {
        // `ctr run -n default --annotation io.kubernetes.cri...`: ignored.
        let f = Facts::from_spec(&claiming("c1"), "default", "c1", DEFAULT_CRI_NAMESPACE);
        assert_eq!(f.namespace, "default");
        assert!(!f.sandbox && !f.cri && f.pod_name.is_none());
        // The profile annotation is warden's own and stays (the namespace still decides
        // whether it may be used).
        assert_eq!(f.requested_profile.as_deref(), Some("payments-api"));
        // In CRI's namespace, a sandbox claim must name the container itself.
        let f = Facts::from_spec(&claiming("other"), "k8s.io", "c1", DEFAULT_CRI_NAMESPACE);
        assert!(!f.sandbox);
        assert_eq!(f.namespace, "payments");
        let f = Facts::from_spec(&claiming("c1"), "k8s.io", "c1", DEFAULT_CRI_NAMESPACE);
        assert!(f.sandbox);
    }
}
