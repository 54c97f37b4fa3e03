//! The installer DaemonSet's container, run as the kubelet would run it, without Kubernetes:
//! the image `make image` builds, imported into the harness's real containerd and started
//! with `ctr run` (runc) with exactly what the rendered DaemonSet (overlay `containerd`)
//! says: its command and args, its hostPath mounts at their node paths (with their
//! read-only flags and propagation), the ConfigMap's policy, the memory-backed /tmp, the
//! security context (uid 0, every capability dropped, no new privileges, the runtime's
//! default seccomp profile, a read-only root file system), its limits, and a network
//! namespace of its own (no hostNetwork), on containerd 1.6 and 2.1.
//!
//! The node is this machine with a file system of the test's own: containerd runs in a
//! mount namespace in which /etc/containerd, /opt/warden/bin, /var/lib/warden,
//! /var/log/warden, /etc/warden, /run/containerd and /run/dbus/system_bus_socket are the
//! test's dirs (`warden_test::node_namespace`), so the hostPaths resolve there and nothing
//! of this machine's is touched. systemd is a stand-in for its Manager on a real
//! dbus-daemon (there is no systemd here) whose RestartUnit restarts that containerd; the
//! API server replays recorded exchanges on 127.0.0.1 in the pod's network namespace.
//!
//! What the kubelet adds, the test adds too: the service account's volume at
//! /var/run/secrets/kubernetes.io/serviceaccount (a token, the cluster CA's certificate, the
//! namespace) and KUBERNETES_SERVICE_HOST/PORT, so the installer uses its in-cluster client
//! over TLS, with a server certificate that CA signed (openssl). What it does not add: the
//! kubelet's /etc/hosts, /etc/resolv.conf and termination-log mounts, and a CNI-made network.
//!
//! The container installs the shim from the image (digest-verified), registers it, restarts
//! containerd through D-Bus, verifies through CRI on the mounted socket dir, writes the
//! policy, and labels the node; then a Wasm pod runs through CRI under the shim it
//! installed, audited in the node's audit log; then SIGTERM ends it with status 0 and the
//! node keeps the runtime.

mod daemon_support;
mod k8s_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use daemon_support::{
    DbusDaemon, RecordedApi, ServingCert, SystemdStandIn, build_pause, exchanges_with, records,
    wait_until,
};
use serde_json::Value;
use warden_cri::{Client, ContainerSpec, PodSpec};
use warden_test::containerd::{Containerd, NodePath, Options};
use warden_test::containerd_versions::Version;
use warden_test::guests::{self, HELLO_WASM, Wasi};
use warden_test::image::ImageBuilder;

const NODE: &str = "worker-1";
const PAUSE_IMAGE: &str = "localhost/warden-test/pause:1";
/// The service account token the container presents.
const TOKEN: &str = "warden-installer-token-for-the-recorded-api";
const POLICY: &str = "version = 1\n\n[profiles.reader]\nnamespaces = [\"*\"]\n";
/// Where `make image` writes its archive, unless WARDEN_IMAGES_DIR says otherwise.
const IMAGES_DIR_ENV: &str = "WARDEN_IMAGES_DIR";

/// The node paths the DaemonSet's hostPath volumes name (the base and overlay
/// `containerd`), each a dir of the test's in the node's mount namespace. The bus socket is
/// added apart: it is the dbus-daemon's.
const NODE_DIRS: &[&str] = &[
    "/etc/containerd",
    "/opt/warden/bin",
    "/var/lib/warden",
    "/var/log/warden",
    "/etc/warden",
    "/run/containerd",
];

/// Every Linux capability (linux/capability.h, 0 to 40), for a `drop: [ALL]`.
const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

fn installer_archive() -> PathBuf {
    let dir = std::env::var_os(IMAGES_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| k8s_support::repo_root().join("target/images"));
    let archive = dir.join("warden-installer.tar");
    assert!(
        archive.is_file(),
        "{} is missing: run `make image` (IMAGE_PROFILE=dev builds it faster), or set {IMAGES_DIR_ENV}",
        archive.display()
    );
    archive
}

