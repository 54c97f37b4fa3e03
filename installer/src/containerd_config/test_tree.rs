//! A fake node filesystem for unit tests: files written under a temp dir standing for `/`.

/// A temp dir holding `files` (node path, text) at their node paths.
pub fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let host = root.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(host, text).unwrap();
    }
    root
}
