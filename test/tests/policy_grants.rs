//! Every grant of the node policy, on a real containerd through `ctr`: a real module tries
//! the thing and is stopped under a profile that does not grant it, with the rule named in
//! the error or the audit log; the same module succeeds under a profile that grants it.

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::time::Duration;

use common::{assert_denied, assert_refused, node};
use warden_test::containerd::RunOpts;
use warden_test::guests::{self, HELLO_NATIVE, Wasi};

mod common;

/// A policy with one granting profile `open` usable from the test namespace, plus `other`,
/// a profile the test namespace may not use.
fn policy(open: &str) -> String {
    format!(
        r#"version = 1

[profiles.open]
namespaces = ["warden-test"]
{open}

[profiles.other]
namespaces = ["somewhere-else"]
"#
    )
}

#[test]
fn mounts_read_only_then_read_write() {
    let n = node();
    n.set_policy(&policy(
        r#"mounts = [{ path = "/config" }, { path = "/data", access = "ro" }]"#,
    ));
    let read = n.guest(Wasi::P1, "read-file");
    let write = n.guest(Wasi::P1, "write-file");
    // Not granted: the path does not exist for the module.
    let r = n.run(&read, &["/config/app.conf"], RunOpts::warden());
    assert_denied(Wasi::P1, &r);
    // Granted read-only: reading works, writing does not.
    let r = n.run_as("open", &read, &["/config/app.conf"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("mode=test"), "{r:?}");
    let r = n.run_as("open", &write, &["/data/out.txt", "x"], RunOpts::warden());
    assert_denied(Wasi::P1, &r);
    // Only granted paths: /etc stays invisible under the same profile.
    let r = n.run_as("open", &read, &["/etc/passwd"], RunOpts::warden());
    assert_denied(Wasi::P1, &r);
    // Granted read-write, on a host directory mounted into the container.
    n.set_policy(&policy(r#"mounts = [{ path = "/data", access = "rw" }]"#));
    let host = tempfile::tempdir().expect("tmp");
    let r = n.run_as(
        "open",
        &write,
        &["/data/out.txt", "written by wasm"],
        RunOpts::warden().mount(host.path(), "/data", "rbind:rw"),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let written = std::fs::read_to_string(host.path().join("out.txt")).expect("written file");
    assert_eq!(written.trim(), "written by wasm");
    // The create record names the grants.
    let created = n.audit_events("create", None);
    assert!(
        created
            .iter()
            .any(|r| r["grants"].as_str().is_some_and(|g| g.contains("/data:rw"))),
        "{created:?}"
    );
}

#[test]
fn env_only_the_named_variables() {
    let n = node();
    n.set_policy(&policy(r#"env = ["LOG_LEVEL", "APP_*"]"#));
    let img = n.guest(Wasi::P1, "env");
    let opts = || {
        RunOpts::warden()
            .env("LOG_LEVEL", "debug")
            .env("APP_MODE", "blue")
            .env("SECRET_TOKEN", "hunter2")
    };
    let r = n.run(&img, &[], opts());
    assert!(r.stdout.contains("env-count=0"), "{r:?}");
    let r = n.run_as("open", &img, &[], opts());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("LOG_LEVEL=debug"), "{r:?}");
    assert!(r.stdout.contains("APP_MODE=blue"), "{r:?}");
    assert!(!r.stdout.contains("hunter2"), "{r:?}");
    assert!(r.stdout.contains("env-count=2"), "{r:?}");
}

#[test]
fn network_connect_only_to_allowed_addresses() {
    let n = node();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let addr = format!("127.0.0.1:{port}");
    let img = n.guest(Wasi::P2, "tcp-connect");
    let host_net = || {
        let mut o = RunOpts::warden();
        o.net_host = true;
        o
    };
    // A profile that allows another port only.
    n.set_policy(&policy(&format!(
        "[profiles.open.network]\nconnect = [\"127.0.0.1:{}\"]",
        port.wrapping_add(1)
    )));
    let r = n.run_as("open", &img, &[&addr], host_net());
    assert_denied(Wasi::P2, &r);
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
    // Granted: the connection arrives with the guest's line.
    n.set_policy(&policy(&format!(
        "[profiles.open.network]\nconnect = [\"127.0.0.0/8:{port}\"]"
    )));
    let r = n.run_as("open", &img, &[&addr], host_net());
    assert_eq!(r.code, Some(0), "{r:?}");
    listener.set_nonblocking(false).expect("blocking");
    let (mut peer, _) = listener.accept().expect("accepted");
    let mut got = String::new();
    peer.read_to_string(&mut got).expect("read");
    assert!(got.contains("hello from wasm"), "{got:?}");
}

#[test]
fn network_listen_only_on_allowed_ports() {
    let n = node();
    // Pick a free port, then release it for the guest.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let img = n.guest(Wasi::P2, "tcp-listen");
    let host_net = || {
        let mut o = RunOpts::warden();
        o.net_host = true;
        o
    };
    let r = n.run(&img, &[&addr], host_net());
    assert_denied(Wasi::P2, &r);
    assert!(
        !n.audit_events("deny", Some("network.listen")).is_empty(),
        "{:?}",
        n.audit()
    );
    n.set_policy(&policy(&format!(
        "[profiles.open.network]\nlisten = [\"127.0.0.1:{port}\"]"
    )));
    let r = n.run_as("open", &img, &[&addr], host_net());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("listening"), "{r:?}");
}

#[test]
fn memory_limit_stops_growth_past_it() {
    let n = node();
    n.set_policy(&policy("[profiles.open.limits]\nmemory = \"16Mi\""));
    let img = n.guest(Wasi::P1, "memory");
    let r = n.run_as("open", &img, &["64"], RunOpts::warden());
    assert_eq!(r.code, Some(135), "{r:?}");
    assert!(r.stderr.contains("limits.memory"), "{r:?}");
    let limits = n.audit_events("limit", Some("limits.memory"));
    assert_eq!(limits.len(), 1, "{:?}", n.audit());
    let r = n.run_as("open", &img, &["8"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("done 8 MiB"), "{r:?}");
}

/// Runs the endless `spin` loop under `limits`: it must be stopped with `code`, the rule named
/// on stderr and in one `limit` audit record. Then, under `roomy` limits, `spin 1` finishes.
fn a_loop_is_stopped(limits: &str, code: i32, rule: &str, roomy: &str) {
    let n = node();
    n.set_policy(&policy(&format!("[profiles.open.limits]\n{limits}")));
    let img = n.guest(Wasi::P1, "spin");
    let r = n.run_as(
        "open",
        &img,
        &["0"],
        RunOpts::warden().timeout(Duration::from_secs(60)),
    );
    assert_eq!(r.code, Some(code), "{r:?}");
    assert!(r.stderr.contains(rule), "{r:?}");
    assert_eq!(
        n.audit_events("limit", Some(rule)).len(),
        1,
        "{:?}",
        n.audit()
    );
    n.set_policy(&policy(&format!("[profiles.open.limits]\n{roomy}")));
    let r = n.run_as("open", &img, &["1"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("done"), "{r:?}");
}

#[test]
fn deadline_stops_a_loop() {
    a_loop_is_stopped(
        "deadline = \"1s\"",
        124,
        "limits.deadline",
        "deadline = \"20s\"",
    );
}

#[test]
fn cpu_time_stops_a_loop() {
    a_loop_is_stopped(
        "cpu_time = \"500ms\"",
        152,
        "limits.cpu_time",
        "cpu_time = \"20s\"",
    );
}

#[test]
fn fuel_stops_a_loop() {
    // 50M units stop the endless loop in well under a second; a one-second spin needs far
    // more, so the roomy profile grants what an unbounded loop could not exhaust in 1 s.
    a_loop_is_stopped(
        "fuel = 50000000",
        153,
        "limits.fuel",
        "fuel = 1000000000000",
    );
}

#[test]
fn modules_allowlist() {
    let n = node();
    let hello = guests::build_guests().p1("hello");
    let digest = warden_common::Digest::of(&hello).to_string();
    let img = n.image("hello-allow", hello);
    n.set_policy(&policy(&format!(
        "modules = [\"sha256:{}\"]",
        "0".repeat(64)
    )));
    let r = n.run_as("open", &img, &[], RunOpts::warden());
    assert_refused(&r, "rule modules");
    let denied = n.audit_events("deny", Some("modules"));
    assert_eq!(denied.len(), 1, "{:?}", n.audit());
    assert_eq!(denied[0]["module_digest"], digest.as_str());
    n.set_policy(&policy(&format!("modules = [\"{digest}\"]")));
    let r = n.run_as("open", &img, &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn native_code_only_where_granted() {
    let n = node();
    let native = std::fs::read(guests::build_guests().native_hello()).expect("native hello");
    let img = n.image("native", native);
    n.set_policy(&policy("native = true"));
    let r = n.run(&img, &[], RunOpts::warden());
    assert_refused(&r, "rule native");
    assert_eq!(n.audit_events("deny", Some("native")).len(), 1);
    let r = n.run_as("open", &img, &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout.trim(), HELLO_NATIVE);
}

#[test]
fn a_profile_the_namespace_may_not_use_is_refused() {
    let n = node();
    n.set_policy(&policy(""));
    let img = n.guest(Wasi::P1, "hello");
    let r = n.run_as("other", &img, &[], RunOpts::warden());
    assert_refused(&r, "rule profile.namespace");
    let r = n.run_as("no-such-profile", &img, &[], RunOpts::warden());
    assert_refused(&r, "rule profile.unknown");
    assert_eq!(n.audit_events("deny", Some("profile.namespace")).len(), 1);
    assert_eq!(n.audit_events("deny", Some("profile.unknown")).len(), 1);
    let r = n.run_as("open", &img, &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn namespace_default_profile_applies_without_annotation() {
    let n = node();
    n.set_policy(&format!(
        "{}\n[namespaces.warden-test]\ndefault = \"open\"\n",
        policy(r#"env = ["APP_*"]"#)
    ));
    let img = n.guest(Wasi::P1, "env");
    let r = n.run(&img, &[], RunOpts::warden().env("APP_X", "1"));
    assert!(r.stdout.contains("APP_X=1"), "{r:?}");
    let created = n.audit_events("create", None);
    assert_eq!(
        created.last().map(|r| r["profile"].clone()),
        Some("open".into())
    );
}

#[test]
fn a_policy_that_does_not_load_refuses_everything() {
    let n = node();
    n.set_policy("version = 1\n[profiles.x]\nnamespaces = [\"*\"]\nbogus = 1\n");
    let img = n.guest(Wasi::P1, "hello");
    let r = n.run(&img, &[], RunOpts::warden());
    assert_refused(&r, "rule policy.invalid");
    assert!(
        r.stderr.contains("policy.toml:4"),
        "names file and line: {r:?}"
    );
    assert!(r.stderr.contains("bogus"), "names the key: {r:?}");
    assert_eq!(n.audit_events("deny", Some("policy.invalid")).len(), 1);
}

#[test]
fn an_unwritable_audit_log_refuses_workloads() {
    let n = node();
    let img = n.guest(Wasi::P1, "hello");
    // A directory where the log file should be: nothing can be appended.
    std::fs::create_dir(n.audit_path()).expect("dir");
    let r = n.run(&img, &[], RunOpts::warden());
    assert_refused(&r, "audit log cannot be written");
    assert!(!r.stdout.contains("hello"), "{r:?}");
}

#[test]
fn the_audit_log_verifies_and_tells_what_ran() {
    let n = node();
    let img = n.guest(Wasi::P1, "exit-code");
    let r = n.run(&img, &["7"], RunOpts::warden());
    assert_eq!(r.code, Some(7), "{r:?}");
    let records = n.audit();
    let events: Vec<&str> = records.iter().filter_map(|r| r["event"].as_str()).collect();
    assert_eq!(
        events,
        ["anchor", "create", "start", "exit", "delete"],
        "{records:?}"
    );
    let exit = &records[3];
    assert_eq!(exit["exit_code"], 7);
    assert_eq!(exit["profile"], "strict");
    assert_eq!(exit["pod_namespace"], "warden-test");
    assert!(
        exit["module_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    let file = std::fs::File::open(n.audit_path()).expect("log");
    let summary = warden_audit::verify(file).expect("the chain verifies");
    assert_eq!(summary.records, 5);
}
