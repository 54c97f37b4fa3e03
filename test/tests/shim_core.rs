//! The shim core on a real containerd, driven with `ctr` as a developer would: Wasm images
//! run, their output and exit codes come back, everything not granted is refused, and refused
//! images fail to start with a message that says why.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::Duration;

use common::{assert_denied, assert_refused, exit_status, node};
use warden_test::containerd::RunOpts;
use warden_test::guests::{self, HELLO_WASM, TRAP_FUNCTION, Wasi};

mod common;

#[test]
fn p1_hello_prints_and_exits_zero() {
    let n = node();
    let img = n.guest(Wasi::P1, "hello");
    let r = n.run(&img, &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout.trim(), HELLO_WASM);
}

#[test]
fn p1_exit_code_propagates() {
    let n = node();
    let img = n.guest(Wasi::P1, "exit-code");
    let r = n.run(&img, &["42"], RunOpts::warden());
    assert_eq!(r.code, Some(42), "{r:?}");
}

#[test]
fn p1_args_reach_the_module() {
    let n = node();
    let img = n.guest(Wasi::P1, "args");
    let r = n.run(&img, &["one", "two words"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        ["arg[0]=/app.wasm", "arg[1]=one", "arg[2]=two words"]
    );
}

#[test]
fn p1_trap_exits_134_and_names_the_trap_and_function() {
    let n = node();
    let img = n.guest(Wasi::P1, "trap");
    let r = n.run(&img, &[], RunOpts::warden());
    assert_eq!(r.code, Some(134), "{r:?}");
    assert!(r.stderr.contains("wasm trap"), "{r:?}");
    let log = n.containerd.log();
    let line = log
        .lines()
        .find(|l| l.contains("wasm trap"))
        .unwrap_or_else(|| panic!("no trap in the shim log:\n{log}"));
    assert!(line.contains("unreachable"), "{line}");
    assert!(line.contains(TRAP_FUNCTION), "{line}");
}

#[test]
fn p2_component_prints_and_exit_code_propagates() {
    let n = node();
    let img = n.guest(Wasi::P2, "hello");
    let r = n.run(&img, &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout.trim(), HELLO_WASM);
    let img = n.guest(Wasi::P2, "exit-code");
    for code in [0, 42] {
        let r = n.run(&img, &[&code.to_string()], RunOpts::warden());
        assert_eq!(
            r.code,
            Some(exit_status(Wasi::P2, code)),
            "exit({code}): {r:?}"
        );
    }
}

#[test]
fn deny_by_default_no_files() {
    let n = node();
    for wasi in [Wasi::P1, Wasi::P2] {
        let img = n.guest(wasi, "read-file");
        let r = n.run(&img, &["/etc/passwd"], RunOpts::warden());
        assert_denied(wasi, &r);
        assert!(
            !r.stdout.contains("root:"),
            "{wasi:?} read /etc/passwd: {r:?}"
        );
        let img = n.guest(wasi, "write-file");
        let r = n.run(&img, &["/tmp/x", "data"], RunOpts::warden());
        assert_denied(wasi, &r);
    }
}

#[test]
fn deny_by_default_no_environment() {
    let n = node();
    for wasi in [Wasi::P1, Wasi::P2] {
        let img = n.guest(wasi, "env");
        let r = n.run(
            &img,
            &[],
            RunOpts::warden()
                .env("SECRET_TOKEN", "hunter2")
                .env("APP_MODE", "x"),
        );
        assert_eq!(r.code, Some(0), "{wasi:?}: {r:?}");
        assert!(r.stdout.contains("env-count=0"), "{wasi:?}: {r:?}");
        assert!(!r.stdout.contains("hunter2"), "{wasi:?}: {r:?}");
        assert!(!r.stdout.contains("PATH="), "{wasi:?}: {r:?}");
    }
}

#[test]
fn deny_by_default_no_tcp_connect_even_with_host_network() {
    let n = node();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let img = n.guest(Wasi::P2, "tcp-connect");
    let mut opts = RunOpts::warden();
    opts.net_host = true;
    let r = n.run(&img, &[&addr], opts);
    assert_denied(Wasi::P2, &r);
    assert!(!r.stdout.contains("connected"), "{r:?}");
    std::thread::sleep(Duration::from_millis(200));
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the listener saw a connection: {other:?}"),
    }
    let denials = n.audit_events("deny", Some("network.connect"));
    assert_eq!(denials.len(), 1, "{:?}", n.audit());
    assert_eq!(denials[0]["reason"], format!("tcp connect {addr}").as_str());
    assert_eq!(denials[0]["profile"], "strict");
}

