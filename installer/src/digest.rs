//! SHA-256 digests as the installer writes them everywhere: `sha256:<64 lower-case hex>`
//! (the audit log's, OCI's and the state file's form).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The `sha256:` prefix.
pub const PREFIX: &str = "sha256:";

/// `sha256:<hex>` of a finished hash.
pub fn format_digest(hash: &[u8]) -> String {
    format!("{PREFIX}{}", hex::encode(hash))
}

/// The digest of `bytes`.
pub fn of_bytes(bytes: &[u8]) -> String {
    format_digest(&Sha256::digest(bytes))
}

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

/// The digest of the file at `path`, read in chunks; `Ok(None)` when it does not exist.
pub fn of_file(path: &Path) -> io::Result<Option<String>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
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
    let digest = hash_reader(&mut file)?;
    // A file changed while it was read is not remembered.
    let after = file.metadata()?;
    if (after.ctime(), after.ctime_nsec()) == fingerprint.ctime {
        memo(&|m| m.insert(fingerprint, digest.clone()));
    }
    Ok(Some(digest))
}

fn hash_reader(file: &mut File) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format_digest(&hasher.finalize()))
}

/// Parses a digest given by a user or a `.sha256` file: `sha256:<hex>` or bare `<hex>`,
/// any case. Returns the canonical form.
pub fn parse(text: &str) -> Option<String> {
    let text = text.trim();
    let hex = text.strip_prefix(PREFIX).unwrap_or(text);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{PREFIX}{}", hex.to_ascii_lowercase()))
}

/// The first 12 hex digits, for messages.
pub fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix(PREFIX).unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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