/// The rendered overlay's DaemonSet.
fn rendered_daemonset(overlay: &str) -> Value {
    let yaml = k8s_support::render(
        &k8s_support::repo_root()
            .join("runtimeclass/overlays")
            .join(overlay),
    );
    k8s_support::parse_documents(&yaml)
        .into_iter()
        .find(|doc| doc["kind"] == "DaemonSet")
        .expect("the overlay renders no DaemonSet")
}

/// `docker.io/library/NAME:TAG` for a short reference, as containerd's CRI normalises it.
fn normalised(reference: &str) -> String {
    let (name, tag) = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (reference.to_owned(), "latest".to_owned()),
    };
    let first = name.split('/').next().unwrap_or_default();
    let host = first.contains('.') || first.contains(':') || first == "localhost";
    match (host, name.contains('/')) {
        (true, _) => format!("{name}:{tag}"),
        (false, true) => format!("docker.io/{name}:{tag}"),
        (false, false) => format!("docker.io/library/{name}:{tag}"),
    }
}

/// Kubernetes quantities as the DaemonSet writes them.
fn bytes(quantity: &str) -> u64 {
    let units = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)];
    for (suffix, factor) in units {
        if let Some(n) = quantity.strip_suffix(suffix) {
            return n.parse::<u64>().expect("a quantity") * factor;
        }
    }
    quantity.parse().expect("a quantity in bytes")
}

fn cpus(quantity: &str) -> String {
    match quantity.strip_suffix('m') {
        Some(milli) => format!("{}", milli.parse::<f64>().expect("a quantity") / 1000.0),
        None => quantity.to_owned(),
    }
}

/// How the test provides what is not a hostPath: the ConfigMap's dir.
struct NonHostVolumes {
    config_maps: BTreeMap<String, PathBuf>,
}

