//! Which directories warden may write into: none that a local unprivileged user can change.
//!
//! warden runs as root and writes the shim, containerd's config, its state and the audit
//! log. A directory another user can write lets that user swap what warden wrote between
//! its check and its use (a symlink where the lock or a temp file goes, another shim after
//! the digest check), so such a directory is refused before anything is written.
//!
//! The rule, checked on the directory as found and on its real path (symlinks resolved):
//!
//! - a directory warden writes into (the install, state, config, drop-in and audit log
//!   dirs) is owned by root (or by the user warden runs as) and not writable by its group
//!   or others, sticky bit or not;
//! - every ancestor up to `/` is owned by root (or that user) and not writable by others
//!   unless it has the sticky bit (`/tmp`: others cannot rename or remove what root put
//!   there). A group-writable ancestor is accepted (Ubuntu's `/var/log` is `root:syslog`
//!   0775).
//!
//! A directory that does not exist yet is judged by its nearest existing ancestor, which is
//! then the one warden writes into (it creates the rest, mode 0755).

use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode bits that matter.
const GROUP_WRITE: u32 = 0o020;
const OTHER_WRITE: u32 = 0o002;
const STICKY: u32 = 0o1000;

/// How a directory is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// warden creates, replaces or removes files in it.
    WrittenInto,
    /// An ancestor of such a directory.
    Ancestor,
}

/// What is wrong with a directory's owner or mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Owned by a user other than root (and the user warden runs as).
    Owner,
    /// Writable by its group.
    GroupWritable,
    /// Writable by others (and, for an ancestor, not sticky).
    OtherWritable,
    /// Not a directory.
    NotADirectory,
}

impl fmt::Display for Flaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flaw::Owner => "not owned by root",
            Flaw::GroupWritable => "writable by its group",
            Flaw::OtherWritable => "writable by others",
            Flaw::NotADirectory => "not a directory",
        })
    }
}

/// A directory warden will not trust.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error(
        "{what} {}: {} is {flaw} (owner uid {uid}, gid {gid}, mode {mode:04o}): a local user \
         could swap what warden writes there, so warden refuses it; fix it with `chown \
         root:root {} && chmod go-w {}`, or choose another with the matching flag",
        path.display(),
        describe(path, dir),
        dir.display(),
        dir.display()
    )]
    Untrusted {
        /// What the directory is for (`install dir`, `state dir`, ...).
        what: &'static str,
        /// The directory warden uses.
        path: PathBuf,
        /// The directory at fault: `path` itself, an ancestor, or where a symlink leads.
        dir: PathBuf,
        flaw: Flaw,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    #[error("{what} {}: cannot check {}: {reason}", path.display(), dir.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        dir: PathBuf,
        reason: String,
    },
}

fn describe(path: &Path, dir: &Path) -> String {
    if path == dir {
        "it".to_owned()
    } else {
        format!("{} on its way", dir.display())
    }
}

/// Owner and mode of one directory, as `stat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirFacts {
    pub uid: u32,
    pub gid: u32,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    pub is_dir: bool,
}

impl DirFacts {
    pub fn of(meta: &std::fs::Metadata) -> DirFacts {
        DirFacts {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.permissions().mode(),
            is_dir: meta.is_dir(),
        }
    }
}

/// Whether a uid may own what warden trusts: root, or the user warden runs as (tests).
pub fn trusted_owner(uid: u32, euid: u32) -> bool {
    uid == 0 || uid == euid
}

