//! The shim binary: where the one to install is, the digest it must have, and what
//! installing it changes.
//!
//! The expected digest comes from `--shim-digest`, else from `<shim>.sha256` beside the
//! shim (`sha256sum` format, written by the build next to the binary it hashed). A shim
//! whose bytes do not match is refused before anything is written, and the copy into the
//! install dir is hashed again while it is written ([`crate::durable::copy_atomic`]),
//! so the bytes that land are the bytes that were checked.

use std::path::{Path, PathBuf};

use serde::Serialize;

use warden_common::names::SHIM_BINARY;

use crate::digest;
use warden_common::input_file::{DIGEST_FILE_CAP, InputError, Links, read_capped};

/// The suffix of the digest file shipped beside the shim.
pub const DIGEST_SUFFIX: &str = ".sha256";

/// Why the shim to install is refused.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error(
        "shim {}: not found (pass --shim PATH; by default the shim is read from beside the \
         `warden` binary)",
        path.display()
    )]
    NotFound { path: PathBuf },
    #[error("shim {}: not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("shim {}: cannot read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no expected digest for the shim {}: pass --shim-digest sha256:HEX, or ship {} \
         beside it (the build writes it)",
        path.display(),
        digest_file.display()
    )]
    NoDigest { path: PathBuf, digest_file: PathBuf },
    #[error(
        "{}: not a SHA-256 digest file (expected `<64 hex digits>  <name>`, as sha256sum \
         writes it)",
        path.display()
    )]
    BadDigestFile { path: PathBuf },
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "digest mismatch: shim {} has {actual}, but {expected} is expected (from {from}); \
         refusing to install bytes that were not shipped with this installer",
        path.display()
    )]
    Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
        from: String,
    },
}

/// A verified shim, ready to be copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shim {
    /// Where it is read from (the installer's file system, not under `--root`).
    pub path: PathBuf,
    /// Its digest, equal to the expected one.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where the expected digest came from (`--shim-digest` or the digest file).
    pub digest_from: String,
}

/// The default shim: `containerd-shim-warden-v1` beside the running `warden`.
pub fn default_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(SHIM_BINARY)))
        .unwrap_or_else(|| PathBuf::from(SHIM_BINARY))
}

/// A missing shim is `NotFound`; any other failure to read it is `Unreadable`.
fn io_error(path: &Path, source: std::io::Error) -> ShimError {
    if source.kind() == std::io::ErrorKind::NotFound {
        ShimError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        ShimError::Unreadable {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `<shim>.sha256`.
pub fn digest_file_for(shim: &Path) -> PathBuf {
    let mut name = shim.as_os_str().to_owned();
    name.push(DIGEST_SUFFIX);
    PathBuf::from(name)
}

/// Finds the shim, reads the expected digest (`expected`, canonical, else the digest
/// file) and checks the shim's bytes against it.
pub fn resolve(path: &Path, expected: Option<&str>) -> Result<Shim, ShimError> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(ShimError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let (expected, from) = match expected {
        Some(digest) => (digest.to_owned(), "--shim-digest".to_owned()),
        None => {
            let file = digest_file_for(path);
            (read_digest_file(path, &file)?, file.display().to_string())
        }
    };
    let actual = digest::of_file(path)
        .map_err(|e| io_error(path, e))?
        .ok_or_else(|| ShimError::NotFound {
            path: path.to_path_buf(),
        })?;
    if actual != expected {
        return Err(ShimError::Mismatch {
            path: path.to_path_buf(),
            expected,
            actual,
            from,
        });
    }
    Ok(Shim {
        path: path.to_path_buf(),
        digest: actual,
        size: meta.len(),
        digest_from: from,
    })
}

/// The digest in a `sha256sum`-style file: the first word of the first line, with or
/// without `sha256:`.
/// Only a regular file of at most [`DIGEST_FILE_CAP`] bytes is read.
fn read_digest_file(shim: &Path, file: &Path) -> Result<String, ShimError> {
    let bytes = match read_capped("shim digest file", file, DIGEST_FILE_CAP, Links::Follow) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(ShimError::NoDigest {
                path: shim.to_path_buf(),
                digest_file: file.to_path_buf(),
            });
        }
        Err(InputError::Io { .. }) => {
            return Err(ShimError::BadDigestFile {
                path: file.to_path_buf(),
            });
        }
        Err(e) => return Err(ShimError::Input(e)),
    };
    let text = String::from_utf8_lossy(&bytes);
    text.split_whitespace()
        .next()
        .and_then(digest::parse)
        .ok_or_else(|| ShimError::BadDigestFile {
            path: file.to_path_buf(),
        })
}

/// What installing the shim does to the install dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum BinaryAction {
    /// No file there yet.
    Create,
    /// A file with other bytes is there.
    Replace { current: String },
    /// The same bytes are already there.
    Unchanged,
}