/// `ctr run` flags for the DaemonSet's only container, as the kubelet would set it up:
/// mounts, environment (NODE_NAME from the downward API), security context, limits. Fails
/// on a setting this translation does not know, so a changed manifest cannot pass unseen.
fn ctr_flags(ds: &Value, volumes: &NonHostVolumes, release_major: u32) -> Vec<String> {
    let pod = &ds["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    let container = &containers[0];
    let mut flags = Vec::new();

    for ns in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(
            pod[ns], true,
            "{ns}: this translation runs the pod in its own"
        );
    }

    // Security context: the container's, over the pod's.
    let security = |key: &str| -> Value {
        let own = &container["securityContext"][key];
        if own.is_null() {
            pod["securityContext"][key].clone()
        } else {
            own.clone()
        }
    };
    assert_ne!(security("privileged"), true, "privileged is not translated");
    if security("allowPrivilegeEscalation") != false {
        // ctr sets no_new_privs unless told otherwise; the kubelet does when this is false.
        flags.push("--allow-new-privs".into());
    }
    if security("readOnlyRootFilesystem") == true {
        flags.push("--read-only".into());
    }
    // ctr knows no `ALL`: every capability but those added back is dropped by name (ctr
    // applies its drops after its adds).
    let caps = security("capabilities");
    let names = |key: &str| -> Vec<String> {
        caps[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c.as_str().expect("a capability").to_owned())
            .collect()
    };
    let added = names("add");
    let mut dropped = names("drop");
    if dropped.iter().any(|c| c == "ALL") {
        dropped = ALL_CAPABILITIES
            .iter()
            .map(|c| (*c).to_owned())
            .filter(|c| !added.contains(c))
            .collect();
    }
    for cap in added {
        flags.push("--cap-add".into());
        flags.push(format!("CAP_{cap}"));
    }
    for cap in dropped {
        flags.push("--cap-drop".into());
        flags.push(format!("CAP_{cap}"));
    }
    match security("seccompProfile")["type"].as_str() {
        // containerd's default profile: the one CRI applies for RuntimeDefault.
        Some("RuntimeDefault") => flags.push("--seccomp".into()),
        other => panic!("seccompProfile {other:?} is not translated"),
    }
    let uid = security("runAsUser").as_u64().expect("runAsUser");
    let gid = security("runAsGroup").as_u64().unwrap_or(uid);
    if release_major >= 2 {
        flags.push("--user".into());
        flags.push(format!("{uid}:{gid}"));
    } else {
        // ctr 1.6 has no --user; the image names no user, so its processes run as 0:0.
        assert_eq!((uid, gid), (0, 0), "ctr 1.6 runs the image's user (root)");
    }

    let limits = &container["resources"]["limits"];
    if let Some(memory) = limits["memory"].as_str() {
        flags.push("--memory-limit".into());
        flags.push(bytes(memory).to_string());
    }
    if let Some(cpu) = limits["cpu"].as_str() {
        flags.push("--cpus".into());
        flags.push(cpus(cpu));
    }

    for env in container["env"].as_array().into_iter().flatten() {
        let name = env["name"].as_str().expect("an env name");
        let value = match (&env["value"], &env["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(value), _) => value.clone(),
            (_, Value::String(field)) if field == "spec.nodeName" => NODE.to_owned(),
            other => panic!("env {name}: {other:?} is not translated"),
        };
        flags.push("--env".into());
        flags.push(format!("{name}={value}"));
    }

    let by_name: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| (v["name"].as_str().expect("a volume name"), v))
        .collect();
    for mount in container["volumeMounts"].as_array().expect("volumeMounts") {
        let name = mount["name"].as_str().expect("a mount's volume");
        let volume = by_name[name];
        let destination = mount["mountPath"].as_str().expect("mountPath");
        let read_only = mount["readOnly"] == true;
        let propagation = match mount["mountPropagation"].as_str() {
            None | Some("None") => "rprivate",
            Some("HostToContainer") => "rslave",
            Some(other) => panic!("mountPropagation {other} is not translated"),
        };
        let access = if read_only { "ro" } else { "rw" };
        let spec = if let Some(path) = volume["hostPath"]["path"].as_str() {
            // A node path: runc resolves it in containerd's (the node's) mount namespace.
            format!("type=bind,src={path},dst={destination},options=rbind:{access}:{propagation}")
        } else if volume["configMap"].is_object() {
            let dir = &volumes.config_maps[name];
            format!(
                "type=bind,src={},dst={destination},options=rbind:ro",
                dir.display()
            )
        } else if volume["emptyDir"]["medium"] == "Memory" {
            let size = volume["emptyDir"]["sizeLimit"]
                .as_str()
                .map(bytes)
                .expect("a memory emptyDir has a sizeLimit");
            format!("type=tmpfs,src=tmpfs,dst={destination},options=nosuid:nodev:size={size}")
        } else {
            panic!("volume {name} is not translated: {volume}");
        };
        flags.push("--mount".into());
        flags.push(spec);
    }
    flags
}

/// The command line: command then args.
fn command_line(ds: &Value) -> Vec<String> {
    let container = &ds["spec"]["template"]["spec"]["containers"][0];
    ["command", "args"]
        .iter()
        .flat_map(|key| container[*key].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// A network namespace with its loopback up, held by a process: the pod's.
struct PodNetwork {
    holder: Child,
}

impl PodNetwork {
    fn start() -> PodNetwork {
        let mut holder = Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && echo ready && exec sleep 2147483647",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run unshare");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "the pod's network namespace was not made");
        PodNetwork { holder }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A field of /proc/PID/status.
fn status_field(pid: u32, key: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {key}:\n{status}"))
}

/// The task's pid, from `ctr task ls`.
fn task_pid(containerd: &Containerd, id: &str) -> Option<(u32, String)> {
    let listing = containerd.ctr_ok(["task", "ls"]);
    listing.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() >= 3 && fields[0] == id)
            .then(|| Some((fields[1].parse().ok()?, fields[2].to_owned())))
            .flatten()
    })
}

