//! The shim's audit records: who ran what, from which bytes, with which rights, and how it
//! ended. Every record is appended by the shim on the host side: lifecycle events (create,
//! deny, start, exit, delete) directly, run-time refusals and limits from the reports the
//! container's runner sends over its pipe (see [`crate::report`]). The container process
//! never holds the log.

use serde::{Deserialize, Serialize};
use warden_audit::{AuditError, Record, event, writer};

use crate::facts::Facts;

/// What every record about one container names.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Context {
    pub node: String,
    pub container_id: String,
    pub pod_namespace: String,
    pub pod_name: Option<String>,
    pub image: Option<String>,
    pub module_digest: Option<String>,
    pub profile: Option<String>,
    pub grants: Option<String>,
}

impl Context {
    pub fn new(node: &str, id: &str, facts: &Facts) -> Self {
        Context {
            node: node.to_string(),
            container_id: id.to_string(),
            pod_namespace: facts.namespace.clone(),
            pod_name: facts.pod_name.clone(),
            image: facts.image.clone(),
            ..Context::default()
        }
    }

    /// A record for `event`, stamped now, carrying this container's identity.
    pub fn record(&self, event: &str) -> Record {
        let mut r = Record::new(writer::SHIM, event);
        // The container's hostname is not the node's: always use the host side's name.
        r.node = self.node.clone();
        r.container_id = Some(self.container_id.clone());
        r.pod_namespace = Some(self.pod_namespace.clone());
        r.pod_name = self.pod_name.clone();
        r.image = self.image.clone();
        r.module_digest = self.module_digest.clone();
        r.profile = self.profile.clone();
        r.grants = self.grants.clone();
        r
    }

    pub fn decision(&self, decision: &str, rule: Option<&str>, reason: Option<String>) -> Record {
        let ev = if decision == "allow" {
            event::CREATE
        } else {
            event::DENY
        };
        let mut r = self.record(ev);
        r.decision = Some(decision.to_string());
        r.rule = rule.map(str::to_string);
        r.reason = reason;
        r
    }
}

/// Appends on the host side. The caller refuses the container when this fails: warden does
/// not run what it cannot audit.
pub fn append(path: &std::path::Path, mut rec: Record) -> Result<(), AuditError> {
    warden_audit::append(path, &mut rec)
}
