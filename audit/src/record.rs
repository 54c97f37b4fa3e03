//! One audit record: the JSON object on one line of the log.

use serde::{Deserialize, Serialize};

/// `prev` of the first line (the anchor): there is nothing before it.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Names for the `event` field. Plain strings rather than an enum, so that a log written
/// by a newer warden (with events this build does not know) still verifies and shows.
pub mod event {
    /// First line of a log: names the node and when the log was created.
    pub const ANCHOR: &str = "anchor";
    pub const CREATE: &str = "create";
    pub const START: &str = "start";
    pub const EXIT: &str = "exit";
    pub const DELETE: &str = "delete";
    /// A container refused by the policy (at create or at run time).
    pub const DENY: &str = "deny";
    /// A resource limit hit at run time (memory, CPU time, deadline, fuel).
    pub const LIMIT: &str = "limit";
    pub const INSTALL: &str = "install";
    pub const UNINSTALL: &str = "uninstall";
    pub const CONFIG_WRITE: &str = "config-write";
    pub const RESTART: &str = "restart";
    pub const VERIFY: &str = "verify";
    /// The installer wrote the node policy from its source (the DaemonSet's ConfigMap).
    pub const POLICY_WRITE: &str = "policy-write";
    /// The installer's daemon found drift (a shim, config or policy not as installed) and
    /// repaired it, or could not: `decision` is `pass` or `fail`, `reason` names the drift.
    pub const REPAIR: &str = "repair";
    /// The installer set or removed the node's `warden.dev/ready` label.
    pub const LABEL: &str = "label";
    /// Records a writer left out because one source (a container) wrote too many too fast
    /// (see [`Throttle`](crate::Throttle)): `reason` says how many and since when, the
    /// other fields name the source.
    pub const SUPPRESSED: &str = "suppressed";
}

/// Names for the `writer` field.
pub mod writer {
    pub const SHIM: &str = "shim";
    pub const INSTALLER: &str = "installer";
}

/// One event. Optional fields are left out of the JSON when `None`.
///
/// Fields are plain strings so that every program that writes the log (shim, installer,
/// later tools) can fill in what it knows without this crate knowing their types.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339 UTC with microseconds, e.g. `2026-11-25T01:45:00.123456Z`. Filled in by
    /// `append` if empty.
    #[serde(default)]
    pub time: String,
    /// Node name (Kubernetes node, else host name).
    #[serde(default)]
    pub node: String,
    /// Program that wrote the record: `shim`, `installer`, ...
    #[serde(default)]
    pub writer: String,
    /// What happened; see [`event`].
    #[serde(default)]
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `sha256:<hex>` of the module that ran: the answer to "from which bytes".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// One-line summary of the grants (`Grants::summary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<String>,
    /// `allow` or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Stable name of the policy rule behind a denial (`profile.namespace`, `modules`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Exit records: how the run ended, as the runner reported it: `guest_exit` (the code is
    /// the guest's own choice, whatever its value), `trap`, `limit`, `setup`, `refused`; or,
    /// from the process status alone, `killed` (a signal) or `unreported` (the runner ended
    /// without saying how).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// Installer records: the file changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `sha256:<hex>` of the file before the change (absent: the file did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_before: Option<String>,
    /// `sha256:<hex>` of the file after the change (absent: the file was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_after: Option<String>,
    /// What was restarted and how, e.g. `containerd.service via systemd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Hex SHA-256 of the previous line's bytes (without its newline). Set by `append`.
    #[serde(default)]
    pub prev: String,
}

impl Record {
    /// A record stamped now, on this node.
    pub fn new(writer: &str, event: &str) -> Record {
        Record {
            time: now_rfc3339(),
            node: node_name(),
            writer: writer.to_owned(),
            event: event.to_owned(),
            ..Record::default()
        }
    }

    /// The first line of a new log. Its `prev` is [`ZERO_HASH`].
    pub fn anchor(node: &str, writer: &str, time: &str) -> Record {
        Record {
            time: time.to_owned(),
            node: node.to_owned(),
            writer: writer.to_owned(),
            event: event::ANCHOR.to_owned(),
            reason: Some("new audit log".to_owned()),
            prev: ZERO_HASH.to_owned(),
            ..Record::default()
        }
    }
}

/// The current time as the log writes it: RFC 3339, UTC, microseconds, `Z`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// This node's name: `NODE_NAME` (set from the downward API in the DaemonSet), else the
/// kernel's host name, else `unknown`.
pub fn node_name() -> String {
    if let Ok(n) = std::env::var("NODE_NAME")
        && !n.trim().is_empty()
    {
        return n.trim().to_owned();
    }
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(n) = std::fs::read_to_string(path)
            && !n.trim().is_empty()
        {
            return n.trim().to_owned();
        }
    }
    "unknown".to_owned()
}
