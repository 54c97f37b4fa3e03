//! The Kubernetes manifests in `runtimeclass/`, checked offline: every overlay rendered with
//! `kubectl kustomize`, validated with `kubernetes-validate --strict` against Kubernetes 1.29
//! and the newest version it ships, and held to the installer's least-privilege rules.
//!
//! Each rule is a function returning the violations it finds, so that the negative tests
//! (deliberately broken copies: a temp overlay that patches the real one) can assert the
//! exact violation. The tools come from `make deps` (a venv at `WARDEN_TOOLS_DIR`, default
//! `/var/tmp/warden-tools`); without them these tests fail, they never skip.
//!
//! What cannot be checked here: applying to a cluster (there is none on these machines).
//! test/kind/smoke.sh does that in users' CI.

mod k8s_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::process::Command;

use k8s_support::{
    output, parse_documents, render, repo_root, resource_name, temp_kustomization, text,
    try_render, validate,
};
use serde_json::Value;
use warden_policy::{Policy, Rule, STRICT_PROFILE};

// ---------------------------------------------------------------------------------------
// What each overlay must be.

/// One distribution's overlay and what differs in it.
struct Overlay {
    name: &'static str,
    /// `--distribution=` passed to the installer.
    distribution: &'static str,
    /// containerd's config dir on the node, mounted at the same path.
    config_dir: &'static str,
    /// `--config=` passed to the installer, if the overlay names the file.
    config_file: Option<&'static str>,
    /// systemd's bus socket, if the installer restarts containerd through it.
    bus_socket: Option<&'static str>,
    /// `DBUS_SYSTEM_BUS_ADDRESS` for a bus socket that is not the default one.
    bus_address: Option<&'static str>,
    /// containerd's socket (`--containerd-socket`), for the verification through CRI. Its
    /// directory is what is mounted: containerd replaces the socket when it restarts.
    containerd_socket: &'static str,
    /// Capabilities added back after dropping ALL.
    caps: &'static [&'static str],
    image_pull_policy: &'static str,
}

const DBUS: &str = "/run/dbus/system_bus_socket";

const OVERLAYS: [Overlay; 6] = [
    Overlay {
        name: "containerd",
        distribution: "containerd",
        config_dir: "/etc/containerd",
        config_file: Some("/etc/containerd/config.toml"),
        bus_socket: Some(DBUS),
        bus_address: None,
        containerd_socket: "/run/containerd/containerd.sock",
        caps: &[],
        image_pull_policy: "IfNotPresent",
    },
    Overlay {
        name: "k3s",
        distribution: "k3s",
        config_dir: "/var/lib/rancher/k3s/agent/etc/containerd",
        config_file: None,
        bus_socket: Some(DBUS),
        bus_address: None,
        containerd_socket: "/run/k3s/containerd/containerd.sock",
        caps: &[],
        image_pull_policy: "IfNotPresent",
    },
    Overlay {
        name: "rke2",
        distribution: "rke2",
        config_dir: "/var/lib/rancher/rke2/agent/etc/containerd",
        config_file: None,
        bus_socket: Some(DBUS),
        bus_address: None,
        containerd_socket: "/run/k3s/containerd/containerd.sock",
        caps: &[],
        image_pull_policy: "IfNotPresent",
    },
    Overlay {
        name: "k0s",
        distribution: "k0s",
        config_dir: "/etc/k0s",
        config_file: Some("/etc/k0s/containerd.toml"),
        // k0s restarts containerd itself when a drop-in in containerd.d changes.
        bus_socket: None,
        bus_address: None,
        containerd_socket: "/run/k0s/containerd.sock",
        caps: &[],
        image_pull_policy: "IfNotPresent",
    },
    Overlay {
        name: "microk8s",
        distribution: "microk8s",
        config_dir: "/var/snap/microk8s/current/args",
        config_file: Some("/var/snap/microk8s/current/args/containerd-template.toml"),
        bus_socket: Some(DBUS),
        bus_address: None,
        // The args files are in the group `microk8s`; keeping it on a replaced file does.
        containerd_socket: "/var/snap/microk8s/common/run/containerd.sock",
        caps: &["CHOWN"],
        image_pull_policy: "IfNotPresent",
    },
    Overlay {
        name: "kind",
        distribution: "kind",
        config_dir: "/etc/containerd",
        config_file: Some("/etc/containerd/config.toml"),
        // kind's node runs systemd without a D-Bus daemon: systemd's own socket.
        bus_socket: Some("/run/systemd/private"),
        bus_address: Some("unix:path=/run/systemd/private"),
        containerd_socket: "/run/containerd/containerd.sock",
        caps: &[],
        image_pull_policy: "Never",
    },
];

impl Overlay {
    fn dir(&self) -> String {
        format!("runtimeclass/overlays/{}", self.name)
    }

    /// The hostPaths the installer may mount, and the `type:` each must have.
    fn allowed_host_paths(&self) -> BTreeMap<&'static str, &'static str> {
        let mut paths = BTreeMap::from([
            // Must exist: a wrong overlay leaves the pod pending instead of creating it.
            (self.config_dir, "Directory"),
            ("/opt/warden/bin", "DirectoryOrCreate"),
            ("/var/lib/warden", "DirectoryOrCreate"),
            ("/var/log/warden", "DirectoryOrCreate"),
            ("/etc/warden", "DirectoryOrCreate"),
        ]);
        if let Some(socket) = self.bus_socket {
            paths.insert(socket, "Socket");
        }
        paths.insert(self.socket_dir(), "Directory");
        paths
    }

    /// The directory of containerd's socket: the hostPath mounted for it.
    fn socket_dir(&self) -> &'static str {
        self.containerd_socket
            .rsplit_once('/')
            .map_or(self.containerd_socket, |(dir, _)| dir)
    }
}

fn overlay(name: &str) -> &'static Overlay {
    OVERLAYS.iter().find(|o| o.name == name).unwrap()
}

const NAMESPACE: &str = "warden-system";
const SERVICE_ACCOUNT: &str = "warden-installer";
const POLICY_SOURCE: &str = "/config/policy.toml";

/// The memory of a sleeping CRI pod's shim process tree alone on a node, measured by `make
/// bench` (the README's latest figures: 19.1 MB PSS; 5.0 MB each at 10 pods). The overhead
/// must cover the lone pod.
const MEASURED_SHIM_PSS_BYTES: f64 = 19.1e6;

// ---------------------------------------------------------------------------------------
// Violations.

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    rule: &'static str,
    detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.rule, self.detail)
    }
}

fn violation(rule: &'static str, detail: impl Into<String>) -> Violation {
    Violation {
        rule,
        detail: detail.into(),
    }
}

fn rules_of(violations: &[Violation]) -> BTreeSet<&'static str> {
    violations.iter().map(|v| v.rule).collect()
}

fn show(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("  {v}\n"))
        .collect::<String>()
}

// ---------------------------------------------------------------------------------------
// Reading the rendered objects.

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

fn of_kind<'a>(docs: &'a [Value], k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| kind(d) == k)
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn strs(v: &Value) -> Vec<&str> {
    array(v).iter().filter_map(Value::as_str).collect()
}

