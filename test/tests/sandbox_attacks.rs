//! The attacks of a hostile image author, module author or pod author, tried for real through
//! `ctr` on a private containerd; each is stopped with its reason (refusal rule, exit status,
//! audit record), and a legitimate twin keeps working. One test per attack; README
//! "Security" lists them.

use std::time::{Duration, Instant};

use common::{assert_refused, node};
use warden_test::containerd::RunOpts;
use warden_test::guests::{self, Wasi};
use warden_test::image::ImageBuilder;

mod common;

/// A policy whose profile `open` (usable from the test namespace) holds `grants`.
fn policy(grants: &str) -> String {
    format!("version = 1\n\n[profiles.open]\nnamespaces = [\"warden-test\"]\n{grants}\n")
}

/// An image holding a guest at `/app.wasm` plus whatever `extra` adds.
fn image_with(
    n: &common::Node,
    name: &str,
    module: Vec<u8>,
    extra: impl FnOnce(ImageBuilder) -> ImageBuilder,
) -> String {
    let image = format!("localhost/warden-test/{name}:latest");
    n.containerd.import_image(&extra(ImageBuilder::wasm_rootfs(
        &image,
        "/app.wasm",
        module,
    )));
    image
}

fn last_record(n: &common::Node, event: &str) -> serde_json::Value {
    n.audit_events(event, None)
        .pop()
        .unwrap_or_else(|| panic!("no {event} record in {:?}", n.audit()))
}