#[test]
fn refuses_a_precompiled_cwasm() {
    let n = node();
    let engine = wasmtime::Engine::default();
    let cwasm = engine
        .precompile_module(&guests::build_guests().p1("hello"))
        .expect("precompile");
    let img = n.image("cwasm", cwasm);
    let r = n.run(&img, &[], RunOpts::warden());
    assert_refused(&r, "precompiled artifact");
    assert!(r.stderr.contains("rule precompiled"), "{r:?}");
    // The most specific rule wins: under a profile with a modules list (which the .cwasm's
    // digest is not in), the refusal is still `precompiled`, and names no profile, since
    // none was decided.
    n.set_policy(&format!(
        "version = 1\n[namespaces.{ns}]\ndefault = \"listed\"\n[profiles.listed]\n\
         namespaces = [\"{ns}\"]\nmodules = [\"sha256:{zeros}\"]\n",
        ns = n.containerd.namespace(),
        zeros = "0".repeat(64)
    ));
    let r = n.run(&img, &[], RunOpts::warden());
    assert_refused(&r, "(rule precompiled)");
    let deny = n.audit_events("deny", None).pop().expect("a deny record");
    assert_eq!(deny["rule"], "precompiled", "{deny}");
    assert!(deny.get("profile").is_none(), "{deny}");
}

#[test]
fn refuses_a_native_entrypoint() {
    let n = node();
    let native = std::fs::read(guests::build_guests().native_hello()).expect("native hello");
    let img = n.image("elf", native);
    let r = n.run(&img, &[], RunOpts::warden());
    assert_refused(&r, "native ELF executable");
    assert!(r.stderr.contains("rule native"), "{r:?}");
    assert!(!r.stdout.contains("hello"), "{r:?}");
    let img = n.image("script", b"#!/bin/sh\necho hi\n".to_vec());
    let r = n.run(&img, &[], RunOpts::warden());
    assert_refused(&r, "#! script");
}

#[test]
fn refuses_a_truncated_module() {
    let n = node();
    let mut bytes = guests::build_guests().p1("hello");
    bytes.truncate(bytes.len() / 2);
    let img = n.image("truncated", bytes);
    let r = n.run(&img, &[], RunOpts::warden());
    assert_refused(&r, "is not a valid Wasm module");
    let img = n.image("garbage", b"not wasm at all".to_vec());
    let r = n.run(&img, &[], RunOpts::warden());
    assert_refused(&r, "neither Wasm nor a native executable");
}

#[test]
fn second_run_of_the_same_bytes_is_served_from_the_cache() {
    let n = node();
    let img = n.guest(Wasi::P1, "hello");
    for _ in 0..2 {
        let r = n.run(&img, &[], RunOpts::warden());
        assert_eq!(r.code, Some(0), "{r:?}");
    }
    let log = n.containerd.log();
    assert_eq!(
        log.matches("stored in the compile cache").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("compile cache hit").count(), 1, "{log}");
    let artifacts: Vec<_> = std::fs::read_dir(n.files.path().join("cache"))
        .expect("cache dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1);
}

/// The directories of container `id`'s cgroup (`ctr`'s default path, `/NAMESPACE/ID`) that
/// exist: in each cgroup v1 hierarchy, or the one of a cgroup v2 host.
fn cgroup_dirs_of(namespace: &str, id: &str) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        hierarchies.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !p.is_symlink()),
        );
    }
    hierarchies
        .into_iter()
        .map(|h| h.join(namespace).join(id))
        .filter(|d| d.is_dir())
        .collect()
}

/// Polls `done` every 20 ms for up to `limit`; whether it came true.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// A container leaves no cgroup behind. The shim removes youki's container (its cgroups, its
/// state) as the guest exits, while containerd turns the exit into a delete; the task stays
/// listed as stopped, containerd's delete afterwards still succeeds, and the audit log still
/// has the exit before the delete.
#[test]
fn an_exited_container_leaves_no_cgroup_and_its_delete_still_succeeds() {
    let n = node();
    let c = &n.containerd;
    let img = n.guest(Wasi::P1, "sleep");
    let id = c.unique_id("cg");
    let mut opts = RunOpts::warden().args(["/app.wasm", "2"]);
    opts.rm = false;
    opts.extra_flags = vec!["--detach".into()];
    let r = c.run(&img, &id, opts);
    assert_eq!(r.code, Some(0), "ctr run --detach: {r:?}");

    // While it runs, its cgroup is there (this test looks in the right place).
    let running = cgroup_dirs_of(c.namespace(), &id);
    assert!(
        !running.is_empty(),
        "no cgroup /{}/{id} under /sys/fs/cgroup while the container runs",
        c.namespace()
    );

    let stopped = || {
        c.ctr_ok(["tasks", "ls"])
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("STOPPED"))
    };
    assert!(
        eventually(Duration::from_secs(30), stopped),
        "{}",
        c.log_tail(40)
    );
    assert!(
        eventually(Duration::from_secs(5), || cgroup_dirs_of(
            c.namespace(),
            &id
        )
        .is_empty()),
        "cgroups left after the exit: {:?}",
        cgroup_dirs_of(c.namespace(), &id)
    );
    assert!(
        stopped(),
        "the stopped task is still listed until its delete"
    );

    c.ctr_ok(["tasks", "delete", &id]);
    c.ctr_ok(["containers", "delete", &id]);
    assert!(cgroup_dirs_of(c.namespace(), &id).is_empty());
    let events: Vec<String> = n
        .audit()
        .iter()
        .filter(|r| r["container_id"] == id.as_str())
        .filter_map(|r| r["event"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        events,
        ["create", "start", "exit", "delete"],
        "{:?}",
        n.audit()
    );
}
