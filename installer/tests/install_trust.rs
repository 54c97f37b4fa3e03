//! The installer trusts no path a local unprivileged user can write: each attack of the
//! hardening issue, tried on a node tree under a temp `--root`, is refused with a message
//! that names the path, and nothing changes on disk; each has a positive twin showing the
//! normal root-owned layout keeps working.
//!
//! Tests that need another owner (`chown`) run only as root, as the node CLI does.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

mod install_support;

use install_support::{BINARY, INSTALL_DIR, STATE_DIR, Tree, digest, is_root, show};

/// The uid a local unprivileged user has here.
const NOBODY: u32 = 65534;

/// Runs `warden <command>`, killing it (and failing) if it takes longer than `limit`.
fn run_within(tree: &Tree, command: &str, extra: &[&str], limit: Duration) -> Output {
    let mut child = tree
        .command(command, extra, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("warden {command} hung for {limit:?}\n{}", show(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts a refusal whose stderr holds every one of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    assert!(!out.status.success(), "accepted\n{}", show(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "no {needle:?} in\n{}", show(out));
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
}

fn state_path(tree: &Tree) -> PathBuf {
    tree.host(STATE_DIR).join("install.json")
}

fn write_state(tree: &Tree, state: &serde_json::Value) {
    fs::write(state_path(tree), serde_json::to_vec_pretty(state).unwrap()).unwrap();
}

#[test]
fn a_crafted_state_cannot_make_uninstall_delete_or_copy_files_outside_the_managed_dirs() {
    let tree = Tree::from_case("containerd-2.2-default");
    tree.run_ok("install", &["--no-verify"]);
    let good = tree.state().unwrap();

    // A file warden never made, recorded as created by warden.
    let victim = tree.host("/etc/victim.conf");
    fs::write(&victim, "not warden's\n").unwrap();
    let mut crafted = good.clone();
    crafted["files"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "path": "/etc/victim.conf",
            "original": {"kind": "absent"},
            "digest_after": digest(b"not warden's\n"),
            "written_at": "2024-01-01T00:00:00Z",
        }));
    write_state(&tree, &crafted);
    let files = tree.node_files();
    let state_bytes = fs::read(state_path(&tree)).unwrap();
    let out = tree.run("uninstall", &["--no-verify"]);
    assert_refused(
        &out,
        &[
            "`files[1].path` is /etc/victim.conf",
            "not a config file warden manages",
            "nothing was changed",
        ],
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "not warden's\n");
    assert_eq!(tree.node_files(), files);
    assert_eq!(fs::read(state_path(&tree)).unwrap(), state_bytes);

    // A root-only file given as the backup of warden's drop-in, by absolute path: it would
    // be copied into the world-readable drop-in.
    let secret = tree.dir.join("shadow");
    fs::write(&secret, "root:secret-hash:19000::::::\n").unwrap();
    chmod(&secret, 0o600);
    let mut crafted = good.clone();
    crafted["files"][0]["original"] = serde_json::json!({
        "kind": "saved",
        "digest": digest(b"root:secret-hash:19000::::::\n"),
        "backup": secret.display().to_string(),
    });
    write_state(&tree, &crafted);
    let out = tree.run("uninstall", &["--no-verify"]);
    assert_refused(
        &out,
        &["`files[0].original.backup`", "inside the state dir"],
    );
    assert_eq!(tree.node_files(), files);

    // A path with `..` that only looks inside the install dir, and a directory to remove.
    let mut crafted = good.clone();
    crafted["binary"]["path"] =
        serde_json::json!(format!("{INSTALL_DIR}/../../../etc/victim.conf"));
    write_state(&tree, &crafted);
    assert_refused(&tree.run("uninstall", &["--no-verify"]), &["`binary.path`"]);
    let mut crafted = good.clone();
    crafted["dirs_created"] = serde_json::json!(["/var/lib/kubelet"]);
    write_state(&tree, &crafted);
    assert_refused(
        &tree.run("uninstall", &["--no-verify"]),
        &["`dirs_created[0]` is /var/lib/kubelet"],
    );
    // install and verify refuse the same state.
    assert_refused(
        &tree.run("install", &["--no-verify"]),
        &["`dirs_created[0]`"],
    );
    assert_refused(
        &tree.run("verify", &["--disk-only"]),
        &["`dirs_created[0]`"],
    );
    assert_eq!(tree.node_files(), files);

    // The positive twin: the state as warden wrote it uninstalls.
    write_state(&tree, &good);
    tree.run_ok("uninstall", &["--no-verify"]);
    assert!(tree.installed_shim().is_none());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "not warden's\n");
}

#[test]
fn a_lock_symlinked_to_another_file_is_neither_followed_nor_truncated() {
    let tree = Tree::from_case("containerd-2.2-default");
    let victim = tree.dir.join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let state_dir = tree.host(STATE_DIR);
    fs::create_dir_all(&state_dir).unwrap();
    std::os::unix::fs::symlink(&victim, state_dir.join("lock")).unwrap();
    let files = tree.node_files();
    let out = tree.run("install", &["--no-verify"]);
    assert_refused(&out, &["/lock: is a symlink", "nothing was changed"]);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(tree.node_files(), files);
    assert!(tree.installed_shim().is_none());

    // The positive twin: without the link, install takes the lock and works.
    fs::remove_file(state_dir.join("lock")).unwrap();
    tree.run_ok("install", &["--no-verify"]);
    assert!(
        fs::symlink_metadata(state_dir.join("lock"))
            .unwrap()
            .is_file()
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn a_state_file_that_is_a_symlink_is_refused() {
    let tree = Tree::from_case("containerd-2.2-default");
    let state_dir = tree.host(STATE_DIR);
    fs::create_dir_all(&state_dir).unwrap();
    let elsewhere = tree.dir.join("state.json");
    fs::write(&elsewhere, "{}").unwrap();
    std::os::unix::fs::symlink(&elsewhere, state_dir.join("install.json")).unwrap();
    for command in ["install", "uninstall", "plan"] {
        let out = tree.run(command, &["--no-verify"][..usize::from(command != "plan")]);
        assert_refused(&out, &["install.json: is a symlink"]);
    }
    assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "{}");
}

#[test]
fn world_or_group_writable_dirs_are_refused_with_the_path_named() {
    let tree = Tree::from_case("containerd-2.2-default");
    let before = install_support::snapshot(&tree.root);
    let cases: [(&str, &str, u32, &str); 4] = [
        ("install dir", INSTALL_DIR, 0o777, "writable by others"),
        ("install dir", "/opt/warden", 0o777, "writable by others"),
        (
            "config dir",
            "/etc/containerd",
            0o775,
            "writable by its group",
        ),
        ("audit log dir", "/warden-log", 0o1777, "writable by others"),
    ];
    for (what, node, mode, flaw) in cases {
        let dir = tree.host(node);
        fs::create_dir_all(&dir).unwrap();
        chmod(&dir, mode);
        let snapshot = install_support::snapshot(&tree.root);
        for command in ["plan", "install"] {
            let out = tree.run(
                command,
                &["--no-verify"][..usize::from(command == "install")],
            );
            assert_refused(
                &out,
                &[
                    what,
                    &dir.display().to_string(),
                    flaw,
                    &format!("chmod go-w {}", dir.display()),
                    "nothing was changed",
                ],
            );
            assert_eq!(install_support::snapshot(&tree.root), snapshot, "{node}");
            assert!(!tree.host(STATE_DIR).exists(), "{node}: state dir created");
        }
        chmod(&dir, 0o755);
    }
    // The positive twin: the same dirs, root-owned 0755, install and uninstall.
    tree.run_ok("install", &["--no-verify"]);
    tree.run_ok("uninstall", &["--no-verify"]);
    let after = install_support::snapshot(&tree.root);
    for (path, bytes) in &before {
        assert_eq!(after.get(path), Some(bytes), "{}", path.display());
    }
}

#[test]
fn a_state_dir_a_local_user_owns_is_refused_before_its_state_is_read() {
    if !is_root() {
        return;
    }
    let tree = Tree::from_case("containerd-2.2-default");
    tree.run_ok("install", &["--no-verify"]);
    let state_dir = tree.host(STATE_DIR);
    std::os::unix::fs::chown(&state_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let files = tree.node_files();
    for command in ["uninstall", "install"] {
        let out = tree.run(command, &["--no-verify"]);
        assert_refused(
            &out,
            &[
                &format!("state dir {}", state_dir.display()),
                "not owned by root",
                &format!("owner uid {NOBODY}"),
                "chown root:root",
            ],
        );
    }
    assert_eq!(tree.node_files(), files);
    std::os::unix::fs::chown(&state_dir, Some(0), Some(0)).unwrap();
    tree.run_ok("uninstall", &["--no-verify"]);
}

#[test]
fn a_fifo_as_config_policy_or_digest_file_is_refused_at_once() {
    let tree = Tree::from_case("containerd-2.2-default");
    let fifo = tree.host("/etc/containerd/fifo.toml");
    mkfifo(&fifo);
    let before = install_support::snapshot(&tree.root);
    let limit = Duration::from_secs(30);
    let out = run_within(
        &tree,
        "install",
        &["--no-verify", "--config", "/etc/containerd/fifo.toml"],
        limit,
    );
    assert_refused(
        &out,
        &[
            "/etc/containerd/fifo.toml: is a FIFO, not a regular file",
            "nothing was changed",
        ],
    );
    fs::create_dir_all(tree.host("/etc/warden")).unwrap();
    mkfifo(&tree.host("/etc/warden/policy.toml"));
    let out = run_within(&tree, "install", &["--no-verify"], limit);
    assert_refused(&out, &["policy.toml: is a FIFO"]);
    fs::remove_file(tree.host("/etc/warden/policy.toml")).unwrap();

    let digest_file = PathBuf::from(format!("{}.sha256", tree.shim.display()));
    fs::remove_file(&digest_file).unwrap();
    mkfifo(&digest_file);
    let out = run_within(&tree, "install", &["--no-verify"], limit);
    assert_refused(&out, &[".sha256: is a FIFO"]);
    assert_eq!(
        install_support::snapshot(&tree.root)
            .into_iter()
            .filter(|(p, _)| !p.starts_with("etc/warden"))
            .collect::<std::collections::BTreeMap<_, _>>(),
        before
    );
    assert!(!tree.host(STATE_DIR).exists());

    // The positive twin: the regular config and digest file work.
    fs::remove_file(&digest_file).unwrap();
    let hex = warden_common::Digest::of(&tree.shim_bytes).hex();
    fs::write(&digest_file, format!("{hex}  containerd-shim-warden-v1\n")).unwrap();
    tree.run_ok(
        "install",
        &["--no-verify", "--config", "/etc/containerd/config.toml"],
    );
}

#[test]
fn a_huge_sparse_policy_is_refused_by_size() {
    let tree = Tree::from_case("containerd-2.2-default");
    fs::create_dir_all(tree.host("/etc/warden")).unwrap();
    let policy = tree.host("/etc/warden/policy.toml");
    fs::File::create(&policy)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let files = tree.node_files();
    let out = run_within(&tree, "install", &["--no-verify"], Duration::from_secs(30));
    assert_refused(
        &out,
        &[
            "policy.toml: 104857600 bytes is more than the 4194304 bytes",
            "nothing was changed",
        ],
    );
    assert_eq!(tree.node_files(), files);
    assert!(!tree.host(STATE_DIR).exists());

    // The positive twin: a small valid policy is accepted.
    fs::write(&policy, "version = 1\n").unwrap();
    tree.run_ok("install", &["--no-verify"]);
}

#[test]
fn uninstall_restores_the_mode_and_owner_of_what_install_replaced() {
    if !is_root() {
        return;
    }
    let tree = Tree::from_case("containerd-1.6-default");
    let config = tree.host("/etc/containerd/config.toml");
    chmod(&config, 0o640);
    std::os::unix::fs::chown(&config, Some(1234), Some(1235)).unwrap();
    let old_shim = b"#!/bin/sh\n# a shim installed by hand\n".to_vec();
    fs::create_dir_all(tree.host(INSTALL_DIR)).unwrap();
    fs::write(tree.host(BINARY), &old_shim).unwrap();
    chmod(&tree.host(BINARY), 0o750);
    std::os::unix::fs::chown(tree.host(BINARY), Some(4321), Some(4322)).unwrap();
    let files = tree.node_files();

    tree.run_ok("install", &["--no-verify"]);
    assert_eq!(mode_of(&config), 0o640, "install keeps the config's mode");
    assert_eq!(mode_of(&tree.host(BINARY)), 0o755);
    // Someone (a config manager) resets the config's owner and mode meanwhile.
    chmod(&config, 0o644);
    std::os::unix::fs::chown(&config, Some(0), Some(0)).unwrap();

    tree.run_ok("uninstall", &["--no-verify"]);
    assert_eq!(tree.node_files(), files);
    let meta = fs::metadata(&config).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o640, 1234, 1235)
    );
    let meta = fs::metadata(tree.host(BINARY)).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o750, 4321, 4322)
    );
}