/// The pod spec of a workload object, with a name for messages.
fn pod_specs(docs: &[Value]) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for doc in docs {
        let spec = match kind(doc) {
            "Pod" => &doc["spec"],
            "DaemonSet"
            | "Deployment"
            | "StatefulSet"
            | "ReplicaSet"
            | "Job"
            | "ReplicationController" => &doc["spec"]["template"]["spec"],
            "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        out.push((format!("{} {}", kind(doc), name(doc)), spec));
    }
    out
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| array(&spec[*k]))
        .collect()
}

/// A Kubernetes quantity (`16Mi`, `10m`, `1.5G`, `128`) as a number.
fn quantity(v: &Value) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

/// `--flag=value` or `--flag value` in an argument list.
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    let eq = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&eq) {
            Some(v)
        } else if *a == name {
            args.get(i + 1).copied()
        } else {
            None
        }
    })
}

fn normalize_cap(cap: &str) -> String {
    let cap = cap.to_ascii_uppercase();
    cap.strip_prefix("CAP_").unwrap_or(&cap).to_owned()
}

// ---------------------------------------------------------------------------------------
// The rules.

/// The installer's pods: host namespaces, privilege, capabilities, seccomp, file system,
/// hostPaths (only the allowed ones, each with its type, mounted at its own path),
/// resources, priority, tolerations, update strategy, and what the installer is told.
fn check_pods(docs: &[Value], o: &Overlay) -> Vec<Violation> {
    let mut out = Vec::new();
    let daemonsets: Vec<_> = of_kind(docs, "DaemonSet").collect();
    if daemonsets.len() != 1
        || name(daemonsets[0]) != "warden-installer"
        || daemonsets[0]["metadata"]["namespace"] != NAMESPACE
    {
        out.push(violation(
            "installer-daemonset",
            format!(
                "want one DaemonSet warden-installer in {NAMESPACE}, have {:?}",
                daemonsets.iter().map(|d| name(d)).collect::<Vec<_>>()
            ),
        ));
    }
    for ds in &daemonsets {
        let strategy = &ds["spec"]["updateStrategy"];
        if strategy["type"] != "RollingUpdate"
            || strategy["rollingUpdate"]["maxUnavailable"].is_null()
        {
            out.push(violation(
                "update-strategy",
                format!(
                    "DaemonSet {}: want RollingUpdate with maxUnavailable, have {strategy}",
                    name(ds)
                ),
            ));
        }
    }
    let allowed = o.allowed_host_paths();
    for (what, spec) in pod_specs(docs) {
        for key in ["hostPID", "hostNetwork", "hostIPC"] {
            if spec[key] == true {
                out.push(violation("host-namespaces", format!("{what}: {key}: true")));
            }
        }
        if spec["priorityClassName"] != "system-node-critical" {
            out.push(violation(
                "priority-class",
                format!(
                    "{what}: priorityClassName is {}, not system-node-critical",
                    spec["priorityClassName"]
                ),
            ));
        }
        if spec["serviceAccountName"] != SERVICE_ACCOUNT {
            out.push(violation(
                "service-account",
                format!(
                    "{what}: serviceAccountName is {}",
                    spec["serviceAccountName"]
                ),
            ));
        }
        if spec["automountServiceAccountToken"] != true {
            out.push(violation(
                "service-account",
                format!("{what}: automountServiceAccountToken must be true (the installer labels its node)"),
            ));
        }
        let tolerates_all = array(&spec["tolerations"])
            .iter()
            .any(|t| t["operator"] == "Exists" && t["key"].is_null() && t["effect"].is_null());
        if !tolerates_all {
            out.push(violation(
                "tolerations",
                format!("{what}: no `operator: Exists` toleration: it would not run on every node"),
            ));
        }
        if !spec["terminationGracePeriodSeconds"].is_u64() {
            out.push(violation(
                "termination-grace-period",
                format!("{what}: terminationGracePeriodSeconds is not set"),
            ));
        }

        // Volumes.
        let mut host_volumes: BTreeMap<&str, &str> = BTreeMap::new(); // name -> path
        let mut seen_paths = BTreeSet::new();
        let mut policy_volume = None;
        for vol in array(&spec["volumes"]) {
            let vname = vol["name"].as_str().unwrap_or("?");
            if let Some(hp) = vol.get("hostPath") {
                let path = hp["path"].as_str().unwrap_or("");
                let trimmed = path.trim_end_matches('/');
                if trimmed.is_empty() {
                    out.push(violation(
                        "root-hostpath",
                        format!("{what}: volume {vname} mounts the node's / ({path:?})"),
                    ));
                    continue;
                }
                let Some(want_type) = allowed.get(trimmed) else {
                    out.push(violation(
                        "hostpath-not-allowed",
                        format!(
                            "{what}: volume {vname}: hostPath {path} is not one the installer needs"
                        ),
                    ));
                    continue;
                };
                if hp["type"] != *want_type {
                    out.push(violation(
                        "hostpath-type",
                        format!(
                            "{what}: volume {vname}: hostPath {path} has type {}, want {want_type}",
                            hp["type"]
                        ),
                    ));
                }
                host_volumes.insert(vname, trimmed);
                seen_paths.insert(trimmed);
            } else if let Some(cm) = vol.get("configMap") {
                if cm["name"] == "warden-policy" {
                    policy_volume = Some(vname);
                } else {
                    out.push(violation(
                        "volume-kind",
                        format!("{what}: volume {vname}: configMap {}", cm["name"]),
                    ));
                }
            } else if let Some(ed) = vol.get("emptyDir") {
                if ed["medium"] != "Memory" || ed["sizeLimit"].is_null() {
                    out.push(violation(
                        "volume-kind",
                        format!("{what}: volume {vname}: emptyDir must be a tmpfs with a sizeLimit, is {ed}"),
                    ));
                }
            } else {
                out.push(violation(
                    "volume-kind",
                    format!("{what}: volume {vname}: {vol}"),
                ));
            }
        }
        for path in allowed.keys() {
            if !seen_paths.contains(path) {
                out.push(violation(
                    "hostpath-missing",
                    format!("{what}: no hostPath volume for {path}"),
                ));
            }
        }
        if policy_volume.is_none() {
            out.push(violation(
                "policy-source",
                format!("{what}: the ConfigMap warden-policy is not mounted"),
            ));
        }

        let pod_seccomp = &spec["securityContext"]["seccompProfile"]["type"];
        for c in containers(spec) {
            let cname = format!("{what} container {}", c["name"].as_str().unwrap_or("?"));
            let sc = &c["securityContext"];
            if sc["privileged"] == true {
                out.push(violation(
                    "privileged",
                    format!("{cname}: privileged: true"),
                ));
            }
            if sc["allowPrivilegeEscalation"] != false {
                out.push(violation(
                    "privilege-escalation",
                    format!(
                        "{cname}: allowPrivilegeEscalation is {}, not false",
                        sc["allowPrivilegeEscalation"]
                    ),
                ));
            }
            if sc["readOnlyRootFilesystem"] != true {
                out.push(violation(
                    "read-only-root-filesystem",
                    format!(
                        "{cname}: readOnlyRootFilesystem is {}, not true",
                        sc["readOnlyRootFilesystem"]
                    ),
                ));
            }
            let seccomp = if sc["seccompProfile"]["type"].is_null() {
                pod_seccomp
            } else {
                &sc["seccompProfile"]["type"]
            };
            if seccomp != "RuntimeDefault" {
                out.push(violation(
                    "seccomp",
                    format!("{cname}: seccompProfile is {seccomp}, not RuntimeDefault"),
                ));
            }
            let drops: Vec<String> = strs(&sc["capabilities"]["drop"])
                .into_iter()
                .map(normalize_cap)
                .collect();
            if !drops.iter().any(|d| d == "ALL") {
                out.push(violation(
                    "drop-all",
                    format!("{cname}: capabilities.drop is {drops:?}, without ALL"),
                ));
            }
            for cap in strs(&sc["capabilities"]["add"]) {
                let cap = normalize_cap(cap);
                if !o.caps.contains(&cap.as_str()) {
                    out.push(violation(
                        "capability",
                        format!(
                            "{cname}: adds {cap}; this overlay may add only {:?}",
                            o.caps
                        ),
                    ));
                }
            }
            for (section, resource) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "cpu"),
                ("limits", "memory"),
            ] {
                if quantity(&c["resources"][section][resource]).is_none_or(|q| q <= 0.0) {
                    out.push(violation(
                        "resources",
                        format!("{cname}: resources.{section}.{resource} is not set"),
                    ));
                }
            }
            let image = c["image"].as_str().unwrap_or("");
            let want_image = format!("warden-installer:{}", env!("CARGO_PKG_VERSION"));
            if image != want_image {
                out.push(violation(
                    "image",
                    format!("{cname}: image {image:?}, want {want_image:?}"),
                ));
            }
            if c["imagePullPolicy"] != o.image_pull_policy {
                out.push(violation(
                    "image-pull-policy",
                    format!(
                        "{cname}: imagePullPolicy {}, want {}",
                        c["imagePullPolicy"], o.image_pull_policy
                    ),
                ));
            }

            // Mounts: each hostPath at its own path; the policy source read-only.
            let mut mounts: Vec<(&str, bool)> = Vec::new(); // mountPath, readOnly
            for m in array(&c["volumeMounts"]) {
                let mount_path = m["mountPath"].as_str().unwrap_or("");
                let vname = m["name"].as_str().unwrap_or("");
                let read_only = m["readOnly"] == true;
                if let Some(host) = host_volumes.get(vname)
                    && mount_path.trim_end_matches('/') != *host
                {
                    out.push(violation(
                        "hostpath-mount-path",
                        format!("{cname}: hostPath {host} is mounted at {mount_path}; node paths must be paths here (--root=/)"),
                    ));
                }
                if Some(vname) == policy_volume && !read_only {
                    out.push(violation(
                        "policy-source",
                        format!("{cname}: the policy ConfigMap is mounted read-write"),
                    ));
                }
                let socket_dir = host_volumes.get(vname) == Some(&o.socket_dir());
                if socket_dir && !read_only {
                    out.push(violation(
                        "containerd-socket",
                        format!("{cname}: containerd's socket dir is mounted read-write"),
                    ));
                }
                // HostToContainer only where containerd mounts and unmounts (its socket dir
                // holds its tasks' rootfs mounts): a private copy would keep them alive.
                let propagation_ok = m["mountPropagation"].is_null()
                    || m["mountPropagation"] == "None"
                    || (socket_dir && m["mountPropagation"] == "HostToContainer");
                if !propagation_ok {
                    out.push(violation(
                        "mount-propagation",
                        format!(
                            "{cname}: {mount_path} has mountPropagation {}",
                            m["mountPropagation"]
                        ),
                    ));
                }
                mounts.push((mount_path, read_only));
            }

            // What the installer is told.
            let command = strs(&c["command"]);
            let args = strs(&c["args"]);
            if command != ["/usr/local/bin/warden"]
                || args.first() != Some(&"install")
                || !args.contains(&"--daemon")
            {
                out.push(violation(
                    "installer-args",
                    format!("{cname}: want `/usr/local/bin/warden install --daemon ...`, have {command:?} {args:?}"),
                ));
            }
            if flag(&args, "--distribution") != Some(o.distribution) {
                out.push(violation(
                    "distribution",
                    format!(
                        "{cname}: --distribution is {:?}, want {}",
                        flag(&args, "--distribution"),
                        o.distribution
                    ),
                ));
            }
            if flag(&args, "--config") != o.config_file {
                out.push(violation(
                    "config",
                    format!(
                        "{cname}: --config is {:?}, want {:?}",
                        flag(&args, "--config"),
                        o.config_file
                    ),
                ));
            }
            if flag(&args, "--root").is_some_and(|r| r != "/") {
                out.push(violation(
                    "installer-args",
                    format!("{cname}: --root must be / (mounts are at node paths)"),
                ));
            }
            // Every path the installer writes (or reads) lies under a mount; the ones it
            // writes under a writable one.
            for (f, writes) in [
                ("--config", true),
                ("--install-dir", true),
                ("--state-dir", true),
                ("--audit-log", true),
                ("--policy", true),
                ("--policy-source", false),
                ("--containerd-socket", false),
            ] {
                let Some(path) = flag(&args, f) else { continue };
                let under = mounts
                    .iter()
                    .filter(|(m, _)| {
                        path == *m || path.starts_with(&format!("{}/", m.trim_end_matches('/')))
                    })
                    .max_by_key(|(m, _)| m.len());
                match under {
                    None => out.push(violation(
                        "arg-path-unmounted",
                        format!("{cname}: {f}={path} is under no mount"),
                    )),
                    Some((m, true)) if writes => out.push(violation(
                        "arg-path-unmounted",
                        format!("{cname}: {f}={path} is under the read-only mount {m}"),
                    )),
                    _ => {}
                }
            }
            if flag(&args, "--containerd-socket") != Some(o.containerd_socket) {
                out.push(violation(
                    "containerd-socket",
                    format!(
                        "{cname}: --containerd-socket is {:?}, want {}",
                        flag(&args, "--containerd-socket"),
                        o.containerd_socket
                    ),
                ));
            }
            if flag(&args, "--policy-source") != Some(POLICY_SOURCE) {
                out.push(violation(
                    "policy-source",
                    format!("{cname}: --policy-source is not {POLICY_SOURCE}"),
                ));
            }
            let env = array(&c["env"]);
            let node_name = env.iter().find(|e| e["name"] == "NODE_NAME");
            if node_name.is_none_or(|e| e["valueFrom"]["fieldRef"]["fieldPath"] != "spec.nodeName")
            {
                out.push(violation(
                    "node-name",
                    format!("{cname}: NODE_NAME is not spec.nodeName from the downward API"),
                ));
            }
            if env.iter().any(|e| e["name"] == "WARDEN_UNINSTALL") {
                out.push(violation(
                    "uninstall-default",
                    format!("{cname}: WARDEN_UNINSTALL is set; by default it is unset (install)"),
                ));
            }
            let bus = env
                .iter()
                .find(|e| e["name"] == "DBUS_SYSTEM_BUS_ADDRESS")
                .and_then(|e| e["value"].as_str());
            if bus != o.bus_address {
                out.push(violation(
                    "bus-address",
                    format!(
                        "{cname}: DBUS_SYSTEM_BUS_ADDRESS is {bus:?}, want {:?}",
                        o.bus_address
                    ),
                ));
            }
        }
    }
    out
}

