//! What kind of file is at a path, in words, for messages that refuse it.

use std::os::unix::fs::FileTypeExt;

/// A file type in words: `a FIFO`, `a symlink`, `a regular file`, ...
pub fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let kind = |p: &std::path::Path| kind_of(std::fs::symlink_metadata(p).unwrap().file_type());
        assert_eq!(kind(dir.path()), "a directory");
        assert_eq!(kind(&file), "a regular file");
        assert_eq!(kind(&link), "a symlink");
        assert_eq!(
            kind(std::path::Path::new("/dev/null")),
            "a character device"
        );
    }
}