/// The pure rule: what is wrong with a directory in `role`, if anything.
pub fn judge(facts: DirFacts, role: Role, euid: u32) -> Option<Flaw> {
    if !facts.is_dir {
        return Some(Flaw::NotADirectory);
    }
    if !trusted_owner(facts.uid, euid) {
        return Some(Flaw::Owner);
    }
    let sticky = facts.mode & STICKY != 0;
    match role {
        Role::WrittenInto if facts.mode & OTHER_WRITE != 0 => Some(Flaw::OtherWritable),
        Role::WrittenInto if facts.mode & GROUP_WRITE != 0 => Some(Flaw::GroupWritable),
        Role::Ancestor if facts.mode & OTHER_WRITE != 0 && !sticky => Some(Flaw::OtherWritable),
        _ => None,
    }
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Checks that warden may write into `dir` (a host path; it may not exist yet): `dir` (or
/// its nearest existing ancestor) and every ancestor, along the path as given and along
/// its real path.
pub fn check_dir(what: &'static str, dir: &Path) -> Result<(), TrustError> {
    check_dir_as(what, dir, euid())
}

/// [`check_dir`] for a given effective uid.
pub fn check_dir_as(what: &'static str, dir: &Path, euid: u32) -> Result<(), TrustError> {
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| unreadable(what, dir, dir, &e))?
            .join(dir)
    };
    let existing = nearest_existing(&absolute);
    // The path as given: each component that is a directory (a symlink is judged by the
    // directory holding it, which is its parent here, and by where it leads, below).
    let mut role = Role::WrittenInto;
    for d in existing.ancestors() {
        let meta = std::fs::symlink_metadata(d).map_err(|e| unreadable(what, dir, d, &e))?;
        if !meta.file_type().is_symlink() {
            check_one(what, dir, d, DirFacts::of(&meta), role, euid)?;
        }
        role = Role::Ancestor;
    }
    // The real path: where symlinks on the way lead.
    let real =
        std::fs::canonicalize(&existing).map_err(|e| unreadable(what, dir, &existing, &e))?;
    if real != existing {
        let mut role = Role::WrittenInto;
        for d in real.ancestors() {
            let meta = std::fs::symlink_metadata(d).map_err(|e| unreadable(what, dir, d, &e))?;
            check_one(what, dir, d, DirFacts::of(&meta), role, euid)?;
            role = Role::Ancestor;
        }
    }
    Ok(())
}

/// Checks an open directory (by its fd's `stat`) as one warden writes into: what a rename
/// or a temp file relies on, checked on the very directory used.
pub fn check_open_dir(
    what: &'static str,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<(), TrustError> {
    check_one(
        what,
        path,
        path,
        DirFacts::of(meta),
        Role::WrittenInto,
        euid(),
    )
}

fn check_one(
    what: &'static str,
    path: &Path,
    dir: &Path,
    facts: DirFacts,
    role: Role,
    euid: u32,
) -> Result<(), TrustError> {
    match judge(facts, role, euid) {
        None => Ok(()),
        Some(flaw) => Err(TrustError::Untrusted {
            what,
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            flaw,
            uid: facts.uid,
            gid: facts.gid,
            mode: facts.mode & 0o7777,
        }),
    }
}

/// `path` if it exists (as a link or not), else its nearest existing ancestor (`/` at
/// worst).
pub fn nearest_existing(path: &Path) -> PathBuf {
    let mut current = path;
    loop {
        if current.symlink_metadata().is_ok() {
            return current.to_path_buf();
        }
        match current.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => current = parent,
            _ => return PathBuf::from("/"),
        }
    }
}

