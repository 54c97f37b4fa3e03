//! WASI 0.3 (async) command components under warden, through the real containerd and `ctr`:
//! the same deny-by-default model, grants, limits, exit statuses and audit records as
//! preview 1 and 2. The guests are `test/guests/p3/src/bin/p3-*.rs` (the `wasip3` crate).

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::time::Duration;

use common::{Node, node};
use warden_test::containerd::{RunOpts, RunResult};
use warden_test::guests::{self, TRAP_FUNCTION};

fn policy(open: &str) -> String {
    format!("version = 1\n\n[profiles.open]\nnamespaces = [\"*\"]\n{open}\n")
}

fn p3(n: &Node, name: &str) -> String {
    n.image(name, guests::build_guests().p3_bytes(name))
}

fn host_net() -> RunOpts {
    let mut o = RunOpts::warden();
    o.net_host = true;
    o
}

fn assert_denied(r: &RunResult) {
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("denied: "), "{r:?}");
}

#[test]
fn a_wasi_p3_command_prints_reads_args_and_exits_with_a_code() {
    let n = node();
    let hello = p3(&n, "p3-hello");
    let r = n.run(&hello, &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "hello from wasip3\n");
    // Told apart from a preview 2 command by what it exports (it also exports a
    // `wasi:cli/run@0.2` that traps: the one run is 0.3's).
    let created = n.audit_events("create", None);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["decision"], "allow");

    let args = p3(&n, "p3-args");
    let r = n.run(&args, &["one", "two words"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "one\ntwo words\n");

    let exit = p3(&n, "p3-exit-code");
    let r = n.run(&exit, &["7"], RunOpts::warden());
    assert_eq!(r.code, Some(7), "{r:?}");
    let exits = n.audit_events("exit", None);
    assert!(
        exits
            .iter()
            .any(|e| e["exit_code"] == 7 && e["ended"] == "guest_exit"),
        "{exits:?}"
    );
}

#[test]
fn a_trap_in_a_wasi_p3_command_is_named() {
    let n = node();
    let trap = p3(&n, "p3-trap");
    let r = n.run(&trap, &[], RunOpts::warden());
    assert_eq!(r.code, Some(134), "{r:?}");
    assert!(r.stderr.contains("wasm trap"), "{r:?}");
    assert!(r.stderr.contains(TRAP_FUNCTION), "{r:?}");
}

#[test]
fn wasi_p3_is_deny_by_default() {
    let n = node();
    // No env.
    let env = p3(&n, "p3-env");
    let r = n.run(&env, &[], RunOpts::warden().env("SECRET", "hunter2"));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(!r.stdout.contains("hunter2"), "{r:?}");
    assert!(r.stdout.contains("env-count=0"), "{r:?}");
    // No files.
    let read = p3(&n, "p3-read-file");
    assert_denied(&n.run(&read, &["/config/app.conf"], RunOpts::warden()));
    assert_denied(&n.run(&read, &["/etc/passwd"], RunOpts::warden()));
    // No connect, refused and audited, and the listener sees nothing.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let connect = p3(&n, "p3-tcp-connect");
    assert_denied(&n.run(&connect, &[&addr], host_net()));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the listener saw a connection"
    );
    let denials = n.audit_events("deny", Some("network.connect"));
    assert!(
        denials
            .iter()
            .any(|d| d["reason"].as_str().is_some_and(|x| x.contains(&addr))),
        "no audited connect denial: {:?}",
        n.audit()
    );
    // No listen.
    let listen = p3(&n, "p3-tcp-listen");
    let port = warden_test::http::free_port();
    assert_denied(&n.run(&listen, &[&format!("127.0.0.1:{port}")], host_net()));
    assert!(!n.audit_events("deny", Some("network.listen")).is_empty());
}

#[test]
fn each_grant_works_for_wasi_p3() {
    let n = node();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let listen_port = warden_test::http::free_port();
    n.set_policy(&policy(&format!(
        r#"env = ["APP_MODE"]
mounts = [{{ path = "/config" }}, {{ path = "/data", access = "rw" }}]
[profiles.open.network]
connect = ["127.0.0.1:{port}"]
listen = ["127.0.0.1:{listen_port}"]"#
    )));
    let env = p3(&n, "p3-env");
    let r = n.run_as(
        "open",
        &env,
        &[],
        RunOpts::warden().env("APP_MODE", "blue").env("SECRET", "x"),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("APP_MODE=blue"), "{r:?}");
    assert!(r.stdout.contains("env-count=1"), "{r:?}");

    let read = p3(&n, "p3-read-file");
    let r = n.run_as("open", &read, &["/config/app.conf"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("mode=test"), "{r:?}");
    // Read-only stays read-only; read-write writes.
    let write = p3(&n, "p3-write-file");
    assert_denied(&n.run_as("open", &write, &["/config/new.txt", "x"], RunOpts::warden()));
    let host = tempfile::tempdir().expect("tmp");
    let r = n.run_as(
        "open",
        &write,
        &["/data/out.txt", "written by wasip3"],
        RunOpts::warden().mount(host.path(), "/data", "rbind:rw"),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let written = std::fs::read_to_string(host.path().join("out.txt")).expect("written");
    assert_eq!(written.trim(), "written by wasip3");

    let connect = p3(&n, "p3-tcp-connect");
    let r = n.run_as(
        "open",
        &connect,
        &[&format!("127.0.0.1:{port}")],
        host_net(),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let (mut peer, _) = listener.accept().expect("accepted");
    let mut got = String::new();
    let _ = peer.read_to_string(&mut got);

    let listen = p3(&n, "p3-tcp-listen");
    let r = n.run_as(
        "open",
        &listen,
        &[&format!("127.0.0.1:{listen_port}")],
        host_net(),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("listening"), "{r:?}");
}

#[test]
fn limits_stop_a_wasi_p3_guest() {
    let n = node();
    let spin = p3(&n, "p3-spin");
    n.set_policy(&policy("[profiles.open.limits]\ndeadline = \"1s\""));
    let r = n.run_as("open", &spin, &[], RunOpts::warden());
    assert_eq!(r.code, Some(124), "{r:?}");
    n.set_policy(&policy("[profiles.open.limits]\ncpu_time = \"1s\""));
    let r = n.run_as("open", &spin, &[], RunOpts::warden());
    assert_eq!(r.code, Some(152), "{r:?}");
    let memory = p3(&n, "p3-memory");
    n.set_policy(&policy("[profiles.open.limits]\nmemory = \"16Mi\""));
    let r = n.run_as("open", &memory, &["64"], RunOpts::warden());
    assert_eq!(r.code, Some(135), "{r:?}");
    let r = n.run_as("open", &memory, &["4"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    let limits = n.audit_events("limit", None);
    for rule in ["limits.deadline", "limits.cpu_time", "limits.memory"] {
        assert!(
            limits.iter().any(|l| l["rule"] == rule),
            "{rule}: {limits:?}"
        );
    }
}
