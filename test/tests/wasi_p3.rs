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

#[test]
fn wasi_p3_name_lookup_udp_and_outgoing_http_follow_the_grants() {
    let n = node();
    // Name lookup: refused without `dns`; with it, warden's resolver (the node's files),
    // filtered by the connect rules.
    let resolve = p3(&n, "p3-resolve");
    assert_denied(&n.run(&resolve, &["localhost"], RunOpts::warden()));
    n.set_policy(&policy(
        "[profiles.open.network]\ndns = true\nconnect = [\"127.0.0.0/8:*\"]",
    ));
    let r = n.run_as("open", &resolve, &["localhost"], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.lines().any(|l| l == "127.0.0.1"), "{r:?}");

    // UDP sends: refused and audited without a connect rule; delivered with one.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let addr = socket.local_addr().expect("addr").to_string();
    let send = p3(&n, "p3-udp-send");
    n.set_policy(&policy(""));
    assert_denied(&n.run_as("open", &send, &[&addr, "over udp"], host_net()));
    assert!(
        n.audit_events("deny", Some("network.connect"))
            .iter()
            .any(|d| d["reason"].as_str().is_some_and(|x| x.contains(&addr))),
        "{:?}",
        n.audit()
    );
    n.set_policy(&policy(&format!(
        "[profiles.open.network]\nconnect = [\"{addr}\"]"
    )));
    let r = n.run_as("open", &send, &[&addr, "over udp"], host_net());
    assert_eq!(r.code, Some(0), "{r:?}");
    let mut buf = [0u8; 64];
    let (len, _) = socket.recv_from(&mut buf).expect("the datagram arrives");
    assert_eq!(&buf[..len], b"over udp");

    // Outgoing wasi:http@0.3 from a command: only to the origins the policy names.
    let upstream = warden_test::http::Upstream::start();
    let other = warden_test::http::Upstream::start();
    n.set_policy(&policy(&format!(
        "[profiles.open.http]\noutbound = [\"http://{}\"]",
        upstream.addr
    )));
    let fetch = p3(&n, "p3-fetch");
    let r = n.run_as(
        "open",
        &fetch,
        &[&format!("http://{}/from-p3", upstream.addr)],
        host_net(),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("status 200"), "{r:?}");
    assert_eq!(upstream.seen().len(), 1);
    let r = n.run_as(
        "open",
        &fetch,
        &[&format!("http://{}/nope", other.addr)],
        host_net(),
    );
    assert_denied(&r);
    assert!(r.stderr.contains("HttpRequestDenied"), "{r:?}");
    assert!(other.seen().is_empty());
    assert!(
        n.audit_events("deny", Some("http.outbound"))
            .iter()
            .any(|d| d["reason"]
                .as_str()
                .is_some_and(|x| x.contains(&other.addr.to_string()))),
        "{:?}",
        n.audit()
    );
}

#[test]
fn a_wasi_p3_http_service_answers_and_its_outgoing_requests_are_checked() {
    let n = node();
    let upstream = warden_test::http::Upstream::start();
    let other = warden_test::http::Upstream::start();
    n.set_policy(&policy(&format!(
        "[profiles.open.http]\noutbound = [\"http://{}\"]\n[profiles.open.limits]\nrequest_deadline = \"1s\"",
        upstream.addr
    )));
    let bytes = std::fs::read(guests::build_guests().p3_http_service()).expect("p3 service");
    let image = n.image("p3-http-service", bytes);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], warden_test::http::free_port()).into();
    let id = n.containerd.unique_id("p3svc");
    let running = n.containerd.spawn_run(
        &image,
        &id,
        host_net()
            .env("WARDEN_HTTP_ADDR", &addr.to_string())
            .annotation("warden.dev/profile", "open")
            .args(["/app.wasm"]),
    );
    assert!(
        warden_test::http::wait_listening(addr, Duration::from_secs(60)),
        "the service does not listen: {:?}",
        running.wait(Duration::from_secs(5))
    );
    let r = warden_test::http::get(addr, "/").expect("GET /");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "hello from wasip3 http\n");
    assert_eq!(r.header("x-warden-test"), Some("p3"));
    let r = warden_test::http::get(addr, &format!("/fetch?url=http://{}/via-p3", upstream.addr))
        .expect("fetch");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("upstream 200"), "{}", r.text());
    let r = warden_test::http::get(addr, &format!("/fetch?url=http://{}/x", other.addr))
        .expect("fetch other");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
    assert!(other.seen().is_empty());
    // A handler that spins: 504, and the service goes on.
    let r = warden_test::http::get(addr, "/spin").expect("spin");
    assert_eq!(r.status, 504, "{r:?}");
    let r = warden_test::http::get(addr, "/log?msg=p3-line").expect("log");
    assert_eq!(r.status, 200, "{r:?}");
    n.containerd.kill_task(&id, "SIGTERM");
    let out = running.wait(Duration::from_secs(60)).expect("ends");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.lines().any(|l| l == "p3-line"), "{out:?}");
    let denies = n.audit_events("deny", Some("http.outbound"));
    assert_eq!(denies.len(), 1, "{denies:?}");
    assert!(
        n.audit_events("limit", Some("limits.request_deadline"))
            .len()
            == 1,
        "{:?}",
        n.audit()
    );
}