#[test]
fn a_killed_runs_temp_files_are_removed_by_the_next_run() {
    let tree = Tree::from_case("containerd-1.6-default");
    tree.run_ok("install", &["--no-verify"]);
    let leftovers = [
        format!("{STATE_DIR}/.install.json.warden-tmp-99999"),
        format!("{STATE_DIR}/backups/.0123.warden-tmp-99999"),
        format!("{INSTALL_DIR}/.containerd-shim-warden-v1.warden-tmp-4242"),
        "/etc/containerd/.config.toml.warden-tmp-7".to_owned(),
    ];
    let unrelated = tree.host("/etc/containerd/.keep.warden-tmp-notapid");
    fs::write(&unrelated, "x").unwrap();
    for leftover in &leftovers {
        let path = tree.host(leftover);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "half").unwrap();
    }
    // A new shim: the next install has work to do (a no-op run writes nothing at all).
    let newer = b"#!/bin/sh\n# shim v2\nexit 0\n";
    fs::write(&tree.shim, newer).unwrap();
    let out = tree.run_ok("install", &["--no-verify", "--shim-digest", &digest(newer)]);
    let text = String::from_utf8_lossy(&out.stdout);
    for leftover in &leftovers {
        assert!(!tree.host(leftover).exists(), "{leftover} left\n{text}");
        assert!(
            text.contains(&format!("cleaned: removed {leftover}")),
            "{leftover}\n{text}"
        );
    }
    assert!(unrelated.exists(), "not a temp name of warden's");

    // uninstall sweeps too.
    let leftover = tree.host(&format!("{STATE_DIR}/.install.json.warden-tmp-12345"));
    fs::write(&leftover, "half").unwrap();
    tree.run_ok("uninstall", &["--no-verify"]);
    assert!(!leftover.exists());
}

