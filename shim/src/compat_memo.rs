//! The engine's compatibility key, remembered beside the compile cache's artifacts, so that
//! a cache hit needs no engine.
//!
//! An artifact's cache name holds the compatibility key of the engine that compiled it
//! ([`crate::engine::compat_key`]), and computing that key takes a wasmtime engine with its
//! compiler: in the shim that means a child process (the shim process itself never builds
//! an engine; see [`crate::compile`]). On a warm start that child was the only reason to
//! leave the shim. The key depends only on the engine's settings, which are this binary's
//! code, and on the CPU features wasmtime compiles for. So the compile child, which has the
//! engine, writes `compat-<flavour>.key` into the cache directory: the key, and the identity
//! it holds for (this binary's file: device, inode, size, change and modification times;
//! the CPU features the code generator detects; the flavour). The shim reads it back and
//! uses the key only when the identity is its own; a new shim binary, another CPU or a
//! damaged file means no memo, and the child computes the key as before.
//!
//! A memo can only name an entry of the cache: the directory whose artifacts the shim
//! already trusts (root's, mode 0700, checked on every open). And a wrong key could only
//! select an artifact wasmtime then refuses: deserializing checks the artifact's engine
//! settings and CPU features against the runner's engine.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};
use warden_common::durable;
use warden_common::input_file::{Links, read_capped};

use crate::engine::Flavor;

/// The memo's file name in the cache directory (not an artifact name: eviction skips it).
pub fn file_name(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Plain => "compat-plain.key",
        Flavor::Metered => "compat-metered.key",
    }
}

/// The largest memo read: an identity and a key with their separator and newline.
const MAX_MEMO_BYTES: u64 = 256;

/// What a memo is valid for, as hex: this binary, this CPU's features, the flavour.
pub fn identity(flavor: Flavor) -> std::io::Result<String> {
    let exe = std::fs::metadata("/proc/self/exe")?;
    let mut h = Sha256::new();
    h.update(b"warden-compat-memo-1\0");
    for n in [
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime() as u64,
        exe.mtime_nsec() as u64,
        exe.ctime() as u64,
        exe.ctime_nsec() as u64,
    ] {
        h.update(n.to_le_bytes());
    }
    h.update(cpu_features().as_bytes());
    h.update(file_name(flavor).as_bytes());
    Ok(hex::encode(&h.finalize()[..16]))
}

/// The CPU features wasmtime's code generator detects for the host (Cranelift's native
/// detection asks the same questions), named so that the identity changes with any of them.
fn cpu_features() -> String {
    let mut out = String::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! features {
            ($($f:tt),*) => {
                $( let _ = write!(out, "{}={} ", $f, std::arch::is_x86_feature_detected!($f)); )*
            };
        }
        features!(
            "sse3",
            "ssse3",
            "sse4.1",
            "sse4.2",
            "popcnt",
            "cmpxchg16b",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "bmi1",
            "bmi2",
            "lzcnt",
            "avx512f",
            "avx512vl",
            "avx512dq",
            "avx512bw",
            "avx512vbmi",
            "avx512bitalg",
            "avx512vpopcntdq"
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: getauxval reads the process's auxiliary vector; it has no preconditions.
        let (hwcap, hwcap2) = unsafe {
            (
                libc::getauxval(libc::AT_HWCAP),
                libc::getauxval(libc::AT_HWCAP2),
            )
        };
        let _ = write!(out, "hwcap={hwcap:x} hwcap2={hwcap2:x}");
    }
    out.push_str(std::env::consts::ARCH);
    out
}

/// The remembered key, if the cache directory holds a memo for this identity. Any problem
/// (no memo, another identity, a memo that is not a regular file or not of the expected
/// form) is `None`: the caller computes the key instead.
pub fn read(cache_dir: &Path, flavor: Flavor) -> Option<String> {
    let text = read_small(&cache_dir.join(file_name(flavor)))?;
    let own = identity(flavor).ok()?;
    parse(&text, &own)
}

/// The key in a memo's text, if the memo is for `identity`.
fn parse(text: &str, identity: &str) -> Option<String> {
    let line = text.strip_suffix('\n')?;
    let (id, key) = line.split_once(' ')?;
    let is_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    (id == identity && key.len() == 16 && is_hex(key)).then(|| key.to_string())
}

fn render(identity: &str, key: &str) -> String {
    format!("{identity} {key}\n")
}

/// Reads a regular file of at most [`MAX_MEMO_BYTES`], without following a symlink or
/// blocking on a FIFO.
fn read_small(path: &Path) -> Option<String> {
    let bytes = read_capped("compile cache memo", path, MAX_MEMO_BYTES, Links::Refuse)
        .ok()
        .flatten()?;
    String::from_utf8(bytes).ok()
}

/// Remembers `key` for this binary and CPU, unless the memo already says so. Whole or
/// absent after a crash (written to a temp file, fsynced, renamed).
pub fn write(cache_dir: &Path, flavor: Flavor, key: &str) -> anyhow::Result<()> {
    let own = identity(flavor)?;
    if read(cache_dir, flavor).as_deref() == Some(key) {
        return Ok(());
    }
    durable::replace(
        cache_dir,
        file_name(flavor),
        render(&own, key).as_bytes(),
        0o600,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_holds_only_for_its_identity() {
        let id = identity(Flavor::Plain).unwrap();
        assert_eq!(id, identity(Flavor::Plain).unwrap(), "stable");
        assert_ne!(id, identity(Flavor::Metered).unwrap(), "per flavour");
        let key = "0123456789abcdef";
        assert_eq!(parse(&render(&id, key), &id).as_deref(), Some(key));
        assert_eq!(parse(&render("another", key), &id), None);
        // Damaged or foreign content is no memo.
        for text in [
            "",
            "\n",
            &format!("{id} {key}"),
            &format!("{id} 0123\n"),
            &format!("{id} 0123456789ABCDEF\n"),
            &format!("{id} ../../etc/passw\n"),
            &format!("{id} {key} extra\n"),
        ] {
            assert_eq!(parse(text, &id), None, "{text:?}");
        }
    }

    #[test]
    fn written_then_read_back_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let key = "00112233aabbccdd";
        assert_eq!(read(dir.path(), Flavor::Plain), None);
        write(dir.path(), Flavor::Plain, key).unwrap();
        assert_eq!(read(dir.path(), Flavor::Plain).as_deref(), Some(key));
        assert_eq!(read(dir.path(), Flavor::Metered), None);
        // A symlink planted as the memo is not followed.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, render(&identity(Flavor::Metered).unwrap(), key)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(file_name(Flavor::Metered)))
            .unwrap();
        assert_eq!(read(dir.path(), Flavor::Metered), None);
    }
}