/// RBAC: `get` and `patch` on nodes, nothing else, bound to the installer's ServiceAccount
/// only; the ServiceAccount mounts its token.
fn check_rbac(docs: &[Value]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut verbs = BTreeSet::new();
    for role in docs
        .iter()
        .filter(|d| matches!(kind(d), "ClusterRole" | "Role"))
    {
        let rname = format!("{} {}", kind(role), name(role));
        if !role["aggregationRule"].is_null() {
            out.push(violation("rbac", format!("{rname}: aggregationRule")));
        }
        for rule in array(&role["rules"]) {
            if strs(&rule["apiGroups"]) != [""]
                || strs(&rule["resources"]) != ["nodes"]
                || !rule["nonResourceURLs"].is_null()
            {
                out.push(violation(
                    "rbac",
                    format!("{rname}: rule {rule} is not about nodes alone"),
                ));
            }
            for verb in strs(&rule["verbs"]) {
                if verb == "get" || verb == "patch" {
                    verbs.insert(verb);
                } else {
                    out.push(violation(
                        "rbac",
                        format!("{rname}: verb {verb:?} (only get and patch on nodes)"),
                    ));
                }
            }
        }
    }
    if verbs != BTreeSet::from(["get", "patch"]) {
        out.push(violation(
            "rbac",
            format!("the installer needs get and patch on nodes, has {verbs:?}"),
        ));
    }
    for binding in docs
        .iter()
        .filter(|d| matches!(kind(d), "ClusterRoleBinding" | "RoleBinding"))
    {
        let bname = format!("{} {}", kind(binding), name(binding));
        let role = &binding["roleRef"];
        if role["kind"] != "ClusterRole" || role["name"] != "warden-installer" {
            out.push(violation("rbac", format!("{bname}: binds {role}")));
        }
        let subjects = array(&binding["subjects"]);
        let only_installer = subjects.len() == 1
            && subjects[0]["kind"] == "ServiceAccount"
            && subjects[0]["name"] == SERVICE_ACCOUNT
            && subjects[0]["namespace"] == NAMESPACE;
        if !only_installer {
            out.push(violation(
                "rbac",
                format!(
                    "{bname}: subjects {subjects:?}, want the installer's ServiceAccount alone"
                ),
            ));
        }
    }
    let sa = of_kind(docs, "ServiceAccount").find(|s| name(s) == SERVICE_ACCOUNT);
    match sa {
        None => out.push(violation(
            "service-account",
            "no ServiceAccount warden-installer",
        )),
        Some(sa) => {
            if sa["metadata"]["namespace"] != NAMESPACE
                || sa["automountServiceAccountToken"] != true
            {
                out.push(violation("service-account", format!("ServiceAccount {sa}")));
            }
        }
    }
    out
}