impl BinaryAction {
    /// Compares what is installed at `installed` (a host path) with `shim`.
    pub fn decide(installed: &Path, shim: &Shim) -> std::io::Result<BinaryAction> {
        Ok(match digest::of_file(installed)? {
            None => BinaryAction::Create,
            Some(current) if current == shim.digest => BinaryAction::Unchanged,
            Some(current) => BinaryAction::Replace { current },
        })
    }

    /// One line for `plan` and `install`.
    pub fn describe(&self, node_path: &Path, shim: &Shim) -> String {
        let target = node_path.display();
        let new = warden_common::digest::short(&shim.digest);
        match self {
            BinaryAction::Create => format!(
                "binary: install {target} ({new}, {} bytes) from {}",
                shim.size,
                shim.path.display()
            ),
            BinaryAction::Replace { current } => format!(
                "binary: replace {target} ({} -> {new}) from {}; running shims keep the old \
                 file, no restart needed",
                warden_common::digest::short(current),
                shim.path.display()
            ),
            BinaryAction::Unchanged => format!("binary: {target} is already {new}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_common::Digest;

    fn shim_in(dir: &Path, bytes: &[u8]) -> PathBuf {
        let path = dir.join(SHIM_BINARY);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn digest_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = shim_in(dir.path(), b"shim");
        let good = Digest::of(b"shim").to_string();
        let shim = resolve(&path, Some(&good)).unwrap();
        assert_eq!(shim.digest, good);
        assert_eq!(shim.size, 4);

        assert!(matches!(
            resolve(&path, None).unwrap_err(),
            ShimError::NoDigest { .. }
        ));
        let hex = Digest::of(b"shim").hex();
        std::fs::write(
            digest_file_for(&path),
            format!("{hex}  containerd-shim-warden-v1\n"),
        )
        .unwrap();
        let shim = resolve(&path, None).unwrap();
        assert!(shim.digest_from.ends_with(".sha256"));

        std::fs::write(digest_file_for(&path), "nonsense\n").unwrap();
        assert!(matches!(
            resolve(&path, None).unwrap_err(),
            ShimError::BadDigestFile { .. }
        ));

        // A FIFO or a huge file beside the shim is refused by type and size, at once.
        std::fs::remove_file(digest_file_for(&path)).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            digest_file_for(&path),
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let err = resolve(&path, None).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");
        std::fs::remove_file(digest_file_for(&path)).unwrap();
        let f = std::fs::File::create(digest_file_for(&path)).unwrap();
        f.set_len(1 << 20).unwrap();
        let err = resolve(&path, None).unwrap_err();
        assert!(
            matches!(err, ShimError::Input(InputError::TooLarge { .. })),
            "{err}"
        );
    }

    #[test]
    fn mismatch_and_missing_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = shim_in(dir.path(), b"shim");
        let other = Digest::of(b"other").to_string();
        let err = resolve(&path, Some(&other)).unwrap_err();
        assert!(matches!(err, ShimError::Mismatch { .. }));
        assert!(err.to_string().starts_with("digest mismatch: shim "));
        assert!(matches!(
            resolve(&dir.path().join("nope"), Some(&other)).unwrap_err(),
            ShimError::NotFound { .. }
        ));
        assert!(matches!(
            resolve(dir.path(), Some(&other)).unwrap_err(),
            ShimError::NotAFile { .. }
        ));
    }

    #[test]
    fn action_compares_installed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = shim_in(dir.path(), b"new");
        let shim = resolve(&path, Some(&Digest::of(b"new").to_string())).unwrap();
        let installed = dir.path().join("installed");
        assert_eq!(
            BinaryAction::decide(&installed, &shim).unwrap(),
            BinaryAction::Create
        );
        std::fs::write(&installed, b"old").unwrap();
        assert!(matches!(
            BinaryAction::decide(&installed, &shim).unwrap(),
            BinaryAction::Replace { .. }
        ));
        std::fs::write(&installed, b"new").unwrap();
        assert_eq!(
            BinaryAction::decide(&installed, &shim).unwrap(),
            BinaryAction::Unchanged
        );
    }
}
