//! The installer's two ways to get a digest beyond [`warden_common::Digest`]: a file's,
//! remembered for the run (the shim is hundreds of MB and looked at more than once), and
//! one a user typed or a `.sha256` file holds (`sha256:<hex>` or bare `<hex>`).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use warden_common::Digest;
use warden_common::input_file::{InputError, Links, open_regular};

/// What identifies a file's content within one run: any write changes its ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Digests computed by this process, so a run that looks at the shim (hundreds of MB) twice
/// hashes it once. Keyed by inode and times: a file written since is hashed again.
static MEMO: Mutex<Option<HashMap<Fingerprint, String>>> = Mutex::new(None);

/// The digest (`sha256:<hex>`) of the file at `path`, read in chunks; `Ok(None)` when it
/// does not exist. Only a regular file is read: a FIFO or a device put where a file warden
/// installed was is an error at once, not a read that never ends.
pub fn of_file(path: &Path) -> io::Result<Option<String>> {
    let mut file = match open_regular("file", path, Links::Follow) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(InputError::Io { source, .. }) => return Err(source),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
    };
    let meta = file.metadata()?;
    let fingerprint = Fingerprint {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    };
    let memo = |f: &dyn Fn(&mut HashMap<Fingerprint, String>) -> Option<String>| {
        let mut guard = MEMO
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(guard.get_or_insert_with(HashMap::new))
    };
    if let Some(known) = memo(&|m| m.get(&fingerprint).cloned()) {
        return Ok(Some(known));
    }
    let digest = Digest::of_reader(&mut file)?.to_string();
    // A file changed while it was read is not remembered.
    let after = file.metadata()?;
    if (after.ctime(), after.ctime_nsec()) == fingerprint.ctime {
        memo(&|m| m.insert(fingerprint, digest.clone()));
    }
    Ok(Some(digest))
}

/// Parses a digest given by a user or a `.sha256` file: `sha256:<hex>` or bare `<hex>`,
/// any case, blanks around it ignored. Returns the canonical form.
pub fn parse(text: &str) -> Option<String> {
    let text = text.trim();
    text.parse::<Digest>()
        .or_else(|_| Digest::from_hex(text))
        .ok()
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_common::digest::{PREFIX, short};

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn of_bytes(bytes: &[u8]) -> String {
        Digest::of(bytes).to_string()
    }

    #[test]
    fn of_bytes_and_file_agree() {
        assert_eq!(of_bytes(b""), EMPTY);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(of_file(&path).unwrap().as_deref(), Some(EMPTY));
        assert_eq!(of_file(&dir.path().join("missing")).unwrap(), None);
    }

    #[test]
    fn a_rewritten_file_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        assert_eq!(of_file(&path).unwrap(), Some(of_bytes(b"one")));
        assert_eq!(of_file(&path).unwrap(), Some(of_bytes(b"one")));
        std::fs::write(&path, b"two").unwrap();
        assert_eq!(of_file(&path).unwrap(), Some(of_bytes(b"two")));
    }

    #[test]
    fn a_fifo_or_a_device_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("shim");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a character device"),
            (dir.path(), "a directory"),
        ] {
            let e = of_file(path).unwrap_err();
            assert!(e.to_string().contains(kind), "{e}");
        }
    }

    #[test]
    fn parse_accepts_both_forms() {
        let hex = &EMPTY[PREFIX.len()..];
        assert_eq!(parse(hex).as_deref(), Some(EMPTY));
        assert_eq!(parse(&hex.to_uppercase()).as_deref(), Some(EMPTY));
        assert_eq!(parse(&format!(" {EMPTY}\n")).as_deref(), Some(EMPTY));
        assert_eq!(parse("sha256:abc"), None);
        assert_eq!(parse("md5:d41d8cd98f00b204e9800998ecf8427e"), None);
        assert_eq!(short(EMPTY), "e3b0c44298fc");
    }
}
