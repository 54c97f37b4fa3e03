//! `warden install`, `plan`, `uninstall` and `verify` on node trees built from the corpus
//! in `test/configs/`, without containerd: `--root` is a temp tree, the restart command
//! records its calls, and the CRI check is skipped (`--no-verify`; the real path is in
//! `install_containerd.rs`).

use std::fs;

mod install_support;

use install_support::{
    AUDIT_LOG, BINARY, INSTALL_DIR, STATE_DIR, Tree, case_names, corpus_dir, digest, show,
};

/// The corpus cases whose install plans succeed.
fn plan_cases() -> Vec<String> {
    case_names()
        .into_iter()
        .filter(|n| corpus_dir().join(n).join("expected.plan").exists())
        .collect()
}

/// The corpus cases that are refused.
fn refused_cases() -> Vec<String> {
    case_names()
        .into_iter()
        .filter(|n| corpus_dir().join(n).join("expected.error").exists())
        .collect()
}

#[test]
fn every_case_installs_idempotently_and_uninstalls_to_the_original_bytes() {
    let cases = plan_cases();
    assert!(cases.len() >= 20, "corpus too small: {cases:?}");
    for name in cases {
        let tree = Tree::from_case(&name);
        let files = tree.node_files();
        let dirs = tree.node_dirs();

        let plan = tree.run_ok("plan", &["-o", "json"]);
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        let restarts = usize::from(!plan["plan"]["restart"].is_null());
        let changes = plan["plan"]["changes"].as_array().unwrap().len();

        tree.run_ok("install", &["--no-verify"]);
        assert_eq!(tree.restarts(), restarts, "{name}: restarts after install");
        assert_eq!(
            tree.installed_shim().as_deref(),
            Some(tree.shim_bytes.as_slice()),
            "{name}"
        );
        let state = tree.state().unwrap();
        assert_eq!(state["phase"], "verified", "{name}");
        assert_eq!(state["files"].as_array().unwrap().len(), changes, "{name}");
        let records = tree.audit_records();
        let events: Vec<&str> = records
            .iter()
            .map(|r| r["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events.iter().filter(|e| **e == "config-write").count(),
            changes,
            "{name}: {events:?}"
        );
        assert_eq!(
            events.iter().filter(|e| **e == "install").count(),
            1,
            "{name}"
        );
        assert_eq!(events.iter().filter(|e| **e == "restart").count(), restarts);
        assert!(records.iter().all(|r| r["writer"] == "installer"));

        // Again: nothing changes anywhere, the state and the audit log included.
        let installed = install_support::snapshot(&tree.root);
        let again = tree.run_ok("install", &["--no-verify"]);
        let text = String::from_utf8_lossy(&again.stdout);
        assert!(text.starts_with("unchanged: "), "{name}: {text}");
        assert_eq!(
            tree.restarts(),
            restarts,
            "{name}: a no-op re-run restarted"
        );
        assert_eq!(
            install_support::snapshot(&tree.root),
            installed,
            "{name}: a no-op re-run changed files"
        );
        let replan = tree.run_ok("plan", &["-o", "json"]);
        let replan: serde_json::Value = serde_json::from_slice(&replan.stdout).unwrap();
        assert_eq!(replan["noop"], true, "{name}");
        tree.run_ok("verify", &["--disk-only"]);

        tree.run_ok("uninstall", &["--no-verify"]);
        assert_eq!(
            tree.node_files(),
            files,
            "{name}: uninstall did not restore the bytes"
        );
        assert_eq!(tree.node_dirs(), dirs, "{name}: uninstall left directories");
        assert_eq!(
            tree.restarts(),
            2 * restarts,
            "{name}: restarts after uninstall"
        );
        assert!(tree.state().is_none(), "{name}: state left");
        let summary = warden_audit::verify_file(tree.host(AUDIT_LOG), None).unwrap();
        assert!(summary.events.contains_key("uninstall"), "{name}");
    }
}

#[test]
fn refused_cases_change_nothing_and_say_why() {
    for name in refused_cases() {
        let tree = Tree::from_case(&name);
        let before = install_support::snapshot(&tree.root);
        let golden = fs::read_to_string(corpus_dir().join(&name).join("expected.error")).unwrap();
        let expected = golden
            .trim_end()
            .replace("<root>", &tree.root.display().to_string());
        for command in ["plan", "install"] {
            let out = tree.run(
                command,
                &["--no-verify"][..usize::from(command == "install")],
            );
            assert!(
                !out.status.success(),
                "{name}: {command} accepted\n{}",
                show(&out)
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&expected),
                "{name}: {command} message\n--- expected\n{expected}\n--- stderr\n{stderr}"
            );
            assert!(stderr.contains("nothing was changed"), "{name}: {stderr}");
            assert_eq!(
                install_support::snapshot(&tree.root),
                before,
                "{name}: {command} changed files"
            );
            assert!(!tree.host(STATE_DIR).exists(), "{name}: state dir created");
        }
    }
}