fn unreadable(what: &'static str, path: &Path, dir: &Path, e: &std::io::Error) -> TrustError {
    TrustError::Unreadable {
        what,
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dir(uid: u32, mode: u32) -> DirFacts {
        DirFacts {
            uid,
            gid: 0,
            mode: 0o040000 | mode,
            is_dir: true,
        }
    }

    #[test]
    fn written_into_dirs_must_be_root_owned_and_not_group_or_other_writable() {
        assert_eq!(judge(dir(0, 0o755), Role::WrittenInto, 0), None);
        assert_eq!(judge(dir(0, 0o700), Role::WrittenInto, 1000), None);
        assert_eq!(
            judge(dir(1000, 0o755), Role::WrittenInto, 0),
            Some(Flaw::Owner)
        );
        assert_eq!(judge(dir(1000, 0o755), Role::WrittenInto, 1000), None);
        assert_eq!(
            judge(dir(0, 0o775), Role::WrittenInto, 0),
            Some(Flaw::GroupWritable)
        );
        assert_eq!(
            judge(dir(0, 0o757), Role::WrittenInto, 0),
            Some(Flaw::OtherWritable)
        );
        // Sticky does not make a directory warden writes into safe: others create names.
        assert_eq!(
            judge(dir(0, 0o1777), Role::WrittenInto, 0),
            Some(Flaw::OtherWritable)
        );
        assert_eq!(
            judge(dir(0, 0o1775), Role::WrittenInto, 0),
            Some(Flaw::GroupWritable)
        );
    }

    #[test]
    fn ancestors_may_be_sticky_or_group_writable_but_not_open_to_others() {
        assert_eq!(judge(dir(0, 0o1777), Role::Ancestor, 0), None);
        assert_eq!(judge(dir(0, 0o775), Role::Ancestor, 0), None);
        assert_eq!(
            judge(dir(0, 0o777), Role::Ancestor, 0),
            Some(Flaw::OtherWritable)
        );
        assert_eq!(judge(dir(7, 0o755), Role::Ancestor, 0), Some(Flaw::Owner));
        let file = DirFacts {
            is_dir: false,
            ..dir(0, 0o644)
        };
        assert_eq!(judge(file, Role::Ancestor, 0), Some(Flaw::NotADirectory));
    }

    #[test]
    fn a_temp_tree_is_trusted_and_a_world_writable_dir_is_named() {
        let temp = tempfile::tempdir().unwrap();
        let good = temp.path().join("opt/warden/bin");
        assert_eq!(check_dir("install dir", &good), Ok(()));
        fs::create_dir_all(&good).unwrap();
        assert_eq!(check_dir("install dir", &good), Ok(()));

        let open = temp.path().join("opt/warden");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        // The dir itself: refused; a child: its ancestor is refused.
        let err = check_dir("install dir", &open).unwrap_err();
        assert!(
            matches!(err, TrustError::Untrusted { flaw: Flaw::OtherWritable, ref dir, .. } if dir == &open),
            "{err}"
        );
        let err = check_dir("install dir", &good).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&open.display().to_string()), "{text}");
        assert!(text.contains("writable by others"), "{text}");
        assert!(text.contains("mode 0777"), "{text}");
        assert!(text.contains("chmod go-w"), "{text}");
        // A missing dir below it is judged by it, as the dir warden writes into.
        assert!(check_dir("install dir", &open.join("missing/deeper")).is_err());
        // Sticky makes an ancestor safe, not the dir itself.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check_dir("install dir", &good), Ok(()));
        assert!(check_dir("install dir", &open).is_err());
    }

    #[test]
    fn symlinked_dirs_are_judged_where_they_lead() {
        let temp = tempfile::tempdir().unwrap();
        let real = temp.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = temp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(check_dir("config dir", &link), Ok(()));
        fs::set_permissions(&real, fs::Permissions::from_mode(0o775)).unwrap();
        let err = check_dir("config dir", &link).unwrap_err();
        assert!(
            matches!(err, TrustError::Untrusted { flaw: Flaw::GroupWritable, ref dir, .. } if dir == &real),
            "{err}"
        );
    }

    #[test]
    fn another_owner_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        // Judged as a different euid: the temp dir (ours) is then "someone else's".
        let me = euid();
        let other = if me == 0 { 4242 } else { me + 1 };
        if me != 0 {
            let err = check_dir_as("state dir", temp.path(), other).unwrap_err();
            assert!(matches!(
                err,
                TrustError::Untrusted {
                    flaw: Flaw::Owner,
                    ..
                }
            ));
        } else {
            let sub = temp.path().join("state");
            fs::create_dir(&sub).unwrap();
            std::os::unix::fs::chown(&sub, Some(other), Some(other)).unwrap();
            let err = check_dir_as("state dir", &sub, 0).unwrap_err();
            assert!(
                matches!(err, TrustError::Untrusted { flaw: Flaw::Owner, uid, .. } if uid == other)
            );
            assert!(err.to_string().contains("chown root:root"), "{err}");
        }
    }
}
