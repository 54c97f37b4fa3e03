//! The node's `warden.dev/ready` label, which the RuntimeClass schedules on, and what the
//! Node object says about containerd.
//!
//! [`NodeLabels`] is what the daemon's decisions need from the API server; [`KubeNode`] is
//! the real one (kube, in-cluster config or a kubeconfig): a GET of the Node and JSON merge
//! patches of `metadata.labels` that set the label to `"true"` or remove it (`null`). The
//! RBAC allows exactly `get` and `patch` on nodes; the node guard (1.30+) lets the patch
//! change only this label on the installer's own node.

use std::path::Path;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

/// The label the RuntimeClass `warden` schedules on.
pub const READY_LABEL: &str = "warden.dev/ready";
/// Its value on a node whose installer verified the runtime.
pub const READY_VALUE: &str = "true";
/// The field manager named in the installer's patches.
pub const FIELD_MANAGER: &str = "warden-installer";

/// Why the API server could not be asked or did not agree.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
    #[error("{what} node {node}: {detail}")]
    Api {
        what: &'static str,
        node: String,
        detail: String,
    },
}

/// What the daemon reads from its Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// The value of [`READY_LABEL`], if the node carries it.
    pub ready: Option<String>,
    /// `status.nodeInfo.containerRuntimeVersion` (`containerd://2.1.4`).
    pub container_runtime_version: Option<String>,
}

/// The node's label, as the daemon's decisions need it. Implemented by [`KubeNode`], and by
/// fakes in the unit tests.
pub trait NodeLabels {
    /// The node's name.
    fn node(&self) -> &str;
    /// The node's label and containerd version.
    fn facts(&mut self) -> Result<NodeFacts, LabelError>;
    /// Sets `warden.dev/ready=true`.
    fn set_ready(&mut self) -> Result<(), LabelError>;
    /// Removes `warden.dev/ready` (removing an absent label is not an error).
    fn remove_ready(&mut self) -> Result<(), LabelError>;
}

/// The merge patch that sets the label.
pub fn set_patch() -> serde_json::Value {
    json!({"metadata": {"labels": {READY_LABEL: READY_VALUE}}})
}

/// The merge patch that removes the label.
pub fn remove_patch() -> serde_json::Value {
    json!({"metadata": {"labels": {READY_LABEL: null}}})
}

/// The node through the API server. The client is async; each call runs on a runtime of
/// its own with `block_on`, from the daemon's blocking code.
pub struct KubeNode {
    name: String,
    runtime: tokio::runtime::Runtime,
    api: Api<Node>,
}

impl KubeNode {
    /// A client for node `name`: from `kubeconfig` when given, else the pod's in-cluster
    /// config (service account token and CA, `KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub fn connect(name: &str, kubeconfig: Option<&Path>) -> Result<KubeNode, LabelError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LabelError::Config(format!("cannot start the async runtime: {e}")))?;
        let config = match kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|e| LabelError::Config(format!("{}: {e}", path.display())))?;
                runtime
                    .block_on(Config::from_custom_kubeconfig(
                        file,
                        &KubeConfigOptions::default(),
                    ))
                    .map_err(|e| LabelError::Config(format!("{}: {e}", path.display())))?
            }
            None => Config::incluster().map_err(|e| {
                LabelError::Config(format!(
                    "no in-cluster config ({e}); outside a pod, pass --kubeconfig FILE"
                ))
            })?,
        };
        Self::with_config(name, config, runtime)
    }

    /// A client for node `name` with `config` (the tests point one at a local server).
    pub fn with_config(
        name: &str,
        mut config: Config,
        runtime: tokio::runtime::Runtime,
    ) -> Result<KubeNode, LabelError> {
        // A plain-HTTP API server (`kubectl proxy`, a test's) needs no CA, but the client
        // still builds its TLS stack, and without a CA it asks the system for its roots,
        // which a from-scratch image does not have: give it an empty set instead.
        if config.cluster_url.scheme_str() == Some("http") && config.root_cert.is_none() {
            config.root_cert = Some(Vec::new());
        }
        let client = {
            // The client's tower stack is built inside the runtime it will run on.
            let _guard = runtime.enter();
            Client::try_from(config).map_err(|e| LabelError::Config(e.to_string()))?
        };
        Ok(KubeNode {
            name: name.to_owned(),
            runtime,
            api: Api::all(client),
        })
    }

    fn patch(&mut self, what: &'static str, patch: serde_json::Value) -> Result<(), LabelError> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        self.runtime
            .block_on(self.api.patch(&self.name, &params, &Patch::Merge(&patch)))
            .map(drop)
            .map_err(|e| LabelError::Api {
                what,
                node: self.name.clone(),
                detail: e.to_string(),
            })
    }
}

impl NodeLabels for KubeNode {
    fn node(&self) -> &str {
        &self.name
    }

    fn facts(&mut self) -> Result<NodeFacts, LabelError> {
        let node = self
            .runtime
            .block_on(self.api.get(&self.name))
            .map_err(|e| LabelError::Api {
                what: "cannot read",
                node: self.name.clone(),
                detail: e.to_string(),
            })?;
        Ok(NodeFacts {
            ready: node
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(READY_LABEL).cloned()),
            container_runtime_version: node
                .status
                .and_then(|s| s.node_info)
                .map(|info| info.container_runtime_version)
                .filter(|v| !v.is_empty()),
        })
    }

    fn set_ready(&mut self) -> Result<(), LabelError> {
        self.patch("cannot label", set_patch())
    }

    fn remove_ready(&mut self) -> Result<(), LabelError> {
        self.patch("cannot remove the label from", remove_patch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-cluster client is https: its TLS stack must find its crypto provider (one
    /// only, ring, is built in; two would need one installed by hand).
    #[test]
    fn an_https_client_builds() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = Config::new("https://127.0.0.1:6443".parse().unwrap());
        let node = KubeNode::with_config("node-1", config, runtime).unwrap();
        assert_eq!(node.node(), "node-1");
    }

    #[test]
    fn patches_touch_only_the_label() {
        assert_eq!(
            set_patch().to_string(),
            r#"{"metadata":{"labels":{"warden.dev/ready":"true"}}}"#
        );
        assert_eq!(
            remove_patch().to_string(),
            r#"{"metadata":{"labels":{"warden.dev/ready":null}}}"#
        );
    }
}