#[test]
fn malformed_configs_are_refused_byte_identical() {
    let malformed: Vec<String> = case_names()
        .into_iter()
        .filter(|n| n.starts_with("malformed-"))
        .collect();
    assert!(malformed.len() >= 6, "{malformed:?}");
    for name in malformed {
        let tree = Tree::from_case(&name);
        let before = install_support::snapshot(&tree.root);
        let out = tree.run("install", &["--no-verify", "-o", "json"]);
        assert_eq!(out.status.code(), Some(1), "{name}\n{}", show(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["result"], "refused", "{name}");
        assert_eq!(doc["changed"], false, "{name}");
        assert!(
            doc["error"]
                .as_str()
                .unwrap()
                .starts_with("/etc/containerd/config.toml: "),
            "{name}: {doc}"
        );
        assert_eq!(install_support::snapshot(&tree.root), before, "{name}");
        assert_eq!(tree.restarts(), 0);
    }
}

#[test]
fn plan_writes_nothing_not_even_the_state_dir() {
    let tree = Tree::from_case("containerd-1.7-default");
    let before = install_support::snapshot(&tree.root);
    let dirs = install_support::dirs(&tree.root);
    let out = tree.run_ok("plan", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("binary: install /opt/warden/bin/containerd-shim-warden-v1"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with('+')
            && l.trim()
                .ends_with("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.warden]")),
        "{text}"
    );
    assert!(text.contains("restart: containerd\n"), "{text}");
    assert!(text.contains("restart method: `sh -c "), "{text}");
    assert_eq!(install_support::snapshot(&tree.root), before);
    assert_eq!(install_support::dirs(&tree.root), dirs);
    assert_eq!(tree.restarts(), 0);
}

#[test]
fn plan_warns_about_pod_annotations_beyond_wardens() {
    let tree = Tree::from_case("existing-warden-entry");
    let config = tree.host("/etc/containerd/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let widened = text.replace(
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.warden]\n",
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.warden]\npod_annotations = [\"*\"]\n",
    );
    assert_ne!(widened, text, "the case's entry header moved");
    std::fs::write(&config, widened).unwrap();
    let out = tree.run_ok("plan", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("the warden runtime's pod_annotations also passes \"*\""),
        "{text}"
    );
    // Twin: the case as it is (no extra pattern) gets no such warning.
    let plain = Tree::from_case("existing-warden-entry");
    let out = plain.run_ok("plan", &[]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("pod_annotations also passes"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn digest_mismatch_is_refused_with_no_change() {
    let tree = Tree::from_case("containerd-2.2-default");
    let before = install_support::snapshot(&tree.root);
    let wrong = digest(b"not the shim");
    let out = tree.run("install", &["--no-verify", "--shim-digest", &wrong]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("digest mismatch: shim "), "{stderr}");
    assert!(stderr.contains(&wrong), "{stderr}");
    assert_eq!(install_support::snapshot(&tree.root), before);

    // The shipped digest file is checked the same way.
    let digest_file = {
        let mut p = tree.shim.clone().into_os_string();
        p.push(".sha256");
        std::path::PathBuf::from(p)
    };
    fs::write(
        &digest_file,
        format!("{}  x\n", warden_common::Digest::of(b"not the shim").hex()),
    )
    .unwrap();
    let out = tree.run("install", &["--no-verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(".sha256"));
    assert_eq!(install_support::snapshot(&tree.root), before);

    fs::remove_file(&digest_file).unwrap();
    let out = tree.run("install", &["--no-verify"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no expected digest"));
    assert_eq!(install_support::snapshot(&tree.root), before);
}

#[test]
fn read_only_install_dir_is_refused() {
    let tree = Tree::from_case("containerd-2.2-default");
    let dir = tree.host(INSTALL_DIR);
    fs::create_dir_all(&dir).unwrap();
    let guard = ReadOnly::make(&dir);
    let before = install_support::snapshot(&tree.root);
    let out = tree.run("install", &["--no-verify"]);
    assert!(!out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("read-only file system") || stderr.contains("not writable"),
        "{stderr}"
    );
    assert!(stderr.contains("install dir"), "{stderr}");
    drop(guard);
    assert_eq!(install_support::snapshot(&tree.root), before);
    assert!(!tree.host(STATE_DIR).exists());
}

/// A directory made read-only: a read-only bind mount as root (root writes through mode
/// bits), mode 0555 otherwise.
struct ReadOnly {
    dir: std::path::PathBuf,
    mounted: bool,
}

impl ReadOnly {
    fn make(dir: &std::path::Path) -> ReadOnly {
        if install_support::is_root() {
            let ok = |args: &[&str]| {
                std::process::Command::new("mount")
                    .args(args)
                    .arg(dir)
                    .arg(dir)
                    .status()
                    .unwrap()
                    .success()
            };
            assert!(ok(&["--bind"]), "cannot bind-mount {}", dir.display());
            assert!(
                ok(&["-o", "remount,bind,ro"]),
                "cannot remount {} read-only",
                dir.display()
            );
            ReadOnly {
                dir: dir.to_path_buf(),
                mounted: true,
            }
        } else {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
            ReadOnly {
                dir: dir.to_path_buf(),
                mounted: false,
            }
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(&self.dir).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn immutable_os_and_bad_policy_are_refused() {
    let tree = Tree::from_case("containerd-2.2-default");
    fs::create_dir_all(tree.host("/run")).unwrap();
    fs::write(tree.host("/run/ostree-booted"), "").unwrap();
    let before = install_support::snapshot(&tree.root);
    let out = tree.run("install", &["--no-verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("immutable OS"), "{stderr}");
    assert_eq!(install_support::snapshot(&tree.root), before);
    fs::remove_file(tree.host("/run/ostree-booted")).unwrap();

    fs::create_dir_all(tree.host("/etc/warden")).unwrap();
    fs::write(
        tree.host("/etc/warden/policy.toml"),
        "version = 1\nbogus = 2\n",
    )
    .unwrap();
    let before = install_support::snapshot(&tree.root);
    let out = tree.run("install", &["--no-verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown key 'bogus'"), "{stderr}");
    assert!(stderr.contains("refuses every workload"), "{stderr}");
    assert_eq!(install_support::snapshot(&tree.root), before);
}

#[test]
fn no_way_to_restart_is_refused_before_any_change() {
    let tree = Tree::from_case("containerd-1.6-default");
    let flags = tree.flags();
    let index = flags.iter().position(|f| f == "--restart-command").unwrap();
    let mut args: Vec<String> = flags[..index].to_vec();
    args.extend(flags[index + 2..].iter().cloned());
    let before = install_support::snapshot(&tree.root);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("install")
        .args(&args)
        .arg("--no-verify")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs containerd (unit `containerd`) restarted")
            && stderr.contains("--restart-command"),
        "{stderr}"
    );
    assert_eq!(install_support::snapshot(&tree.root), before);
}

#[test]
fn failed_verification_restores_the_config_and_restarts_again() {
    let tree = Tree::from_case("containerd-1.6-default");
    let files = tree.node_files();
    let out = tree.run(
        "install",
        &[
            "--containerd-socket",
            "/run/nothing-listens-here.sock",
            "--verify-timeout",
            "1",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["result"], "failed");
    let error = doc["error"].as_str().unwrap();
    assert!(
        error.starts_with("verification failed: containerd does not answer on"),
        "{error}"
    );
    assert!(error.contains("rolled back: "), "{error}");
    assert!(
        error.contains("restored /etc/containerd/config.toml"),
        "{error}"
    );
    assert_eq!(tree.node_files(), files, "config and shim not rolled back");
    assert_eq!(
        tree.restarts(),
        2,
        "restart, then restart again on the old config"
    );
    assert!(
        tree.state().is_none(),
        "a first install that failed leaves no state"
    );
    let events: Vec<String> = tree
        .audit_records()
        .iter()
        .map(|r| format!("{} {}", r["event"], r["decision"]))
        .collect();
    assert!(
        events.contains(&"\"verify\" \"fail\"".to_owned()),
        "{events:?}"
    );
}

#[test]
fn uninstall_keeps_changes_made_after_install() {
    let tree = Tree::from_case("containerd-1.6-default");
    let config = tree.host("/etc/containerd/config.toml");
    let original = fs::read_to_string(&config).unwrap();
    tree.run_ok("install", &["--no-verify"]);
    let installed = fs::read_to_string(&config).unwrap();
    assert!(installed.contains("runtimes.warden]"));
    // An admin edits the config after warden did.
    fs::write(&config, format!("# tuned by ops\n{installed}")).unwrap();

    let verify = tree.run("verify", &["--disk-only"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("changed since warden wrote it"),
        "{}",
        show(&verify)
    );

    let out = tree.run_ok("uninstall", &["--no-verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the rest is kept"), "{text}");
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        format!("# tuned by ops\n{original}")
    );
    assert!(tree.installed_shim().is_none());
}

#[test]
fn a_replaced_shim_is_put_back_on_uninstall() {
    let tree = Tree::from_case("containerd-2.0-default");
    let old = b"#!/bin/sh\n# an older shim someone installed by hand\n".to_vec();
    fs::create_dir_all(tree.host(INSTALL_DIR)).unwrap();
    fs::write(tree.host(BINARY), &old).unwrap();
    let files = tree.node_files();
    let out = tree.run_ok("install", &["--no-verify"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("binary: replaced "));
    assert_eq!(tree.installed_shim().unwrap(), tree.shim_bytes);
    tree.run_ok("uninstall", &["--no-verify"]);
    assert_eq!(tree.node_files(), files);
}

#[test]
fn a_new_shim_alone_does_not_restart_containerd() {
    let tree = Tree::from_case("containerd-2.2-default");
    tree.run_ok("install", &["--no-verify"]);
    assert_eq!(tree.restarts(), 1);
    let newer = b"#!/bin/sh\n# shim v2\nexit 0\n";
    fs::write(&tree.shim, newer).unwrap();
    let out = tree.run_ok("install", &["--no-verify", "--shim-digest", &digest(newer)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("binary: replaced "), "{text}");
    assert!(text.contains("restart: not needed"), "{text}");
    assert_eq!(tree.restarts(), 1);
    assert_eq!(tree.installed_shim().unwrap(), newer);
}

#[test]
fn a_held_lock_makes_the_next_run_wait_then_give_up() {
    let tree = Tree::from_case("containerd-2.2-default");
    let state_dir = tree.host(STATE_DIR);
    fs::create_dir_all(&state_dir).unwrap();
    let held = warden_common::lock::HostLock::exclusive(
        &state_dir,
        std::time::Duration::ZERO,
        &mut |_| {},
    )
    .unwrap();
    let files = tree.node_files();
    let out = tree.run("install", &["--no-verify", "--lock-timeout", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("waiting for another warden run"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    assert_eq!(tree.node_files(), files);
    drop(held);
    tree.run_ok("install", &["--no-verify"]);
}

#[test]
fn json_output_on_every_command() {
    let tree = Tree::from_case("k0s");
    for (command, extra) in [
        ("plan", &[][..]),
        ("install", &["--no-verify"][..]),
        ("verify", &["--disk-only"][..]),
        ("uninstall", &["--no-verify"][..]),
        ("verify", &["--disk-only"][..]),
    ] {
        let mut args = extra.to_vec();
        args.extend(["--output", "json"]);
        let out = tree.run(command, &args);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{command}: not JSON ({e})\n{}", show(&out)));
        assert_eq!(
            doc["ok"].as_bool(),
            Some(out.status.success()),
            "{command}: {doc}"
        );
    }
    // k0s restarts containerd itself: no restart from warden.
    assert_eq!(tree.restarts(), 0);
}

#[test]
fn help_texts_name_the_flags() {
    for command in ["install", "uninstall", "plan", "verify"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for flag in [
            "--config",
            "--install-dir",
            "--state-dir",
            "--audit-log",
            "--policy",
            "--restart-command",
            "--distribution",
            "--shim ",
            "--shim-digest",
            "--root",
            "--containerd-socket",
            "--output",
        ] {
            assert!(
                text.contains(flag),
                "{command} --help lacks {flag}:\n{text}"
            );
        }
    }
}
