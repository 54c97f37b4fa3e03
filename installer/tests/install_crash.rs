//! Crash safety: `warden install` (and `uninstall`) killed with SIGKILL at every step
//! boundary in turn (`WARDEN_TEST_CRASH_AT`), then run again: the node always ends whole,
//! never half-configured, and never with a temp file left behind.

mod install_support;

use install_support::{Tree, killed, show};
use warden_installer::crash_hook::{ENV, INSTALL_POINTS, UNINSTALL_POINTS};

/// A main-file edit (containerd 1.6) and a drop-in creation (containerd 2.2).
const CASES: [&str; 2] = ["containerd-1.6-default", "containerd-2.2-default"];

fn crash(tree: &Tree, command: &str, point: &str) {
    let out = tree
        .command(command, &["--no-verify"], &[(ENV, point)])
        .output()
        .unwrap();
    assert!(
        killed(&out),
        "{} {command} at {point}: expected SIGKILL\n{}",
        tree.name,
        show(&out)
    );
}

/// The node is fully installed: the shim with its digest, the entry, the state verified.
fn assert_whole(tree: &Tree, point: &str) {
    let name = &tree.name;
    assert_eq!(
        tree.installed_shim().as_deref(),
        Some(tree.shim_bytes.as_slice()),
        "{name} after a crash at {point}: shim"
    );
    let plan = tree.run_ok("plan", &["-o", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        plan["noop"], true,
        "{name} after a crash at {point}: {plan}"
    );
    let state = tree.state().unwrap();
    assert_eq!(
        state["phase"], "verified",
        "{name} after a crash at {point}"
    );
    assert_eq!(state["restart_pending"], false, "{name} at {point}");
    assert!(state["attempt"].is_null(), "{name} at {point}");
    assert!(
        tree.temp_files().is_empty(),
        "{name} at {point}: {:?}",
        tree.temp_files()
    );
    tree.run_ok("verify", &["--disk-only"]);
}

#[test]
fn install_killed_at_every_point_is_finished_by_the_next_run() {
    for case in CASES {
        for point in INSTALL_POINTS {
            let tree = Tree::from_case(case);
            crash(&tree, "install", point);
            let out = tree.run_ok("install", &["--no-verify"]);
            assert_whole(&tree, point);
            // Restarted at least once after the config changed; never more than the crash
            // and the re-run together need.
            let restarts = tree.restarts();
            assert!(
                (1..=2).contains(&restarts),
                "{case} at {point}: {restarts} restarts\n{}",
                show(&out)
            );
            if *point == "verified" {
                assert!(
                    String::from_utf8_lossy(&out.stdout).starts_with("unchanged: "),
                    "{case}: a run after a finished install must change nothing"
                );
            }
        }
    }
}

#[test]
fn uninstall_after_an_install_killed_at_every_point_restores_the_original() {
    for case in CASES {
        for point in INSTALL_POINTS {
            let tree = Tree::from_case(case);
            let files = tree.node_files();
            let dirs = tree.node_dirs();
            crash(&tree, "install", point);
            tree.run_ok("uninstall", &["--no-verify"]);
            assert_eq!(tree.node_files(), files, "{case} after a crash at {point}");
            assert_eq!(tree.node_dirs(), dirs, "{case} after a crash at {point}");
            assert!(tree.state().is_none(), "{case} at {point}");
        }
    }
}

#[test]
fn uninstall_killed_at_every_point_is_finished_by_the_next_run() {
    for case in CASES {
        for point in UNINSTALL_POINTS {
            let tree = Tree::from_case(case);
            let files = tree.node_files();
            tree.run_ok("install", &["--no-verify"]);
            crash(&tree, "uninstall", point);
            tree.run_ok("uninstall", &["--no-verify"]);
            assert_eq!(tree.node_files(), files, "{case} after a crash at {point}");
            assert!(tree.temp_files().is_empty(), "{case} at {point}");
            assert!(tree.state().is_none(), "{case} at {point}");
            // Installed (1), then restarted by the uninstall that was killed or the one
            // that finished, exactly once.
            assert_eq!(tree.restarts(), 2, "{case} at {point}");
        }
    }
}

#[test]
fn install_after_a_killed_uninstall_reinstalls() {
    for point in UNINSTALL_POINTS {
        let tree = Tree::from_case("containerd-1.6-default");
        tree.run_ok("install", &["--no-verify"]);
        crash(&tree, "uninstall", point);
        tree.run_ok("install", &["--no-verify"]);
        assert_whole(&tree, point);
        let files_installed = tree.node_files();
        tree.run_ok("uninstall", &["--no-verify"]);
        let original = Tree::from_case("containerd-1.6-default");
        assert_eq!(tree.node_files(), original.node_files(), "{point}");
        assert_ne!(files_installed, tree.node_files());
    }
}