#[test]
fn a_symlinked_config_keeps_working_and_says_where_it_points() {
    let tree = Tree::from_case("containerd-1.6-default");
    let link = tree.host("/etc/containerd/config.toml");
    let real = tree.host("/srv/containerd/config.toml");
    fs::create_dir_all(real.parent().unwrap()).unwrap();
    fs::rename(&link, &real).unwrap();
    // Relative, so that it points to the same file on the node and under --root.
    std::os::unix::fs::symlink("../../srv/containerd/config.toml", &link).unwrap();
    let original = fs::read(&real).unwrap();
    let expected = "symlink: /etc/containerd/config.toml points to /srv/containerd/config.toml";

    let plan = tree.run_ok("plan", &[]);
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains(expected),
        "{}",
        show(&plan)
    );
    let plan = tree.run_ok("plan", &["-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        doc["node"]["symlinks"][0]["target"],
        "/srv/containerd/config.toml"
    );

    // The negative twin: the real file's dir is world-writable.
    let real_dir = real.parent().unwrap();
    chmod(real_dir, 0o777);
    let out = tree.run("install", &["--no-verify"]);
    assert_refused(
        &out,
        &[
            "config dir",
            &real_dir.display().to_string(),
            "writable by others",
        ],
    );
    assert_eq!(fs::read(&real).unwrap(), original);
    chmod(real_dir, 0o755);

    let out = tree.run_ok("install", &["--no-verify"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(expected));
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::read_to_string(&real)
            .unwrap()
            .contains("runtimes.warden]")
    );
    tree.run_ok("uninstall", &["--no-verify"]);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&real).unwrap(), original);
}
