//! HTTP services under warden, through the real containerd and `ctr run --net-host`: a
//! `wasi:http` proxy component (`test/guests/http-service`) and a WAGI module
//! (`test/guests/src/bin/wagi.rs`). Each test serves on a free port of 127.0.0.1 named by
//! `WARDEN_HTTP_ADDR`, talks to it as a client would, stops it with SIGTERM (what `ctr task
//! kill` and the kubelet send) and reads what the container printed and the audit log.

mod common;

use std::time::{Duration, Instant};

use common::{Node, assert_refused, node};
use warden_test::containerd::RunOpts;
use warden_test::guests::{self, Wasi};
use warden_test::http::{Upstream, get, request};
use warden_test::service::Service;

/// A policy with one profile, `svc`, usable everywhere, with `body` in its table.
fn policy(body: &str) -> String {
    format!("version = 1\n[profiles.svc]\nnamespaces = [\"*\"]\n{body}\n")
}

/// Serves `image` (its module at `/app.wasm`) under `profile` (none: the namespace's, here
/// `strict`) and waits until it listens.
fn serve<'a>(n: &'a Node, image: &str, profile: Option<&str>, opts: RunOpts) -> Service<'a> {
    let id = n.containerd.unique_id("svc");
    Service::start(
        &n.containerd,
        image,
        &id,
        "/app.wasm",
        profile,
        opts,
        Duration::from_secs(60),
    )
}

fn proxy_image(n: &Node) -> String {
    let bytes = std::fs::read(guests::build_guests().http_service()).expect("http-service");
    n.image("http-service", bytes)
}

fn audit_of(n: &Node, id: &str, event: &str) -> Vec<serde_json::Value> {
    n.audit_events(event, None)
        .into_iter()
        .filter(|r| r["container_id"] == id)
        .collect()
}

#[test]
fn a_wasi_http_component_serves_requests_and_keeps_its_logs() {
    let n = node();
    let image = proxy_image(&n);
    // No policy: the strict profile. Serving needs no grant.
    let svc = serve(&n, &image, None, RunOpts::warden());
    let addr = svc.addr;

    let r = get(addr, "/").expect("GET /");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "hello from warden http\n");
    assert_eq!(r.header("x-warden-test"), Some("hello"));

    let r = request(addr, "GET", "/headers", &[("x-trace", "abc-123")], b"").expect("headers");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-echo-trace"), Some("abc-123"), "{r:?}");

    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = request(
        addr,
        "POST",
        "/echo",
        &[("content-type", "application/octet-stream")],
        &payload,
    )
    .expect("POST /echo");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, payload, "the echoed body differs");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));

    let r = get(addr, "/status/418").expect("status");
    assert_eq!(r.status, 418, "{r:?}");
    let r = get(addr, "/status/503").expect("status");
    assert_eq!(r.status, 503, "{r:?}");

    let r = get(addr, "/stream?n=5&ms=20").expect("stream");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{r:?}");
    assert_eq!(
        r.text(),
        "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n",
        "{r:?}"
    );

    let r = get(addr, "/log?msg=line-from-the-guest").expect("log");
    assert_eq!(r.status, 200);

    // 50 at once.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| s.spawn(move || get(addr, &format!("/log?msg=concurrent-{i}"))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").map(|r| r.status).unwrap_or(0))
            .collect()
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");

    let id = svc.id();
    let out = svc.stop();
    assert_eq!(
        out.code,
        Some(0),
        "SIGTERM must end a service cleanly: {out:?}"
    );
    // The guest's own lines, whole, in the container's stdout and stderr.
    assert!(
        out.stdout.lines().any(|l| l == "line-from-the-guest"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l == "stderr: line-from-the-guest"),
        "{out:?}"
    );
    for i in 0..50 {
        let line = format!("concurrent-{i}");
        assert_eq!(
            out.stdout.lines().filter(|l| *l == line).count(),
            1,
            "{line} is not one whole line of stdout:\n{}",
            out.stdout
        );
    }
    // Which allocator the instances came from is said once.
    assert!(
        out.stderr
            .contains("warden-http: instances come from wasmtime's pooling allocator")
            || out
                .stderr
                .contains("the pooling allocator is not available here"),
        "{}",
        out.stderr
    );
    // One access line per request.
    let access: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warden-http access "))
        .collect();
    assert_eq!(access.len(), 57, "{}", out.stderr);
    assert!(
        access
            .iter()
            .any(|l| l.contains("method=GET path=\"/status/418\" status=418 ms=")),
        "{access:?}"
    );
    assert!(
        access
            .iter()
            .any(|l| l.contains("method=POST path=\"/echo\" status=200")),
        "{access:?}"
    );
    // One start and one exit for the service, not one per request.
    assert_eq!(audit_of(&n, &id, "start").len(), 1, "{:?}", n.audit());
    let exits = audit_of(&n, &id, "exit");
    assert_eq!(exits.len(), 1, "{:?}", n.audit());
    assert_eq!(exits[0]["exit_code"], 0, "{:?}", exits[0]);
}