/// The RuntimeClass: handler, scheduling on the ready label, overhead from the measurement.
fn check_runtimeclass(docs: &[Value]) -> Vec<Violation> {
    let mut out = Vec::new();
    let classes: Vec<_> = of_kind(docs, "RuntimeClass").collect();
    let [rc] = classes.as_slice() else {
        return vec![violation(
            "runtimeclass",
            format!("want one RuntimeClass, have {}", classes.len()),
        )];
    };
    if name(rc) != "warden" || rc["handler"] != "warden" {
        out.push(violation(
            "runtimeclass",
            format!(
                "RuntimeClass {} has handler {}, want warden/warden",
                name(rc),
                rc["handler"]
            ),
        ));
    }
    let selector = &rc["scheduling"]["nodeSelector"];
    if *selector != serde_json::json!({"warden.dev/ready": "true"}) {
        out.push(violation(
            "runtimeclass",
            format!("scheduling.nodeSelector is {selector}, want warden.dev/ready: \"true\""),
        ));
    }
    let overhead = &rc["overhead"]["podFixed"];
    match quantity(&overhead["memory"]) {
        Some(m) if (MEASURED_SHIM_PSS_BYTES..=64.0 * 1024.0 * 1024.0).contains(&m) => {}
        other => out.push(violation(
            "runtimeclass",
            format!("overhead.podFixed.memory {other:?} bytes: must cover the measured {MEASURED_SHIM_PSS_BYTES} bytes PSS, and stay small"),
        )),
    }
    match quantity(&overhead["cpu"]) {
        Some(c) if c > 0.0 && c <= 0.1 => {}
        other => out.push(violation(
            "runtimeclass",
            format!("overhead.podFixed.cpu {other:?}: want a small figure (0 < cpu <= 100m)"),
        )),
    }
    out
}

