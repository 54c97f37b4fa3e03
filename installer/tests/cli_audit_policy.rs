//! `warden audit ...` and `warden policy ...` run as a user would: the built binary on
//! temp files.

use std::path::Path;
use std::process::{Command, Output};

use warden_audit::{Record, append, event};

fn warden(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.args(args)
        .env_remove("WARDEN_POLICY")
        .env_remove("WARDEN_AUDIT_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const POLICY: &str = r#"version = 1

[namespaces.payments]
default = "payments-api"

[profiles.payments-api]
namespaces = ["payments"]
env = ["LOG_LEVEL", "APP_*"]
mounts = [{ path = "/config" }, { path = "/data", access = "rw" }]

[profiles.payments-api.network]
connect = ["10.0.0.0/8:5432"]

[profiles.payments-api.limits]
memory = "64Mi"
cpu_time = "2s"
"#;

#[test]
fn policy_check_valid_and_effective() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, POLICY).unwrap();
    let ps = p.to_str().unwrap();

    let out = warden(&["policy", "check", "--policy", ps], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("OK"));

    // Through the environment, with a namespace.
    let out = warden(
        &["policy", "check", "--namespace", "payments"],
        &[("WARDEN_POLICY", &p)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("ALLOWED with profile 'payments-api'"), "{s}");
    assert!(s.contains("/data (rw)"), "{s}");

    // A flag wins over the environment.
    let out = warden(
        &["policy", "check", "--policy", ps, "--namespace", "payments"],
        &[("WARDEN_POLICY", Path::new("/nonexistent/policy.toml"))],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A denied request, as JSON.
    let out = warden(
        &[
            "policy",
            "check",
            "--policy",
            ps,
            "-n",
            "default",
            "--profile",
            "payments-api",
            "-o",
            "json",
        ],
        &[],
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["check"]["decision"], "deny");
    assert_eq!(v["check"]["rule"], "profile.namespace");

    // --fail-on-deny makes a denial an exit status.
    let out = warden(
        &[
            "policy",
            "check",
            "--policy",
            ps,
            "-n",
            "default",
            "--profile",
            "nope",
            "--fail-on-deny",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).contains("profile.unknown"));
}

#[test]
fn policy_check_invalid_names_file_line_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(
        &p,
        POLICY.replace("cpu_time = \"2s\"", "cpu_time = \"2s\"\nwall = \"3s\""),
    )
    .unwrap();
    let out = warden(&["policy", "check", "--policy", p.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:17: unknown key 'wall' in [profiles.payments-api.limits]",
            p.display()
        )),
        "{err}"
    );

    let absent = dir.path().join("absent.toml");
    let out = warden(
        &["policy", "check", "--policy", absent.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("absent.toml"),
        "{}",
        text(&out.stderr)
    );
}

fn write_log(path: &Path) {
    let shim_events = [
        (event::CREATE, "payments", "api-1", Some("allow")),
        (event::DENY, "default", "bad", Some("deny")),
        (event::EXIT, "payments", "api-1", None),
    ];
    for (i, (ev, ns, pod, decision)) in shim_events.into_iter().enumerate() {
        let mut r = Record {
            node: "node-a".into(),
            pod_namespace: Some(ns.into()),
            pod_name: Some(pod.into()),
            image: Some(format!("registry.example/{pod}:1")),
            decision: decision.map(Into::into),
            container_id: Some(format!("c{i}")),
            ..Record::new("shim", ev)
        };
        append(path, &mut r).unwrap();
    }
    let mut r = Record {
        node: "node-a".into(),
        file: Some("/etc/containerd/config.toml".into()),
        ..Record::new("installer", event::CONFIG_WRITE)
    };
    append(path, &mut r).unwrap();
}

#[test]
fn audit_verify_ok_then_tampered() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_log(&log);
    let l = log.to_str().unwrap();

    let out = warden(&["audit", "verify"], &[("WARDEN_AUDIT_LOG", &log)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("OK") && s.contains("records:   5"), "{s}");
    assert!(s.contains("installer 1, shim 4"), "{s}");

    let out = warden(&["audit", "verify", "--file", l, "--output", "json"], &[]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 5);
    let last_hash = v["last_hash"].as_str().unwrap().to_owned();
    assert_eq!(last_hash.len(), 64);

    let out = warden(&["audit", "verify", "-f", l, "--pin", &last_hash], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Remove line 3: the chain breaks at the line that followed it.
    let data = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = data.lines().collect();
    lines.remove(2);
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = warden(&["audit", "verify", "-f", l], &[]);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout) + &text(&out.stderr);
    assert!(s.contains("line 3: chain broken"), "{s}");

    let none = dir.path().join("none.jsonl");
    let out = warden(&["audit", "verify", "-f", none.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("none.jsonl"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn audit_show_filters_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_log(&log);
    let l = log.to_str().unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = warden(args, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let out = warden(&["audit", "show", "--file", l], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert_eq!(s.lines().count(), 6, "{s}");
    assert!(s.lines().next().unwrap().starts_with("TIME"), "{s}");

    let out = warden(
        &[
            "audit",
            "show",
            "--file",
            l,
            "--namespace",
            "payments",
            "--event",
            "exit",
        ],
        &[],
    );
    let s = text(&out.stdout);
    assert_eq!(s.lines().count(), 2, "{s}");
    assert!(s.contains("payments/api-1"), "{s}");

    let v = json(&[
        "audit",
        "show",
        "--file",
        l,
        "--decision",
        "deny",
        "--output",
        "json",
    ]);
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["pod_name"], "bad");

    let v = json(&[
        "audit",
        "show",
        "--file",
        l,
        "--pod",
        "api-1",
        "--image",
        "registry.example/api-1",
        "-o",
        "json",
    ]);
    assert_eq!(v.as_array().map(Vec::len), Some(2));

    let out = warden(
        &[
            "audit",
            "show",
            "--file",
            l,
            "--since",
            "2999-01-01T00:00:00Z",
        ],
        &[],
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);
    let v = json(&[
        "audit",
        "show",
        "--file",
        l,
        "--until",
        "2000-01-01T00:00:00Z",
        "-o",
        "json",
    ]);
    assert_eq!(v.as_array().map(Vec::len), Some(0));

    let out = warden(
        &["audit", "show", "--file", l, "--since", "not-a-time"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
}

fn has_raw_controls(s: &str) -> bool {
    s.chars()
        .any(|c| c != '\n' && warden_audit::is_unsafe_for_terminal(c))
}

/// `audit head` prints the pins; each claim the README makes about them, shown.
#[test]
fn audit_head_and_pins_prove_what_they_claim() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_log(&log);
    let l = log.to_str().unwrap();

    let out = warden(&["audit", "head", "-f", l, "-o", "json"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["last_line"], 5);
    assert_eq!(v["anchor_node"], "node-a");
    assert!(v["last_time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let anchor_pin = v["pins"][0].as_str().unwrap().to_owned();
    let last_pin = v["pins"][1].as_str().unwrap().to_owned();
    assert_eq!(
        anchor_pin,
        format!("1:{}", v["anchor_hash"].as_str().unwrap())
    );
    assert_eq!(last_pin, format!("5:{}", v["last_hash"].as_str().unwrap()));

    let out = warden(&["audit", "head"], &[("WARDEN_AUDIT_LOG", &log)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("last line:   5"), "{s}");
    assert!(s.contains("anchor node: node-a"), "{s}");
    assert!(
        s.contains(&format!(
            "warden audit verify --file {l} --pin {anchor_pin} --pin {last_pin}"
        )),
        "{s}"
    );

    let verify = |pins: &[&str]| -> Output {
        let mut args = vec!["audit", "verify", "-f", l];
        for p in pins {
            args.extend(["--pin", p]);
        }
        warden(&args, &[])
    };
    let out = verify(&[&anchor_pin, &last_pin]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("5 records proven up to the pinned line 5, the last line"),
        "{s}"
    );
    assert!(s.contains("found at line 1, line 5"), "{s}");
    let orig = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = orig.lines().collect();

    // The last line deleted: verify passes without a pin, and fails with the pin of the
    // deleted line, naming it.
    std::fs::write(&log, lines[..4].join("\n") + "\n").unwrap();
    let out = verify(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("chain only (no --pin)"));
    let out = verify(&[&last_pin]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("line 5: the pinned line") && err.contains("the log ends at line 4"),
        "{err}"
    );

    // Rewritten from scratch, with a new anchor: verify passes, the anchor pin fails it.
    std::fs::remove_file(&log).unwrap();
    let mut first = Record {
        time: "2020-01-01T00:00:00.000000Z".into(),
        node: "node-a".into(),
        ..Record::new("shim", event::CREATE)
    };
    append(&log, &mut first).unwrap();
    write_log(&log);
    let out = verify(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = verify(&[&anchor_pin]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("line 1: not the pinned line") && err.contains("rewritten from scratch"),
        "{err}"
    );

    // A forged line appended with a correct prev (what a node root can do): verify passes
    // even with both pins, and says the line after the pin is not proven.
    std::fs::write(&log, &orig).unwrap();
    let mut forged = Record {
        node: "node-a".into(),
        reason: Some("all is well".into()),
        ..Record::new("shim", event::EXIT)
    };
    append(&log, &mut forged).unwrap();
    let out = verify(&[&anchor_pin, &last_pin]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains(
            "5 records proven up to the pinned line 5; 1 record after it is not proven by any pin (a node root could have written them)"
        ),
        "{s}"
    );
    let out = warden(
        &["audit", "verify", "-f", l, "--pin", &last_pin, "-o", "json"],
        &[],
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["proven_records"], 5);
    assert_eq!(v["unproven_records"], 1);
    assert_eq!(v["pinned_line"], 5);

    // A pin that is not one is a usage error.
    let out = verify(&["not-a-hash"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("LINE:HASH"),
        "{}",
        text(&out.stderr)
    );

    // head on a broken log prints no pins.
    std::fs::write(&log, orig.replacen("api-1", "api-X", 1)).unwrap();
    let out = warden(&["audit", "head", "-f", l], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !text(&out.stdout).contains("--pin"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stderr).contains("line 3: chain broken"));
}

/// Nothing a pod wrote reaches the terminal raw: table, JSON, summary, errors.
#[test]
fn audit_output_escapes_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut r = Record {
        node: "node\u{1b}[31m".into(),
        pod_namespace: Some("ns\u{202e}".into()),
        pod_name: Some("\u{1b}]0;owned\u{7}".into()),
        image: Some("img\u{9b}2J".into()),
        reason: Some("a\u{7f}b\nc".into()),
        ..Record::new("shim", event::DENY)
    };
    append(&log, &mut r).unwrap();
    let l = log.to_str().unwrap();

    let out = warden(&["audit", "show", "-f", l], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(!has_raw_controls(&s), "{s:?}");
    assert!(s.contains("ns\\u{202e}/\\x1b]0;owned\\x07"), "{s}");
    assert!(
        s.contains("img\\u{9b}2J") && s.contains("a\\x7fb\\nc"),
        "{s}"
    );

    let out = warden(&["audit", "show", "-f", l, "-o", "json"], &[]);
    let s = text(&out.stdout);
    assert!(!has_raw_controls(&s), "{s:?}");
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v[1]["pod_namespace"], "ns\u{202e}");
    assert_eq!(v[1]["image"], "img\u{9b}2J");

    for format in ["text", "json"] {
        let out = warden(&["audit", "verify", "-f", l, "-o", format], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            !has_raw_controls(&text(&out.stdout)),
            "{}",
            text(&out.stdout)
        );
        let out = warden(&["audit", "head", "-f", l, "-o", format], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            !has_raw_controls(&text(&out.stdout)),
            "{}",
            text(&out.stdout)
        );
    }

    // A log whose first line is not an anchor names its event, escaped.
    let bad = dir.path().join("bad\u{1b}[2J.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{{\"event\":\"\\u001b]0;x\\u0007\u{202e}\",\"prev\":\"{}\"}}\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = warden(&["audit", "verify", "-f", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !has_raw_controls(&o) && !has_raw_controls(&e),
        "{o:?} {e:?}"
    );
    assert!(
        e.contains("bad\\x1b[2J.jsonl") && e.contains("'\\x1b]0;x\\x07\\u{202e}'"),
        "{e}"
    );

    // A path that cannot be read, in the error.
    let missing = dir.path().join("gone\u{1b}[2J.jsonl");
    for cmd in ["verify", "show", "head"] {
        let out = warden(&["audit", cmd, "-f", missing.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let e = text(&out.stderr);
        assert!(
            !has_raw_controls(&e) && e.contains("gone\\x1b[2J.jsonl"),
            "{cmd}: {e:?}"
        );
    }
}