#[test]
fn outgoing_requests_go_only_to_the_origins_the_policy_names() {
    let n = node();
    let image = proxy_image(&n);
    let allowed = Upstream::start();
    let other = Upstream::start();
    // Allowed itself, but it redirects to `other`.
    let redirect = Upstream::redirecting(&format!("http://{}/after-redirect", other.addr));
    n.set_policy(&policy(&format!(
        "[profiles.svc.http]\noutbound = [\"http://{}\", \"http://{}\"]",
        allowed.addr, redirect.addr
    )));
    let svc = serve(&n, &image, Some("svc"), RunOpts::warden());
    let addr = svc.addr;

    let r = get(addr, &format!("/fetch?url=http://{}/allowed", allowed.addr)).expect("fetch");
    assert_eq!(r.status, 200, "{} {:?}", r.text(), n.audit());
    assert!(r.text().contains("upstream 200\nupstream ok"), "{r:?}");
    let seen = allowed.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/allowed");
    assert_eq!(seen[0].host, allowed.addr.to_string());

    // Another port of the same host.
    let r = get(addr, &format!("/fetch?url=http://{}/other", other.addr)).expect("fetch");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.text().contains("HttpRequestDenied"), "{r:?}");

    // Only the Host header names the allowed origin: the connection would go to `other`.
    let r = get(
        addr,
        &format!(
            "/fetch?url=http://{}/sneaky&host={}",
            other.addr, allowed.addr
        ),
    )
    .expect("fetch");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.text().contains("HttpRequestDenied"), "{r:?}");

    // A redirect from an allowed origin to one that is not.
    let r = get(
        addr,
        &format!("/fetch-redirect?url=http://{}/start", redirect.addr),
    )
    .expect("fetch-redirect");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.text().contains("HttpRequestDenied"), "{r:?}");
    assert_eq!(redirect.seen().len(), 1);

    assert!(other.seen().is_empty(), "{:?}", other.seen());
    assert_eq!(allowed.seen().len(), 1, "{:?}", allowed.seen());
    let id = svc.id();
    assert_eq!(svc.stop().code, Some(0));

    let denies: Vec<_> = audit_of(&n, &id, "deny")
        .into_iter()
        .filter(|r| r["rule"] == "http.outbound")
        .collect();
    assert_eq!(denies.len(), 3, "{:?}", n.audit());
    let other_origin = format!("http://{}", other.addr);
    assert!(
        denies
            .iter()
            .all(|d| d["reason"].as_str().unwrap_or("").contains(&other_origin)),
        "{denies:?}"
    );
    assert_eq!(denies[0]["profile"], "svc");
    warden_audit::verify_file(n.audit_path(), None).expect("the audit log verifies");

    // Under strict nothing goes out.
    let svc = serve(&n, &image, None, RunOpts::warden());
    let r = get(
        svc.addr,
        &format!("/fetch?url=http://{}/strict", allowed.addr),
    )
    .expect("fetch");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.text().contains("HttpRequestDenied"), "{r:?}");
    let id = svc.id();
    assert_eq!(svc.stop().code, Some(0));
    assert_eq!(allowed.seen().len(), 1, "{:?}", allowed.seen());
    let denies = audit_of(&n, &id, "deny");
    assert_eq!(denies.len(), 1, "{denies:?}");
    assert!(
        denies[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("allows no outgoing requests"),
        "{denies:?}"
    );
}