/// The node guard: the installer may patch only its own node, only warden.dev/ready.
fn check_node_guard(docs: &[Value], expected: bool) -> Vec<Violation> {
    let policies: Vec<_> = of_kind(docs, "ValidatingAdmissionPolicy").collect();
    let bindings: Vec<_> = of_kind(docs, "ValidatingAdmissionPolicyBinding").collect();
    if !expected {
        if policies.is_empty() && bindings.is_empty() {
            return vec![];
        }
        return vec![violation(
            "node-guard",
            "the node guard is present where it was to be left out",
        )];
    }
    let mut out = Vec::new();
    let [vap] = policies.as_slice() else {
        return vec![violation(
            "node-guard",
            format!(
                "want one ValidatingAdmissionPolicy, have {}",
                policies.len()
            ),
        )];
    };
    let spec = &vap["spec"];
    if vap["apiVersion"] != "admissionregistration.k8s.io/v1" || spec["failurePolicy"] != "Fail" {
        out.push(violation(
            "node-guard",
            "want admissionregistration.k8s.io/v1 with failurePolicy Fail",
        ));
    }
    let on_node_updates = array(&spec["matchConstraints"]["resourceRules"])
        .iter()
        .any(|r| {
            strs(&r["resources"]).contains(&"nodes")
                && strs(&r["operations"]).contains(&"UPDATE")
                && strs(&r["apiGroups"]).contains(&"")
        });
    if !on_node_updates {
        out.push(violation(
            "node-guard",
            "the policy does not match UPDATE (PATCH) of nodes",
        ));
    }
    let username = format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
    if !array(&spec["matchConditions"])
        .iter()
        .any(|c| c["expression"].as_str().unwrap_or("").contains(&username))
    {
        out.push(violation(
            "node-guard",
            format!("no matchCondition on the user {username}"),
        ));
    }
    let all_cel: String = array(&spec["variables"])
        .iter()
        .chain(array(&spec["validations"]))
        .filter_map(|e| e["expression"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "authentication.kubernetes.io/node-name",
        "object.metadata.name",
        "warden.dev/ready",
        "oldObject",
        "object.spec == oldObject.spec",
    ] {
        if !all_cel.contains(needle) {
            out.push(violation(
                "node-guard",
                format!("the policy's expressions never mention {needle}"),
            ));
        }
    }
    match bindings.as_slice() {
        [b] if b["spec"]["policyName"] == vap["metadata"]["name"]
            && strs(&b["spec"]["validationActions"]).contains(&"Deny") => {}
        _ => out.push(violation(
            "node-guard",
            "want one binding of the policy with validationActions [Deny]",
        )),
    }
    out
}

/// The policy ConfigMap: DESIGN.md's form, strict for every namespace by default, the
/// example profile usable only where it says.
fn check_policy(docs: &[Value]) -> Vec<Violation> {
    let cm = of_kind(docs, "ConfigMap").find(|c| name(c) == "warden-policy");
    let Some(cm) = cm else {
        return vec![violation("policy", "no ConfigMap warden-policy")];
    };
    let mut out = Vec::new();
    if cm["metadata"]["namespace"] != NAMESPACE {
        out.push(violation(
            "policy",
            format!(
                "ConfigMap warden-policy is in {}",
                cm["metadata"]["namespace"]
            ),
        ));
    }
    let Some(toml) = cm["data"]["policy.toml"].as_str() else {
        out.push(violation(
            "policy",
            "ConfigMap warden-policy has no key policy.toml",
        ));
        return out;
    };
    let policy = match Policy::parse(toml, "ConfigMap warden-policy: policy.toml") {
        Ok(p) => p,
        Err(e) => {
            out.push(violation(
                "policy",
                format!("policy.toml does not load: {e}"),
            ));
            return out;
        }
    };
    for (ns, n) in policy.namespaces() {
        if n.default.is_some() {
            out.push(violation("policy", format!("namespace {ns} has a default profile: the shipped policy is strict-only by default")));
        }
    }
    for ns in ["default", "warden-smoke", "warden-example"] {
        match policy.effective(ns, None) {
            Ok(e) if e.profile == STRICT_PROFILE => {}
            other => out.push(violation(
                "policy",
                format!("namespace {ns} gets {other:?}, not strict"),
            )),
        }
    }
    let profiles: Vec<_> = policy.profiles().map(|(n, _)| n.to_owned()).collect();
    if profiles != ["example"] {
        out.push(violation(
            "policy",
            format!("want one example profile, have {profiles:?}"),
        ));
    }
    if policy.effective("warden-example", Some("example")).is_err() {
        out.push(violation(
            "policy",
            "namespace warden-example cannot use the example profile",
        ));
    }
    match policy.effective("warden-smoke", Some("example")) {
        Err(d) if d.rule == Rule::ProfileNamespace => {}
        other => out.push(violation(
            "policy",
            format!("warden-smoke asking for example must be denied (rule profile.namespace; test/kind/smoke.sh relies on it), got {other:?}"),
        )),
    }
    out
}

/// Every object carries app.kubernetes.io/name: warden, and the namespaced ones live in
/// warden-system, which the kustomization creates.
fn check_labels_and_namespace(docs: &[Value]) -> Vec<Violation> {
    let mut out = Vec::new();
    for doc in docs {
        if doc["metadata"]["labels"]["app.kubernetes.io/name"] != "warden" {
            out.push(violation(
                "labels",
                format!(
                    "{} {} has no app.kubernetes.io/name: warden",
                    kind(doc),
                    name(doc)
                ),
            ));
        }
        if matches!(kind(doc), "ServiceAccount" | "ConfigMap" | "DaemonSet")
            && doc["metadata"]["namespace"] != NAMESPACE
        {
            out.push(violation(
                "namespace",
                format!("{} {} is not in {NAMESPACE}", kind(doc), name(doc)),
            ));
        }
    }
    if !of_kind(docs, "Namespace").any(|n| name(n) == NAMESPACE) {
        out.push(violation("namespace", format!("no Namespace {NAMESPACE}")));
    }
    out
}

/// Every rule above.
fn check_all(docs: &[Value], o: &Overlay, node_guard: bool) -> Vec<Violation> {
    let mut out = check_pods(docs, o);
    out.extend(check_rbac(docs));
    out.extend(check_runtimeclass(docs));
    out.extend(check_node_guard(docs, node_guard));
    out.extend(check_policy(docs));
    out.extend(check_labels_and_namespace(docs));
    out
}

/// Schema validation as violations: every error, every object the schemas did not cover
/// (a kind the version does not know is only a warning to kubernetes-validate, and would
/// pass unchecked), except the kinds named in `unknown_ok`.
fn check_schema(yaml: &str, version: &str, unknown_ok: &[&str]) -> Vec<Violation> {
    let docs = parse_documents(yaml);
    let result = validate(yaml, version);
    let mut out = Vec::new();
    for e in &result.errors {
        out.push(violation("schema", e.clone()));
    }
    for o in &result.other {
        out.push(violation("schema", o.clone()));
    }
    for doc in &docs {
        let resource = resource_name(doc);
        if result.passed.contains(&resource) {
            continue;
        }
        let errored = result
            .errors
            .iter()
            .any(|e| e.contains(&format!("resource {resource} ")));
        if errored {
            continue;
        }
        if unknown_ok.contains(&kind(doc)) {
            continue;
        }
        out.push(violation(
            "schema-unchecked",
            format!(
                "{resource} was not checked against Kubernetes {version}: {:?}",
                result.warnings
            ),
        ));
    }
    for w in &result.warnings {
        let expected = unknown_ok
            .iter()
            .any(|k| w.contains(&format!("kind {k} with")));
        if !expected {
            out.push(violation("schema-unchecked", w.clone()));
        }
    }
    out
}

const NODE_GUARD_KINDS: [&str; 2] = [
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

fn render_overlay(o: &Overlay) -> String {
    render(&repo_root().join(o.dir()))
}

// ---------------------------------------------------------------------------------------
// The tests.

#[test]
fn every_overlay_renders_and_keeps_the_least_privilege_rules() {
    let mut failures = String::new();
    for o in &OVERLAYS {
        let docs = parse_documents(&render_overlay(o));
        let kinds: BTreeSet<_> = docs.iter().map(|d| kind(d).to_owned()).collect();
        for want in [
            "Namespace",
            "RuntimeClass",
            "DaemonSet",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ] {
            assert!(
                kinds.contains(want),
                "overlay {} renders no {want}: {kinds:?}",
                o.name
            );
        }
        let violations = check_all(&docs, o, true);
        if !violations.is_empty() {
            failures.push_str(&format!("overlay {}:\n{}", o.name, show(&violations)));
        }
    }
    assert!(
        failures.is_empty(),
        "least-privilege rules broken:\n{failures}"
    );
}

#[test]
fn every_overlay_validates_strictly_against_the_newest_kubernetes() {
    let newest = k8s_support::newest_kubernetes_version();
    let minor: u32 = newest.split('.').nth(1).unwrap().parse().unwrap();
    assert!(
        minor >= 30,
        "kubernetes-validate's newest version {newest} predates the node guard's API"
    );
    let mut failures = String::new();
    for o in &OVERLAYS {
        let violations = check_schema(&render_overlay(o), &newest, &[]);
        if !violations.is_empty() {
            failures.push_str(&format!(
                "overlay {} against {newest}:\n{}",
                o.name,
                show(&violations)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// On 1.29 the node guard's kinds do not exist (ValidatingAdmissionPolicy is v1 from 1.30):
/// everything else validates, and the guard is exactly what is left unchecked. With the
/// without-node-guard component, everything validates on 1.29 and the other rules hold.
#[test]
fn every_overlay_validates_against_kubernetes_1_29_with_the_node_guard_left_out() {
    let mut failures = String::new();
    for o in &OVERLAYS {
        let yaml = render_overlay(o);
        let violations = check_schema(&yaml, "1.29.0", &NODE_GUARD_KINDS);
        if !violations.is_empty() {
            failures.push_str(&format!(
                "overlay {} against 1.29:\n{}",
                o.name,
                show(&violations)
            ));
        }
        // The guard itself is what 1.29 does not know: that is why it is a component.
        let warnings = validate(&yaml, "1.29.0").warnings;
        let unknown: BTreeSet<&str> = NODE_GUARD_KINDS
            .into_iter()
            .filter(|k| {
                warnings
                    .iter()
                    .any(|w| w.contains(&format!("kind {k} with")))
            })
            .collect();
        assert_eq!(
            (unknown.len(), warnings.len()),
            (2, 2),
            "overlay {}: on 1.29 exactly the node guard's two kinds should be unknown: {warnings:?}",
            o.name
        );

        let legacy = temp_kustomization(
            &[o.dir().as_str()],
            &["runtimeclass/components/without-node-guard"],
            "",
        );
        let yaml = render(legacy.path());
        let violations = check_schema(&yaml, "1.29.0", &[]);
        if !violations.is_empty() {
            failures.push_str(&format!(
                "overlay {} + without-node-guard against 1.29:\n{}",
                o.name,
                show(&violations)
            ));
        }
        let violations = check_all(&parse_documents(&yaml), o, false);
        if !violations.is_empty() {
            failures.push_str(&format!(
                "overlay {} + without-node-guard:\n{}",
                o.name,
                show(&violations)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// The smoke test's own manifests validate, and ask for what the policy gives them.
#[test]
fn the_kind_smoke_manifests_validate_and_match_the_policy() {
    let dir = repo_root().join("test/kind/manifests");
    let mut yaml = String::new();
    for f in ["namespace.yaml", "hello.yaml", "denied.yaml"] {
        yaml.push_str("---\n");
        yaml.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
    }
    for version in [
        "1.29.0".to_owned(),
        k8s_support::newest_kubernetes_version(),
    ] {
        let violations = check_schema(&yaml, &version, &[]);
        assert!(
            violations.is_empty(),
            "test/kind/manifests against {version}:\n{}",
            show(&violations)
        );
    }
    let docs = parse_documents(&yaml);
    let want_image = format!("warden-example-hello:{}", env!("CARGO_PKG_VERSION"));
    for pod in of_kind(&docs, "Pod") {
        assert_eq!(pod["spec"]["runtimeClassName"], "warden", "{}", name(pod));
        assert_eq!(
            pod["metadata"]["namespace"],
            "warden-smoke",
            "{}",
            name(pod)
        );
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            want_image.as_str(),
            "{}",
            name(pod)
        );
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"],
            "Never",
            "{}",
            name(pod)
        );
    }
    let denied = of_kind(&docs, "Pod")
        .find(|p| name(p) == "warden-denied")
        .unwrap();
    let asked = denied["metadata"]["annotations"]["warden.dev/profile"]
        .as_str()
        .unwrap();

    // The policy as rendered for kind, through the real CLI: the denial smoke.sh greps for.
    let kind_docs = parse_documents(&render_overlay(overlay("kind")));
    let cm = of_kind(&kind_docs, "ConfigMap")
        .find(|c| name(c) == "warden-policy")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, cm["data"]["policy.toml"].as_str().unwrap()).unwrap();
    let out = output(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args([
                "policy",
                "check",
                "--namespace",
                "warden-smoke",
                "--profile",
                asked,
                "--fail-on-deny",
                "--policy",
            ])
            .arg(&policy),
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("profile.namespace"), "{said}");
    let out = output(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args([
                "policy",
                "check",
                "--namespace",
                "warden-smoke",
                "--fail-on-deny",
                "--policy",
            ])
            .arg(&policy),
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(said.contains(STRICT_PROFILE), "{said}");
}

/// Users point the DaemonSet at their own registry with a kustomize `images:` entry.
#[test]
fn the_installer_image_is_overridable_with_kustomize_images() {
    let patched = temp_kustomization(
        &["runtimeclass/overlays/containerd"],
        &[],
        "images:\n  - name: warden-installer\n    newName: registry.example.com/warden/warden-installer\n    newTag: \"9.9.9\"\n",
    );
    let docs = parse_documents(&render(patched.path()));
    let ds = of_kind(&docs, "DaemonSet").next().unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/warden/warden-installer:9.9.9"
    );
}

// ---------------------------------------------------------------------------------------
// The checks can fail: deliberately broken copies.

/// A temp overlay on top of `base_overlay` with one JSON patch on the installer's
/// DaemonSet (or `target` when given).
fn broken(base_overlay: &str, target: &str, ops: &str) -> String {
    let extra = format!(
        "patches:\n  - target:\n{target}\n    patch: |-\n{}\n",
        ops.lines()
            .map(|l| format!("      {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let dir = temp_kustomization(
        &[format!("runtimeclass/overlays/{base_overlay}").as_str()],
        &[],
        &extra,
    );
    try_render(dir.path()).unwrap_or_else(|e| panic!("broken copy does not render: {e}\n{extra}"))
}

const DAEMONSET: &str = "      kind: DaemonSet\n      name: warden-installer";
const CONTAINER: &str = "/spec/template/spec/containers/0";

#[test]
fn broken_copies_fail_the_least_privilege_checks_with_the_rule_they_break() {
    let cases: Vec<(&str, &str, &str, String, &[&str])> = vec![
        ("privileged", "containerd", DAEMONSET,
            format!("- op: add\n  path: {CONTAINER}/securityContext/privileged\n  value: true"),
            &["privileged"]),
        ("a hostPath of /", "containerd", DAEMONSET,
            format!("- op: add\n  path: /spec/template/spec/volumes/-\n  value: {{name: host-root, hostPath: {{path: /, type: Directory}}}}\n- op: add\n  path: {CONTAINER}/volumeMounts/-\n  value: {{name: host-root, mountPath: /host}}"),
            &["root-hostpath"]),
        ("containerd's socket file (stale after a restart) instead of its dir", "k3s", DAEMONSET,
            format!("- op: add\n  path: /spec/template/spec/volumes/-\n  value: {{name: sock, hostPath: {{path: /run/k3s/containerd/containerd.sock, type: Socket}}}}\n- op: add\n  path: {CONTAINER}/volumeMounts/-\n  value: {{name: sock, mountPath: /run/k3s/containerd/containerd.sock}}"),
            &["hostpath-not-allowed"]),
        ("another distribution's containerd socket dir", "k3s", DAEMONSET,
            format!("- op: add\n  path: /spec/template/spec/volumes/-\n  value: {{name: sock, hostPath: {{path: /run/containerd, type: Directory}}}}\n- op: add\n  path: {CONTAINER}/volumeMounts/-\n  value: {{name: sock, mountPath: /run/containerd, readOnly: true}}"),
            &["hostpath-not-allowed"]),
        ("containerd's socket dir writable", "containerd", DAEMONSET,
            format!("- op: replace\n  path: {CONTAINER}/volumeMounts/8/readOnly\n  value: false"),
            &["containerd-socket"]),
        ("Bidirectional propagation", "containerd", DAEMONSET,
            format!("- op: replace\n  path: {CONTAINER}/volumeMounts/8/mountPropagation\n  value: Bidirectional"),
            &["mount-propagation"]),
        ("HostToContainer elsewhere", "containerd", DAEMONSET,
            format!("- op: add\n  path: {CONTAINER}/volumeMounts/1/mountPropagation\n  value: HostToContainer"),
            &["mount-propagation"]),
        ("the installer told another socket", "kind", DAEMONSET,
            format!("- op: replace\n  path: {CONTAINER}/args/9\n  value: --containerd-socket=/run/k3s/containerd/containerd.sock"),
            &["containerd-socket", "arg-path-unmounted"]),
        ("a hostPath without its type", "containerd", DAEMONSET,
            "- op: remove\n  path: /spec/template/spec/volumes/1/hostPath/type".to_owned(),
            &["hostpath-type"]),
        ("hostPID and hostNetwork", "rke2", DAEMONSET,
            "- op: add\n  path: /spec/template/spec/hostPID\n  value: true\n- op: add\n  path: /spec/template/spec/hostNetwork\n  value: true".to_owned(),
            &["host-namespaces"]),
        ("CAP_SYS_ADMIN", "containerd", DAEMONSET,
            format!("- op: add\n  path: {CONTAINER}/securityContext/capabilities/add\n  value: [SYS_ADMIN]"),
            &["capability"]),
        ("CAP_CHOWN where microk8s's group is not in the way", "k0s", DAEMONSET,
            format!("- op: add\n  path: {CONTAINER}/securityContext/capabilities/add\n  value: [CAP_CHOWN]"),
            &["capability"]),
        ("no drop ALL", "kind", DAEMONSET,
            format!("- op: replace\n  path: {CONTAINER}/securityContext/capabilities/drop\n  value: [NET_RAW]"),
            &["drop-all"]),
        ("a writable root file system and escalation", "containerd", DAEMONSET,
            format!("- op: replace\n  path: {CONTAINER}/securityContext/readOnlyRootFilesystem\n  value: false\n- op: remove\n  path: {CONTAINER}/securityContext/allowPrivilegeEscalation"),
            &["read-only-root-filesystem", "privilege-escalation"]),
        ("seccomp Unconfined", "containerd", DAEMONSET,
            format!("- op: replace\n  path: {CONTAINER}/securityContext/seccompProfile/type\n  value: Unconfined"),
            &["seccomp"]),
        ("no limits", "containerd", DAEMONSET,
            format!("- op: remove\n  path: {CONTAINER}/resources/limits"),
            &["resources"]),
        ("another priority class", "containerd", DAEMONSET,
            "- op: replace\n  path: /spec/template/spec/priorityClassName\n  value: system-cluster-critical".to_owned(),
            &["priority-class"]),
        ("uninstall by default", "containerd", DAEMONSET,
            format!("- op: add\n  path: {CONTAINER}/env/-\n  value: {{name: WARDEN_UNINSTALL, value: \"true\"}}"),
            &["uninstall-default"]),
        ("a config dir mounted elsewhere", "containerd", DAEMONSET,
            format!("- op: replace\n  path: {CONTAINER}/volumeMounts/0/mountPath\n  value: /host/containerd"),
            &["hostpath-mount-path", "arg-path-unmounted"]),
        ("RBAC: list, and secrets", "containerd", "      kind: ClusterRole\n      name: warden-installer",
            "- op: add\n  path: /rules/-\n  value: {apiGroups: [\"\"], resources: [secrets], verbs: [get, list]}".to_owned(),
            &["rbac"]),
        ("RBAC: bound to cluster-admin", "containerd", "      kind: ClusterRoleBinding\n      name: warden-installer",
            "- op: replace\n  path: /roleRef/name\n  value: cluster-admin".to_owned(),
            &["rbac"]),
        ("a RuntimeClass without the ready label", "containerd", "      kind: RuntimeClass\n      name: warden",
            "- op: remove\n  path: /scheduling".to_owned(),
            &["runtimeclass"]),
        ("an overhead below the measurement", "containerd", "      kind: RuntimeClass\n      name: warden",
            "- op: replace\n  path: /overhead/podFixed/memory\n  value: 8Mi".to_owned(),
            &["runtimeclass"]),
        ("a node guard that allows any node", "containerd", "      kind: ValidatingAdmissionPolicy\n      name: warden-installer-own-node",
            "- op: remove\n  path: /spec/validations/0\n- op: remove\n  path: /spec/variables/0".to_owned(),
            &["node-guard"]),
    ];
    let mut failures = String::new();
    for (what, base, target, ops, want) in &cases {
        let docs = parse_documents(&broken(base, target, ops));
        let got = check_all(&docs, overlay(base), true);
        let want: BTreeSet<&str> = want.iter().copied().collect();
        if rules_of(&got) != want {
            failures.push_str(&format!(
                "{what} ({base}): want exactly {want:?}, got:\n{}",
                show(&got)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn a_broken_policy_fails_the_policy_check() {
    let cm = "      kind: ConfigMap\n      name: warden-policy";
    let cases = [
        (
            "an unknown key",
            "- op: replace\n  path: /data/policy.toml\n  value: \"version = 1\\nsurprise = true\\n\"",
        ),
        (
            "a default for every pod of a namespace",
            "- op: replace\n  path: /data/policy.toml\n  value: \"version = 1\\n[namespaces.warden-smoke]\\ndefault = \\\"example\\\"\\n[profiles.example]\\nnamespaces = [\\\"warden-example\\\"]\\n\"",
        ),
        (
            "the example profile open to every namespace",
            "- op: replace\n  path: /data/policy.toml\n  value: \"version = 1\\n[profiles.example]\\nnamespaces = [\\\"*\\\"]\\n\"",
        ),
    ];
    for (what, ops) in cases {
        let docs = parse_documents(&broken("containerd", cm, ops));
        let got = check_all(&docs, overlay("containerd"), true);
        assert_eq!(
            rules_of(&got),
            BTreeSet::from(["policy"]),
            "{what}:\n{}",
            show(&got)
        );
    }
}

#[test]
fn unknown_fields_fail_strict_schema_validation() {
    let newest = k8s_support::newest_kubernetes_version();
    // A typo that would silently do nothing (hostPid for hostPID), and a made-up field.
    let cases = [
        (
            "hostPid",
            "- op: add\n  path: /spec/template/spec/hostPid\n  value: false",
        ),
        (
            "runAsRoot",
            "- op: add\n  path: /spec/template/spec/containers/0/securityContext/runAsRoot\n  value: true",
        ),
    ];
    for (field, ops) in cases {
        let yaml = broken("containerd", DAEMONSET, ops);
        // The least-privilege rules do not see it...
        assert!(
            check_all(&parse_documents(&yaml), overlay("containerd"), true).is_empty(),
            "{field}"
        );
        // ...the schemas do, on both versions.
        for version in ["1.29.0", newest.as_str()] {
            let got = check_schema(&yaml, version, &NODE_GUARD_KINDS);
            assert_eq!(
                rules_of(&got),
                BTreeSet::from(["schema"]),
                "{field} on {version}:\n{}",
                show(&got)
            );
            assert!(
                got.iter()
                    .any(|v| v.detail.contains(field)
                        && v.detail.contains("daemonset/warden-installer")),
                "{field} on {version}:\n{}",
                show(&got)
            );
        }
    }
    // A kind the version has no schema for is not silently passed.
    let yaml = "apiVersion: example.com/v1\nkind: Surprise\nmetadata:\n  name: x\n";
    let got = check_schema(yaml, &newest, &[]);
    assert_eq!(
        rules_of(&got),
        BTreeSet::from(["schema-unchecked"]),
        "{}",
        show(&got)
    );
}

// ---------------------------------------------------------------------------------------
// The node guard's CEL, evaluated on admission requests (cel-python; no API server here).

const INSTALLER_USER: &str = "system:serviceaccount:warden-system:warden-installer";

fn a_node() -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "node-a",
            "labels": {"kubernetes.io/hostname": "node-a", "topology.kubernetes.io/zone": "z1"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
    })
}

fn edited(node: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut node = node.clone();
    edit(&mut node);
    node
}

fn ready(node: &Value) -> Value {
    edited(node, |n| {
        n["metadata"]["labels"]["warden.dev/ready"] = "true".into();
    })
}

/// An UPDATE (a PATCH, to admission) of a node by `user`, whose token names `token_node`.
fn update(user: &str, token_node: Option<&str>, old: &Value, new: &Value) -> Value {
    let mut user_info = serde_json::json!({"username": user});
    if let Some(node) = token_node {
        user_info["extra"] = serde_json::json!({"authentication.kubernetes.io/node-name": [node]});
    }
    serde_json::json!({
        "request": {"operation": "UPDATE", "userInfo": user_info},
        "object": new,
        "oldObject": old,
    })
}

/// The cases: (what, request, expected result).
fn node_guard_cases() -> Vec<(&'static str, Value, &'static str)> {
    let node = a_node();
    let me = Some("node-a");
    vec![
        (
            "the installer labels its own node",
            update(INSTALLER_USER, me, &node, &ready(&node)),
            "allowed",
        ),
        (
            "the installer removes the label (uninstall)",
            update(INSTALLER_USER, me, &ready(&node), &node),
            "allowed",
        ),
        (
            "the installer labels its own node that had no labels",
            update(
                INSTALLER_USER,
                me,
                &edited(&node, |n| {
                    n["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .retain(|k, _| k != "labels")
                }),
                &edited(&node, |n| {
                    n["metadata"]["labels"] = serde_json::json!({"warden.dev/ready": "true"})
                }),
            ),
            "allowed",
        ),
        (
            "another node",
            update(INSTALLER_USER, Some("node-b"), &node, &ready(&node)),
            "denied",
        ),
        (
            "a token without a node name",
            update(INSTALLER_USER, None, &node, &ready(&node)),
            "denied",
        ),
        (
            "warden.dev/ready=false",
            update(
                INSTALLER_USER,
                me,
                &node,
                &edited(&node, |n| {
                    n["metadata"]["labels"]["warden.dev/ready"] = "false".into()
                }),
            ),
            "denied",
        ),
        (
            "another label added",
            update(
                INSTALLER_USER,
                me,
                &node,
                &edited(&node, |n| {
                    n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = "".into()
                }),
            ),
            "denied",
        ),
        (
            "another label changed",
            update(
                INSTALLER_USER,
                me,
                &node,
                &edited(&node, |n| {
                    n["metadata"]["labels"]["topology.kubernetes.io/zone"] = "z2".into()
                }),
            ),
            "denied",
        ),
        (
            "another label removed",
            update(
                INSTALLER_USER,
                me,
                &node,
                &edited(&node, |n| {
                    n["metadata"]["labels"]
                        .as_object_mut()
                        .unwrap()
                        .remove("topology.kubernetes.io/zone");
                }),
            ),
            "denied",
        ),
        (
            "a taint removed with the label",
            update(
                INSTALLER_USER,
                me,
                &node,
                &edited(&ready(&node), |n| {
                    n["spec"]["taints"] = serde_json::json!([])
                }),
            ),
            "denied",
        ),
        (
            "cordoned",
            update(
                INSTALLER_USER,
                me,
                &node,
                &edited(&node, |n| n["spec"]["unschedulable"] = true.into()),
            ),
            "denied",
        ),
        (
            "an annotation added",
            update(
                INSTALLER_USER,
                me,
                &node,
                &edited(&node, |n| n["metadata"]["annotations"]["x"] = "y".into()),
            ),
            "denied",
        ),
        (
            "anyone else's update is not the guard's business",
            update(
                "system:node:node-a",
                me,
                &node,
                &edited(&node, |n| n["spec"]["unschedulable"] = true.into()),
            ),
            "not-matched",
        ),
    ]
}

fn node_guard_spec(docs: &[Value]) -> Value {
    of_kind(docs, "ValidatingAdmissionPolicy").next().unwrap()["spec"].clone()
}

/// Which cases come out other than expected.
fn node_guard_mismatches(spec: &Value) -> Vec<String> {
    let cases = node_guard_cases();
    let requests: Vec<Value> = cases.iter().map(|(_, r, _)| r.clone()).collect();
    let results = k8s_support::eval_admission_policy(spec, &requests);
    cases
        .iter()
        .zip(&results)
        .filter(|((_, _, want), got)| got["result"] != *want)
        .map(|((what, _, want), got)| format!("{what}: want {want}, got {got}"))
        .collect()
}

#[test]
fn the_node_guard_lets_the_installer_set_only_the_ready_label_of_its_own_node() {
    let docs = parse_documents(&render_overlay(overlay("containerd")));
    let spec = node_guard_spec(&docs);
    let mismatches = node_guard_mismatches(&spec);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // The denial names the node the token belongs to.
    let node = a_node();
    let results = k8s_support::eval_admission_policy(
        &spec,
        &[update(INSTALLER_USER, Some("node-b"), &node, &ready(&node))],
    );
    let message = results[0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("node node-b") && message.contains("not node node-a"),
        "{}",
        results[0]
    );
}

#[test]
fn a_weakened_node_guard_lets_through_what_it_should_not() {
    let docs = parse_documents(&render_overlay(overlay("containerd")));
    let spec = node_guard_spec(&docs);
    // Each validation removed in turn: some case that must be denied gets through.
    let validations = spec["validations"].as_array().unwrap().len();
    for i in 0..validations {
        let weakened = edited(&spec, |s| {
            s["validations"].as_array_mut().unwrap().remove(i);
        });
        let mismatches = node_guard_mismatches(&weakened);
        assert!(
            !mismatches.is_empty()
                && mismatches
                    .iter()
                    .all(|m| m.contains("want denied, got {\"result\":\"allowed\"")),
            "without validation {i}: {mismatches:?}"
        );
    }
}