#[test]
fn an_image_symlink_cannot_redirect_a_granted_path() {
    let n = node();
    let list = guests::build_guests().bytes(Wasi::P1, "list-dir");
    let read = guests::build_guests().bytes(Wasi::P1, "read-file");
    // `/data -> /proc` with an empty /proc: under a profile granting /data rw, the old shim
    // listed the runner's procfs. `/config -> /var/run/secrets` is the CRI variant.
    let hostile = image_with(&n, "redirect", list.clone(), |i| {
        i.dir("/proc")
            .symlink("/data", "/proc")
            .symlink("/config", "/var/run/secrets/kubernetes.io")
    });
    n.set_policy(&policy(r#"mounts = [{ path = "/data", access = "rw" }]"#));
    let r = n.run_as("open", &hostile, &["/data"], RunOpts::warden());
    assert_refused(&r, "granted path /data is a symlink (-> /proc)");
    assert!(!r.stdout.contains("self"), "procfs was listed: {r:?}");
    let deny = last_record(&n, "deny");
    assert_eq!(deny["rule"], "mounts", "{deny}");

    // Twin: a real directory, and a symlink inside a granted directory that stays inside.
    let fine = image_with(&n, "site", read, |i| {
        i.file("/srv/site/index.html", "<h1>hi</h1>\n", 0o644)
            .symlink("/srv/site/latest.html", "index.html")
    });
    n.set_policy(&policy(r#"mounts = ["/srv/site"]"#));
    let r = n.run_as("open", &fine, &["/srv/site/latest.html"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("<h1>hi</h1>"), "{r:?}");
}

#[test]
fn a_neighbour_cannot_redirect_a_grant_on_a_shared_volume() {
    let n = node();
    let list = guests::build_guests().bytes(Wasi::P1, "list-dir");
    let img = n.image("shared-list", list);
    // Another container with rw on the shared volume planted `cfg -> /proc`.
    let volume = tempfile::tempdir().expect("tmp");
    std::os::unix::fs::symlink("/proc", volume.path().join("cfg")).expect("symlink");
    n.set_policy(&policy(r#"mounts = ["/shared/cfg"]"#));
    let opts = || RunOpts::warden().mount(volume.path(), "/shared", "rbind:ro");
    let r = n.run_as("open", &img, &["/shared/cfg"], opts());
    // The path lives in a container mount, so the runner resolves it, refuses it, and says so.
    assert_eq!(r.code, Some(125), "{r:?}");
    assert!(
        r.stderr
            .contains("refused by policy (mounts): granted path /shared/cfg is a symlink"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("self"), "procfs was listed: {r:?}");
    let deny = last_record(&n, "deny");
    assert_eq!(deny["rule"], "mounts", "{deny}");
    let exit = last_record(&n, "exit");
    assert_eq!(exit["ended"], "refused", "{exit}");

    // Twin: the same grant on a real directory of the volume.
    std::fs::remove_file(volume.path().join("cfg")).expect("rm");
    std::fs::create_dir(volume.path().join("cfg")).expect("mkdir");
    std::fs::write(volume.path().join("cfg/app.conf"), "x").expect("write");
    let r = n.run_as("open", &img, &["/shared/cfg"], opts());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("app.conf"), "{r:?}");
}

#[test]
fn pseudo_file_systems_are_never_granted() {
    let n = node();
    let list = guests::build_guests().bytes(Wasi::P1, "list-dir");
    let img = n.image("pseudo-list", list);
    for path in ["/proc", "/sys", "/dev", "/proc/self"] {
        n.set_policy(&policy(&format!("mounts = [\"{path}\"]")));
        let r = n.run_as("open", &img, &[path], RunOpts::warden());
        assert_refused(&r, &format!("granted path {path} is inside"));
    }
}

#[test]
fn image_content_is_granted_at_a_chosen_guest_path_and_the_whole_rootfs_safely() {
    let n = node();
    let read = guests::build_guests().bytes(Wasi::P1, "read-file");
    let img = image_with(&n, "root-grant", read, |i| {
        i.file("/srv/site/index.html", "<h1>site</h1>\n", 0o644)
            .file("/etc/app.conf", "mode=image\n", 0o644)
            .dir("/proc")
    });
    n.set_policy(&policy(r#"mounts = [{ path = "/srv/site", guest = "/" }]"#));
    let r = n.run_as("open", &img, &["/index.html"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("<h1>site</h1>"), "{r:?}");
    let create = last_record(&n, "create");
    assert!(
        create["grants"]
            .as_str()
            .is_some_and(|g| g.contains("/srv/site->/:ro (image)")),
        "{create}"
    );

    // The whole rootfs: the image's files, not the container's procfs mounted over it.
    n.set_policy(&policy(r#"mounts = ["/"]"#));
    let r = n.run_as("open", &img, &["/etc/app.conf"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("mode=image"), "{r:?}");
    let r = n.run_as("open", &img, &["/proc/self/status"], RunOpts::warden());
    common::assert_denied(Wasi::P1, &r);
    // Read-only: the image cannot be written through it.
    let write = guests::build_guests().bytes(Wasi::P1, "write-file");
    let wimg = image_with(&n, "root-grant-write", write, |i| i.dir("/etc"));
    let r = n.run_as("open", &wimg, &["/etc/x", "y"], RunOpts::warden());
    common::assert_denied(Wasi::P1, &r);
}

#[test]
fn a_fifo_entrypoint_is_refused_at_once_and_leaves_no_shim() {
    let n = node();
    let image = "localhost/warden-test/fifo:latest";
    n.containerd.import_image(
        &ImageBuilder::new(image)
            .fifo("/app.wasm")
            .entrypoint(["/app.wasm"])
            .platform("wasip1", "wasm"),
    );
    let t0 = Instant::now();
    let r = n.run(
        image,
        &[],
        RunOpts::warden().timeout(Duration::from_secs(30)),
    );
    assert_refused(&r, "entrypoint /app.wasm is a FIFO, not a regular file");
    assert!(t0.elapsed() < Duration::from_secs(30), "{r:?}");
    let deny = last_record(&n, "deny");
    assert_eq!(deny["rule"], "entrypoint", "{deny}");
    // No shim of this containerd is left running.
    std::thread::sleep(Duration::from_millis(500));
    let socket = n.containerd.socket().display().to_string();
    let shims: Vec<u32> = warden_test::pids_with_cmdline_containing("containerd-shim-warden-v1")
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&socket))
                .unwrap_or(false)
        })
        .collect();
    assert!(shims.is_empty(), "shims left: {shims:?}");
}

#[test]
fn a_module_over_the_size_bound_is_not_read_nor_compiled() {
    // A node that allows modules of 32 KiB; the hello module is larger.
    let n = common::node_with_env(&[("WARDEN_MAX_MODULE_BYTES", "32768")]);
    let hello = guests::build_guests().bytes(Wasi::P1, "hello");
    assert!(hello.len() > 32768, "{}", hello.len());
    let img = n.image("too-big", hello);
    let r = n.run(&img, &[], RunOpts::warden());
    assert_refused(
        &r,
        "more than the 32768 bytes a module may have on this node",
    );
    assert_eq!(last_record(&n, "deny")["rule"], "entrypoint");
    let cached = std::fs::read_dir(n.files.path().join("cache"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(cached, 0, "something was compiled");
    // Twin: a small module on the same node runs.
    let small = n.image("small", guests::wat(r#"(module (func (export "_start")))"#));
    let r = n.run(&small, &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
}

const FOUR_MEMORIES: &str = r#"(module
  (memory (export "memory") 1) (memory 1) (memory 1) (memory 1)
  (func (export "_start")
    (drop (memory.grow 0 (i32.const PAGES))) (drop (memory.grow 1 (i32.const PAGES)))
    (drop (memory.grow 2 (i32.const PAGES))) (drop (memory.grow 3 (i32.const PAGES)))))"#;

#[test]
fn the_memory_limit_bounds_all_memories_and_tables_together() {
    let n = node();
    n.set_policy(&policy("[profiles.open.limits]\nmemory = \"8Mi\""));
    // Four memories of 6.25 MiB each: the old shim let each pass alone.
    let many = n.image(
        "four-memories",
        guests::wat(&FOUR_MEMORIES.replace("PAGES", "99")),
    );
    let r = n.run_as("open", &many, &[], RunOpts::warden());
    assert_eq!(r.code, Some(135), "{r:?}");
    assert!(r.stderr.contains("limits.memory"), "{r:?}");
    let limit = last_record(&n, "limit");
    assert_eq!(limit["rule"], "limits.memory", "{limit}");
    // A table grown by 200 million elements.
    let table = n.image(
        "table-grow",
        guests::wat(
            r#"(module (table 1 funcref)
                 (func (export "_start")
                   (drop (table.grow (ref.null func) (i32.const 200000000)))))"#,
        ),
    );
    let r = n.run_as("open", &table, &[], RunOpts::warden());
    assert_eq!(r.code, Some(135), "{r:?}");
    // Twin: four memories of 1.5 MiB fit in 8 MiB.
    let fits = n.image(
        "four-small-memories",
        guests::wat(&FOUR_MEMORIES.replace("PAGES", "23")),
    );
    let r = n.run_as("open", &fits, &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn a_guest_blocked_in_a_host_call_is_stopped_at_its_deadline() {
    let n = node();
    let sleep = n.guest(Wasi::P1, "sleep");
    n.set_policy(&policy("[profiles.open.limits]\ndeadline = \"1s\""));
    let r = n.run_as("open", &sleep, &["20"], RunOpts::warden());
    assert_eq!(r.code, Some(124), "{r:?}");
    assert!(r.duration < Duration::from_secs(15), "{r:?}");
    assert!(!r.stdout.contains("slept"), "{r:?}");
    let limit = last_record(&n, "limit");
    assert_eq!(limit["rule"], "limits.deadline", "{limit}");
    let exit = last_record(&n, "exit");
    assert_eq!(exit["ended"], "limit", "{exit}");
    // A sleeping guest uses no CPU: a CPU-time limit lets it sleep and finish.
    n.set_policy(&policy("[profiles.open.limits]\ncpu_time = \"1s\""));
    let r = n.run_as("open", &sleep, &["2"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("slept"), "{r:?}");
}

#[test]
fn a_guest_cannot_fake_a_kill_or_a_limit_with_its_exit_code() {
    let n = node();
    let exit = n.guest(Wasi::P1, "exit-code");
    // Statuses warden gives limits and setup failures, chosen by the guest: passed through,
    // and recorded as the guest's own.
    for code in ["124", "125"] {
        let r = n.run(&exit, &[code], RunOpts::warden());
        assert_eq!(r.code, code.parse().ok(), "{r:?}");
        let rec = last_record(&n, "exit");
        assert_eq!(rec["ended"], "guest_exit", "{rec}");
        assert_eq!(
            rec["reason"],
            format!("the guest exited with {code}"),
            "{rec}"
        );
    }
    // A status a signal would give (137) is outside what WASI lets a guest choose (0..126):
    // wasmtime turns the attempt into a trap, recorded as one.
    let r = n.run(&exit, &["137"], RunOpts::warden());
    assert_eq!(r.code, Some(134), "{r:?}");
    assert!(r.stderr.contains("invalid exit status"), "{r:?}");
    let rec = last_record(&n, "exit");
    assert_eq!(rec["ended"], "trap", "{rec}");
    assert!(n.audit_events("limit", None).is_empty(), "{:?}", n.audit());
    // Twin: a real kill is recorded as one.
    let sleep = n.guest(Wasi::P1, "sleep");
    let id = n.containerd.unique_id("kill");
    let (c, image, id2) = (&n.containerd, sleep.clone(), id.clone());
    std::thread::scope(|s| {
        let run = s.spawn(move || {
            c.run(
                &image,
                &id2,
                RunOpts::warden().args(["/app.wasm".to_string(), "30".into()]),
            )
        });
        wait_for_task(&n, &id);
        n.containerd
            .ctr_ok(["task", "kill", "--signal", "SIGKILL", id.as_str()]);
        let r = run.join().expect("run");
        assert_eq!(r.code, Some(137), "{r:?}");
    });
    let rec = last_record(&n, "exit");
    assert_eq!(rec["ended"], "killed", "{rec}");
}

/// Waits until `ctr task ls` shows `id` running; returns its pid.
fn wait_for_task(n: &common::Node, id: &str) -> u32 {
    let t0 = Instant::now();
    loop {
        let out = n.containerd.ctr_ok(["task", "ls"]);
        if let Some(pid) = out
            .lines()
            .find(|l| l.starts_with(id) && l.contains("RUNNING"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        {
            return pid;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "task {id}: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_runner_holds_no_host_descriptor() {
    let n = node();
    let sleep = n.guest(Wasi::P2, "sleep");
    let data = tempfile::tempdir().expect("tmp");
    n.set_policy(&policy(r#"mounts = ["/data"]"#));
    // A first run compiles (the compile child hands the artifact over); the measured run is
    // a warm start, where the shim itself opens the cached artifact (its key remembered in the
    // cache, `compat_memo`) and must hand over only a sealed copy of it.
    let warm_up = n.containerd.run(
        &sleep,
        &n.containerd.unique_id("fds-warm-up"),
        RunOpts::warden()
            .annotation("warden.dev/profile", "open")
            .args(["/app.wasm", "0"]),
    );
    assert_eq!(warm_up.code, Some(0), "{warm_up:?}");
    let memo = n.files.path().join("cache").join("compat-plain.key");
    assert!(memo.is_file(), "the compile did not remember its key");
    let id = n.containerd.unique_id("fds");
    let c = &n.containerd;
    let fds = std::thread::scope(|s| {
        let (image, id2) = (sleep.clone(), id.clone());
        let data = data.path().to_path_buf();
        let run = s.spawn(move || {
            c.run(
                &image,
                &id2,
                RunOpts::warden()
                    .annotation("warden.dev/profile", "open")
                    .mount(&data, "/data", "rbind:ro")
                    .args(["/app.wasm".to_string(), "3".into()]),
            )
        });
        let pid = wait_for_task(&n, &id);
        // The guest is past its setup once it printed; give it a moment.
        std::thread::sleep(Duration::from_millis(1500));
        let fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fd dir")
            .filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    target.display().to_string(),
                ))
            })
            .collect();
        let r = run.join().expect("run");
        assert_eq!(r.code, Some(0), "{r:?}");
        assert!(
            n.containerd
                .log()
                .contains("compile cache hit for /app.wasm"),
            "the measured run was not a warm start"
        );
        fds
    });
    let audit = n.audit_path().display().to_string();
    let cache = n.files.path().join("cache").display().to_string();
    for (fd, target) in &fds {
        assert!(
            !target.contains(&audit),
            "fd {fd} is the audit log: {fds:?}"
        );
        assert!(!target.contains(&cache), "fd {fd} is in the cache: {fds:?}");
        assert!(!target.contains("socket:"), "fd {fd} is a socket: {fds:?}");
        assert!(
            !target.contains("warden-artifact"),
            "fd {fd} is the artifact: {fds:?}"
        );
        assert!(
            !target.ends_with("/log"),
            "fd {fd} is the shim log: {fds:?}"
        );
    }
    // stdio, the report pipe, and the granted directory are what must be there.
    assert!(
        fds.iter().filter(|(_, t)| t.starts_with("pipe:")).count() >= 1,
        "{fds:?}"
    );
    assert!(fds.iter().any(|(_, t)| t == "/data"), "{fds:?}");
}

#[test]
fn a_flood_of_refusals_is_throttled_in_the_audit_log() {
    let n = node();
    let flood = n.guest(Wasi::P2, "connect-flood");
    let r = n.run(&flood, &["127.0.0.1:9", "500"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("refused=500 connected=0"), "{r:?}");
    // 20 records per 10 s window, and every other refusal counted in a `suppressed` record.
    // A slow machine may take more than one window for the 500 tries.
    let denies = n.audit_events("deny", Some("network.connect"));
    let windows = 1 + r.duration.as_secs() / 10;
    assert!(
        denies.len() >= 20 && denies.len() as u64 <= 20 * windows,
        "{} deny records in {:?}",
        denies.len(),
        r.duration
    );
    let suppressed: u64 = n
        .audit_events("suppressed", None)
        .iter()
        .map(|rec| {
            let reason = rec["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("records suppressed"), "{rec}");
            reason
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in {rec}"))
        })
        .sum();
    assert_eq!(denies.len() as u64 + suppressed, 500, "{:?}", n.audit());
    // The log still verifies.
    let verify = warden_audit::verify_file(n.audit_path(), None).expect("verify");
    assert!(verify.records < 100, "{verify:?}");
}

#[test]
fn a_container_whose_records_cannot_be_written_is_stopped() {
    let n = node();
    let flood = n.guest(Wasi::P2, "connect-flood");
    let id = n.containerd.unique_id("unaudited");
    let c = &n.containerd;
    let (r, waited) = std::thread::scope(|s| {
        let (image, id2) = (flood.clone(), id.clone());
        let run = s.spawn(move || {
            c.run(
                &image,
                &id2,
                RunOpts::warden().args(["/app.wasm", "127.0.0.1:9", "100000", "3"]),
            )
        });
        wait_for_task(&n, &id);
        // While the guest sleeps, the log becomes unwritable (here: a directory where the
        // file was); its next refusal cannot be recorded.
        let log = n.audit_path();
        std::fs::rename(&log, log.with_extension("moved")).expect("move log");
        std::fs::create_dir(&log).expect("dir");
        let t0 = Instant::now();
        let r = run.join().expect("run");
        (r, t0.elapsed())
    });
    assert_eq!(r.code, Some(137), "{r:?}");
    assert!(
        !r.stdout.contains("refused="),
        "the guest ran to its end: {r:?}"
    );
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    assert!(
        n.containerd
            .log()
            .contains("the audit log cannot be written"),
        "{}",
        n.containerd.log_tail(30)
    );
}

#[test]
fn names_never_resolve_through_the_image() {
    let n = node();
    let resolve = guests::build_guests().bytes(Wasi::P2, "resolve");
    // The image maps a name in its own hosts file and brings an NSS configuration; neither
    // may be used: the shim resolves with the node's configuration.
    let img = image_with(&n, "resolve", resolve, |i| {
        i.file("/etc/hosts", "127.0.0.1 evil.warden.test\n", 0o644)
            .file("/etc/nsswitch.conf", "hosts: files evil\n", 0o644)
            .file(
                "/lib/x86_64-linux-gnu/libnss_evil.so.2",
                "not a library",
                0o755,
            )
            .file("/etc/resolv.conf", "nameserver 127.0.0.1\n", 0o644)
    });
    n.set_policy(&policy(
        "[profiles.open.network]\nconnect = [\"127.0.0.1:*\"]\ndns = true",
    ));
    // The pod's resolver files, as CRI mounts them: a nameserver on loopback where nothing
    // answers and a hosts file with one test name. The container has its own network
    // namespace (no `--net-host`, which would make ctr mount the host's files instead), so
    // no query leaves it.
    let pod = tempfile::tempdir().expect("tmp");
    let resolv = pod.path().join("resolv.conf");
    let hosts = pod.path().join("hosts");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .expect("w");
    std::fs::write(&hosts, "127.0.0.1 localhost good.warden.test\n").expect("w");
    let opts = || {
        RunOpts::warden()
            .timeout(Duration::from_secs(60))
            .mount(&resolv, "/etc/resolv.conf", "rbind:ro")
            .mount(&hosts, "/etc/hosts", "rbind:ro")
    };
    let r = n.run_as("open", &img, &["evil.warden.test", "9"], opts());
    assert!(
        r.stderr.contains("denied: lookup evil.warden.test"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("addr=127.0.0.1"), "{r:?}");
    // Twin: a name the pod's hosts file knows resolves.
    let r = n.run_as("open", &img, &["good.warden.test", "9"], opts());
    assert!(
        r.stdout.contains("addr=127.0.0.1"),
        "{r:?}\n{}",
        n.containerd.log_tail(80)
    );

    // The same for a WASI 0.3 component (`wasi:sockets/ip-name-lookup@0.3.0`), from an image
    // with the same hostile files.
    let resolve3 = guests::build_guests().p3_bytes("p3-resolve");
    let img3 = image_with(&n, "p3-resolve", resolve3, |i| {
        i.file("/etc/hosts", "127.0.0.1 evil.warden.test\n", 0o644)
            .file("/etc/nsswitch.conf", "hosts: files evil\n", 0o644)
            .file("/etc/resolv.conf", "nameserver 127.0.0.1\n", 0o644)
    });
    let r = n.run_as("open", &img3, &["evil.warden.test"], opts());
    assert!(
        r.stderr.contains("denied: resolve evil.warden.test"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("127.0.0.1"), "{r:?}");
    let r = n.run_as("open", &img3, &["good.warden.test"], opts());
    assert_eq!(r.code, Some(0), "{r:?}\n{}", n.containerd.log_tail(80));
    assert!(r.stdout.lines().any(|l| l == "127.0.0.1"), "{r:?}");
}

#[test]
fn ctr_clients_cannot_claim_kubernetes_facts() {
    let n = node();
    let hello = n.guest(Wasi::P1, "hello");
    // `payments-api` may only be used by the `payments` namespace.
    n.set_policy(
        "version = 1\n[profiles.payments-api]\nnamespaces = [\"payments\"]\nenv = [\"A\"]\n",
    );
    let r = n.run(
        &hello,
        &[],
        RunOpts::warden()
            .annotation("io.kubernetes.cri.sandbox-namespace", "payments")
            .annotation("warden.dev/profile", "payments-api"),
    );
    assert_refused(&r, "payments-api");
    let deny = last_record(&n, "deny");
    assert_eq!(deny["rule"], "profile.namespace", "{deny}");
    assert_eq!(deny["pod_namespace"], "warden-test", "{deny}");
    // Claiming to be a pod sandbox does not let native code run.
    let native = n.containerd.import_image(
        &ImageBuilder::new("localhost/warden-test/claims-sandbox:latest")
            .file(
                "/hello",
                std::fs::read(guests::build_guests().native_hello()).expect("native"),
                0o755,
            )
            .entrypoint(["/hello"]),
    );
    let id = n.containerd.unique_id("sb");
    let r = n.containerd.run(
        &native.name,
        &id,
        RunOpts::warden()
            .annotation("io.kubernetes.cri.container-type", "sandbox")
            .annotation("io.kubernetes.cri.sandbox-id", &id)
            .args(["/hello"]),
    );
    assert_refused(&r, "native");
}

#[test]
fn control_characters_from_the_image_are_escaped_in_errors() {
    let n = node();
    let hello = n.guest(Wasi::P1, "hello");
    let id = n.containerd.unique_id("esc");
    let r = n.containerd.run(
        &hello,
        &id,
        RunOpts::warden().args(["/nope\u{1b}[31m.wasm"]),
    );
    assert_refused(&r, "not found in the image");
    assert!(!r.stderr.contains('\u{1b}'), "raw ESC reached ctr: {r:?}");
    assert!(r.stderr.contains("[31m.wasm"), "{r:?}");
}