/// Instance slots are reused from request to request and reset in place (the pages an
/// instance wrote, found with PAGEMAP_SCAN) or decommitted: a request that leaves a secret in
/// the lowest page of memory and in a static must not hand it to any later request, one after
/// another (the same slot) or many at once (other slots).
#[test]
fn a_request_never_sees_what_an_earlier_request_left_in_memory() {
    let n = node();
    let image = proxy_image(&n);
    let svc = serve(&n, &image, None, RunOpts::warden());
    let addr = svc.addr;
    let secret = format!("s3cret-{}", std::process::id());
    // The probe works: in its own instance the secret is in both places.
    let r = get(addr, &format!("/remember?secret={secret}")).expect("remember");
    assert_eq!(
        r.text(),
        format!("remembered low={secret} static={secret}\n"),
        "{r:?}"
    );
    for round in 0..20 {
        let r = get(addr, "/recall").expect("recall");
        assert_eq!(r.text(), "low= static=\n", "round {round}: {r:?}");
        get(addr, &format!("/remember?secret={secret}-{round}")).expect("remember");
    }
    // Many at once, so that other slots are written and read too.
    let texts: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let secret = &secret;
                s.spawn(move || {
                    let mut seen = Vec::new();
                    for i in 0..10 {
                        get(addr, &format!("/remember?secret={secret}-{w}-{i}")).expect("remember");
                        seen.push(get(addr, "/recall").expect("recall").text());
                    }
                    seen
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    for text in &texts {
        assert_eq!(
            text, "low= static=\n",
            "a request saw an earlier one's memory"
        );
    }
    assert_eq!(svc.stop().code, Some(0));
}

#[test]
fn a_handler_past_its_limits_gets_an_error_and_the_service_lives_on() {
    let n = node();
    let image = proxy_image(&n);
    n.set_policy(&policy(
        "[profiles.svc.limits]\nmemory = \"32Mi\"\nrequest_deadline = \"1s\"",
    ));
    let svc = serve(&n, &image, Some("svc"), RunOpts::warden());
    let addr = svc.addr;

    // A handler that computes for ever.
    let t0 = Instant::now();
    let r = get(addr, "/spin").expect("spin");
    assert_eq!(r.status, 504, "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert_eq!(get(addr, "/").expect("after spin").status, 200);

    // A handler blocked in a host call (a sleep) past the deadline.
    let r = get(addr, "/slow?ms=20000").expect("slow");
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(get(addr, "/").expect("after slow").status, 200);

    // Past the memory limit, and just under it.
    let r = get(addr, "/alloc?mb=64").expect("alloc");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.text().contains("limits.memory"), "{r:?}");
    let r = get(addr, "/alloc?mb=4").expect("small alloc");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(get(addr, "/").expect("after alloc").status, 200);

    let id = svc.id();
    let out = svc.stop();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("stopped by limits.request_deadline"),
        "{out:?}"
    );
    // Each limit kind is recorded once a minute: two deadline hits, one record.
    let limits = audit_of(&n, &id, "limit");
    let of = |rule: &str| limits.iter().filter(|r| r["rule"] == rule).count();
    assert_eq!(of("limits.request_deadline"), 1, "{limits:?}");
    assert_eq!(of("limits.memory"), 1, "{limits:?}");
}

#[test]
fn sigterm_lets_a_slow_request_finish_then_the_service_exits_zero() {
    let n = node();
    let image = proxy_image(&n);
    let svc = serve(&n, &image, None, RunOpts::warden());
    let addr = svc.addr;
    let slow = std::thread::spawn(move || get(addr, "/slow?ms=2000"));
    std::thread::sleep(Duration::from_millis(500));
    let out = svc.stop();
    let r = slow
        .join()
        .expect("thread")
        .expect("the slow request completes");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "slept 2000 ms\n");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("no longer accepting"), "{out:?}");
    assert!(out.stderr.contains("drained"), "{out:?}");
}