fn the_daemonset_container_installs_and_a_wasm_pod_runs(version: Version) {
    warden_test::require_root();
    let archive = installer_archive();
    let temp = tempfile::Builder::new()
        .prefix("warden-ds-")
        .tempdir()
        .unwrap();
    let dir = temp.path();
    let node_dir = |node: &str| dir.join("node").join(node.trim_start_matches('/'));
    for node in NODE_DIRS {
        fs::create_dir_all(node_dir(node)).unwrap();
        // As a package or the kubelet (DirectoryOrCreate) makes them: root's, 0755.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(node_dir(node), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let v3 = matches!(version, Version::V2_1);
    // On 2.x, the config imports conf.d as the packages ship it; the installer writes its
    // drop-in there.
    let imports = if v3 {
        fs::create_dir_all(node_dir("/etc/containerd/conf.d")).unwrap();
        "imports = [\"/etc/containerd/conf.d/*.toml\"]\n"
    } else {
        ""
    };

    let bus = DbusDaemon::start();
    let bus_socket = bus
        .address
        .strip_prefix("unix:path=")
        .expect("a unix socket bus");
    let mut node_paths: Vec<NodePath> = NODE_DIRS
        .iter()
        .map(|node| NodePath::bind(*node, node_dir(node)))
        .collect();
    node_paths.push(NodePath::bind("/run/dbus/system_bus_socket", bus_socket));
    let containerd = Containerd::start(Options {
        cri: true,
        namespace: "k8s.io".into(),
        version: Some(version),
        node_paths,
        config_file: Some("/etc/containerd/config.toml".into()),
        socket_file: Some("/run/containerd/containerd.sock".into()),
        extra_config: format!(
            "{imports}[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"{PAUSE_IMAGE}\"\n"
        ),
        ..Options::default()
    });
    let release = containerd.version();
    let original_config = fs::read(containerd.config_path()).unwrap();

    // The node's pause image and a Wasm image, as the kubelet would have pulled them.
    containerd.import_image(
        &ImageBuilder::new(PAUSE_IMAGE)
            .file("/pause", build_pause(dir), 0o755)
            .entrypoint(["/pause"])
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
    );
    let guests = guests::build_guests();
    let wasm = containerd.import_image(&guests.image(Wasi::P1, "hello"));
    containerd.import(&archive);

    // systemd: RestartUnit restarts this containerd, in the node's mount namespace.
    containerd.write_restart_script(
        &dir.join("restart.sh"),
        &[],
        Some(&dir.join("restarts.log")),
    );
    let systemd = SystemdStandIn::on_bus(&bus.address, Some(&dir.join("restart.sh")));

    // The pod's network and the API server in it.
    let network = PodNetwork::start();
    let runtime_version = format!(
        "containerd://{}.{}.{}",
        release.major, release.minor, release.patch
    );
    // The API server over TLS with a certificate the cluster's CA signed, as the in-cluster
    // client reaches it.
    let serving = ServingCert::generate(&dir.join("pki"));
    let api = RecordedApi::start_tls_in_netns(
        exchanges_with(
            &["get-node", "patch-ready", "patch-unready"],
            &[("{NODE}", NODE), ("containerd://1.6.20", &runtime_version)],
        ),
        &network.path(),
        &serving,
    );
    // The ConfigMap, and the service account's volume as the kubelet projects it.
    let config_map = dir.join("configmap");
    fs::create_dir_all(&config_map).unwrap();
    fs::write(config_map.join("policy.toml"), POLICY).unwrap();
    let service_account = dir.join("serviceaccount");
    fs::create_dir_all(&service_account).unwrap();
    fs::copy(&serving.ca_pem, service_account.join("ca.crt")).unwrap();
    fs::write(service_account.join("token"), TOKEN).unwrap();
    fs::write(service_account.join("namespace"), "warden-system").unwrap();

    let ds = rendered_daemonset("containerd");
    let image = ds["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .expect("an image");
    let image = normalised(image);
    assert!(
        containerd.images().contains(&image),
        "the rendered DaemonSet runs {image}, which `make image` did not make: {:?}",
        containerd.images()
    );
    let volumes = NonHostVolumes {
        config_maps: BTreeMap::from([("policy-source".to_owned(), config_map.clone())]),
    };
    let id = "warden-installer";
    let log = dir.join("installer.log");
    let mut run = vec!["run".to_owned(), "-d".into()];
    run.extend(ctr_flags(&ds, &volumes, release.major));
    // What the kubelet adds to every pod: the service account's volume
    // (automountServiceAccountToken) and the API server's address (whatever
    // enableServiceLinks says).
    run.extend([
        "--mount".into(),
        format!(
            "type=bind,src={},dst=/var/run/secrets/kubernetes.io/serviceaccount,options=rbind:ro",
            service_account.display()
        ),
        "--env".into(),
        "KUBERNETES_SERVICE_HOST=127.0.0.1".into(),
        "--env".into(),
        format!("KUBERNETES_SERVICE_PORT={}", api.port()),
        "--with-ns".into(),
        format!("network:{}", network.path().display()),
        "--log-uri".into(),
        format!("file://{}", log.display()),
        image.clone(),
        id.into(),
    ]);
    run.extend(command_line(&ds));
    containerd.ctr_ok(&run);

    let audit_log = containerd
        .node_host_path(Path::new("/var/log/warden/audit.jsonl"))
        .unwrap();
    let diag = || {
        format!(
            "--- ctr {}\n--- installer output\n{}\n--- API requests\n{:#?}\n--- containerd log (end)\n{}",
            run.join(" "),
            fs::read_to_string(&log).unwrap_or_default(),
            api.lines(),
            containerd.log_tail(40)
        )
    };

    // The process the container runs: uid 0 with no capability at all, no new privileges,
    // a seccomp filter, a read-only root.
    let (pid, _) = task_pid(&containerd, id).unwrap_or_else(|| panic!("no task\n{}", diag()));
    assert_eq!(
        status_field(pid, "Uid").split_whitespace().next(),
        Some("0")
    );
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            status_field(pid, caps),
            "0000000000000000",
            "{caps}\n{}",
            diag()
        );
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2", "seccomp filter mode");
    let mounts = fs::read_to_string(format!("/proc/{pid}/mounts"))
        .unwrap_or_else(|e| panic!("the installer's mounts: {e}\n{}", diag()));
    let root = mounts
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some("/"))
        .unwrap();
    assert!(
        root.split_whitespace()
            .nth(3)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "the root file system is writable: {root}"
    );

    // Installed, restarted over D-Bus, verified through CRI, policy written, labelled.
    wait_until(
        "the node labelled warden.dev/ready",
        Duration::from_secs(120),
        || {
            api.wait_for("patch-ready", Duration::from_millis(10))
                && records(&audit_log).iter().any(|r| r.event == "label")
        },
        &diag,
    );
    // Over TLS (the CA from the service account's volume), with its token.
    for request in api.received() {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{request:?}"
        );
    }
    let calls = systemd.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].unit, "containerd.service");
    assert_eq!(calls[0].result, "done");
    let installed = node_dir("/opt/warden/bin").join("containerd-shim-warden-v1");
    assert!(installed.is_file(), "{}", diag());
    assert_eq!(
        fs::read_to_string(node_dir("/etc/warden").join("policy.toml")).unwrap(),
        POLICY
    );
    let config_now = fs::read_to_string(containerd.config_path()).unwrap();
    let drop_in = node_dir("/etc/containerd/conf.d").join("warden.toml");
    if v3 {
        assert_eq!(
            fs::read(containerd.config_path()).unwrap(),
            original_config,
            "2.x: the main file is never edited"
        );
        let text = fs::read_to_string(&drop_in).unwrap();
        assert!(
            text.contains("runtime_path = \"/opt/warden/bin/containerd-shim-warden-v1\""),
            "{text}"
        );
    } else {
        assert!(
            config_now.contains("runtime_path = \"/opt/warden/bin/containerd-shim-warden-v1\""),
            "{config_now}"
        );
    }
    let audit = records(&audit_log);
    let events: Vec<&str> = audit.iter().map(|r| r.event.as_str()).collect();
    for event in [
        "install",
        "config-write",
        "restart",
        "verify",
        "policy-write",
        "label",
    ] {
        assert!(
            events.contains(&event),
            "{event} missing: {events:?}\n{}",
            diag()
        );
    }
    let at = |event: &str| events.iter().position(|e| *e == event).unwrap();
    assert!(
        at("restart") < at("verify") && at("verify") < at("label"),
        "{events:?}"
    );

    // A Wasm pod, through CRI, under the shim the container installed.
    let mut cri = Client::connect(containerd.socket(), Duration::from_secs(30)).unwrap();
    let logs = dir.join("pod-logs");
    fs::create_dir_all(&logs).unwrap();
    let pod = PodSpec::new("hello", "default")
        .handler("warden")
        .host_network(true)
        .log_dir(&logs);
    let pod_id = cri
        .run_pod(&pod)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", diag()));
    let container = cri
        .create_container(
            &pod_id,
            &pod,
            &ContainerSpec::new("hello", &wasm.name).log_path("hello.log"),
        )
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", diag()));
    cri.start_container(&container).unwrap();
    let status = cri
        .wait_exited(&container, Duration::from_secs(60))
        .unwrap();
    assert_eq!(status.exit_code, 0, "{status:?}\n{}", diag());
    let pod_log = fs::read_to_string(logs.join("hello.log")).unwrap_or_default();
    assert!(pod_log.contains(HELLO_WASM), "container log: {pod_log:?}");
    // The shim the installer put on the node wrote its record to the node's audit log.
    let shim_records: Vec<_> = records(&audit_log)
        .into_iter()
        .filter(|r| r.container_id.as_deref() == Some(container.as_str()))
        .collect();
    assert!(
        !shim_records.is_empty(),
        "no audit record of container {container} in the node's audit log"
    );
    cri.stop_and_remove_pod(&pod_id).unwrap();

    // SIGTERM (a rolling update, a drain): status 0, and the node keeps the runtime.
    containerd.ctr_ok(["task", "kill", "--signal", "SIGTERM", id]);
    wait_until(
        "the installer stopped",
        Duration::from_secs(60),
        || task_pid(&containerd, id).is_some_and(|(_, status)| status == "STOPPED"),
        &diag,
    );
    let deleted = containerd.ctr(["task", "rm", id]);
    assert!(
        deleted.status.success(),
        "the installer exited with {:?}\n{}",
        deleted.status.code(),
        diag()
    );
    assert!(installed.is_file(), "SIGTERM uninstalled the shim");
    assert!(
        !api.received()
            .iter()
            .any(|r| r.matched.as_deref() == Some("patch-unready")),
        "SIGTERM removed the label: {:#?}",
        api.lines()
    );
    assert_eq!(systemd.calls().len(), 1, "no restart after the first");
    containerd.ctr_ok(["container", "rm", id]);
}

#[test]
fn the_daemonset_container_installs_on_containerd_1_6_and_a_wasm_pod_runs() {
    the_daemonset_container_installs_and_a_wasm_pod_runs(Version::V1_6);
}

#[test]
fn the_daemonset_container_installs_on_containerd_2_1_and_a_wasm_pod_runs() {
    the_daemonset_container_installs_and_a_wasm_pod_runs(Version::V2_1);
}

#[test]
fn references_normalise_as_containerd_does() {
    assert_eq!(
        normalised("warden-installer:0.1.0"),
        "docker.io/library/warden-installer:0.1.0"
    );
    assert_eq!(normalised("org/x"), "docker.io/org/x:latest");
    assert_eq!(
        normalised("registry.example.com/warden/warden-installer:1"),
        "registry.example.com/warden/warden-installer:1"
    );
    assert_eq!(normalised("localhost/a:b"), "localhost/a:b");
    assert_eq!(bytes("128Mi"), 128 << 20);
    assert_eq!(bytes("8Mi"), 8 << 20);
    assert_eq!(cpus("500m"), "0.5");
}
