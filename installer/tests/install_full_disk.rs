//! A full file system: a small tmpfs as the install dir (refused before anything is
//! written) or as containerd's config dir (ENOSPC in the middle of the install: everything
//! written so far is taken back). Needs root, for `mount`.

mod install_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use install_support::{INSTALL_DIR, STATE_DIR, Tree, show};

/// A tmpfs mounted for the length of a test.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot mount a tmpfs on {}",
            dir.display()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// Fills the file system up to the last byte with a file called `filler`.
    fn fill(&self) {
        use std::io::Write;
        let mut file = fs::File::create(self.dir.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", self.dir.display()),
            }
        }
        // Byte by byte for the rest of the last block.
        while file.write(&[0]).is_ok_and(|n| n == 1) {}
        let _ = file.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// A shim of `size` bytes (bigger than the small tmpfs).
fn big_shim(tree: &mut Tree, size: usize) {
    let mut bytes = b"#!/bin/sh\nexit 0\n".to_vec();
    bytes.resize(size, b'#');
    fs::write(&tree.shim, &bytes).unwrap();
    let hex = warden_common::Digest::of(&bytes).hex();
    let mut digest_file = tree.shim.clone().into_os_string();
    digest_file.push(".sha256");
    fs::write(digest_file, format!("{hex}  containerd-shim-warden-v1\n")).unwrap();
    tree.shim_bytes = bytes;
}

#[test]
fn a_full_install_dir_is_refused_cleanly() {
    warden_test::require_root();
    let mut tree = Tree::from_case("containerd-2.2-default");
    big_shim(&mut tree, 1 << 20);
    let tmpfs = Tmpfs::mount(&tree.host(INSTALL_DIR), "256k");
    let before = install_support::snapshot(&tree.root);
    let out = tree.run("install", &["--no-verify"]);
    assert!(!out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no space left for the shim"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(install_support::snapshot(&tree.root), before);
    assert_eq!(
        fs::read_dir(&tmpfs.dir).unwrap().count(),
        0,
        "written into the tmpfs"
    );
    assert!(!tree.host(STATE_DIR).exists());
    assert_eq!(tree.restarts(), 0);
}

#[test]
fn enospc_while_writing_the_config_rolls_back_everything() {
    warden_test::require_root();
    let tree = Tree::from_case("containerd-1.6-default");
    let config_dir = tree.host("/etc/containerd");
    let config = fs::read(config_dir.join("config.toml")).unwrap();
    fs::remove_dir_all(&config_dir).unwrap();
    let tmpfs = Tmpfs::mount(&config_dir, "64k");
    fs::write(config_dir.join("config.toml"), &config).unwrap();
    tmpfs.fill();
    let files = tree.node_files();
    let dirs = tree.node_dirs();

    let out = tree.run("install", &["--no-verify", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["result"], "failed", "{doc}");
    let error = doc["error"].as_str().unwrap();
    assert!(error.contains("no space left on device"), "{error}");
    assert!(
        error.contains("rolled back: removed /opt/warden/bin/containerd-shim-warden-v1"),
        "{error}"
    );

    // The shim written before the config is gone, the config is untouched, no temp file is
    // left in the full directory, and a first install leaves no state behind.
    assert_eq!(tree.node_files(), files);
    assert_eq!(tree.node_dirs(), dirs);
    assert!(tree.temp_files().is_empty());
    assert!(!tree.host(INSTALL_DIR).exists(), "install dir left behind");
    assert!(tree.state().is_none());
    assert_eq!(tree.restarts(), 0);

    // Free the space: the next run installs.
    fs::remove_file(tmpfs.dir.join("filler")).unwrap();
    tree.run_ok("install", &["--no-verify"]);
    assert_eq!(tree.restarts(), 1);
    tree.run_ok("uninstall", &["--no-verify"]);
    assert_eq!(fs::read(config_dir.join("config.toml")).unwrap(), config);
}