#[test]
fn a_wagi_module_answers_get_and_post() {
    let n = node();
    let image = n.guest(Wasi::P1, "wagi");
    n.set_policy(&policy("env = [\"GREETING\"]"));
    let opts = RunOpts::warden()
        .annotation("warden.dev/http", "wagi")
        .env("GREETING", "hi");
    let svc = serve(&n, &image, Some("svc"), opts);
    let addr = svc.addr;

    let r = get(addr, "/hello?a=1&b=two").expect("GET");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-wagi"), Some("1"), "{r:?}");
    let body = r.text();
    for want in [
        "method=GET\n",
        "path=/hello\n",
        "query=a=1&b=two\n",
        &format!("server=127.0.0.1:{}\n", addr.port()),
    ] {
        assert!(body.contains(want), "no {want:?} in {body}");
    }

    let r = request(
        addr,
        "POST",
        "/submit",
        &[("content-type", "text/plain")],
        b"the payload",
    )
    .expect("POST");
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.text();
    for want in [
        "method=POST\n",
        "content_type=text/plain\n",
        "content_length=11\n",
        "body=the payload\n",
    ] {
        assert!(body.contains(want), "no {want:?} in {body}");
    }

    let r = get(addr, "/missing").expect("missing");
    assert_eq!(r.status, 404, "{r:?}");
    let r = get(addr, "/redirect").expect("redirect");
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.header("location"), Some("/elsewhere"));

    // The granted env var and the CGI variables; the listen address is not the guest's.
    let env = get(addr, "/env").expect("env").text();
    assert!(env.lines().any(|l| l == "GREETING=hi"), "{env}");
    assert!(env.lines().any(|l| l == "REQUEST_METHOD=GET"), "{env}");
    assert!(!env.contains("WARDEN_HTTP_ADDR"), "{env}");

    let out = svc.stop();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("wagi: handled GET /hello"), "{out:?}");
    assert!(
        out.stderr
            .contains("warden-http access method=POST path=\"/submit\" status=200"),
        "{out:?}"
    );
}

#[test]
fn wagi_is_refused_where_the_profile_forbids_it_or_the_module_is_a_component() {
    let n = node();
    n.set_policy(&policy("[profiles.svc.http]\nwagi = false"));
    let module = n.guest(Wasi::P1, "wagi");
    let r = n.run_as(
        "svc",
        &module,
        &[],
        RunOpts::warden().annotation("warden.dev/http", "wagi"),
    );
    assert_refused(&r, "rule http.wagi");
    let component = proxy_image(&n);
    let r = n.run(
        &component,
        &[],
        RunOpts::warden().annotation("warden.dev/http", "wagi"),
    );
    assert_refused(&r, "rule http)");
    assert!(r.stderr.contains("component"), "{r:?}");
    let denies = n.audit_events("deny", None);
    assert!(
        denies.iter().any(|d| d["rule"] == "http.wagi"),
        "{denies:?}"
    );
    assert!(denies.iter().any(|d| d["rule"] == "http"), "{denies:?}");
}

#[test]
fn a_wagi_request_past_its_deadline_gets_504_and_the_next_one_works() {
    let n = node();
    let image = n.guest(Wasi::P1, "wagi");
    n.set_policy(&policy("[profiles.svc.limits]\nrequest_deadline = \"1s\""));
    let opts = RunOpts::warden().annotation("warden.dev/http", "wagi");
    let svc = serve(&n, &image, Some("svc"), opts);
    let r = get(svc.addr, "/spin").expect("spin");
    assert_eq!(r.status, 504, "{r:?}");
    let r = get(svc.addr, "/hello").expect("after");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(svc.stop().code, Some(0));
}
