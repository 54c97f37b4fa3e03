//! Host-side state: `<state-dir>/install.json` and the backups beside it.
//!
//! The state is what lets `uninstall` remove only what warden created and restore the rest
//! byte for byte, and what lets a run killed at any point be finished or repaired by the
//! next one. It is written ahead of every change (the backup and the intended digest are
//! durable before the file they describe is touched), atomically, so it is always one of
//! its whole versions.
//!
//! The phases of an install, in order: `planned` → `binary-installed` → `config-written` →
//! `restarted` → `verified`. `rolled-back` ends a run whose verification failed (or that
//! could not finish writing); `uninstalling` marks an uninstall under way.
//!
//! Backups live in `<state-dir>/backups/<sha256 hex>`, named by their content, and are
//! removed once no record refers to them.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest;
use warden_common::Digest;
use warden_common::durable::{self, FileMode, FsError};
use warden_common::input_file::{InputError, Links, STATE_CAP, open_regular, read_capped};

/// The state file's name in the state dir.
pub const STATE_FILE: &str = "install.json";
/// The backups' directory in the state dir.
pub const BACKUP_DIR: &str = "backups";
/// The version of the state file's format.
pub const FORMAT: u32 = 1;

/// Where an install (or uninstall) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Detection and planning done, nothing written yet but the state.
    Planned,
    /// The shim is in the install dir with the expected digest.
    BinaryInstalled,
    /// containerd's config holds the `warden` runtime.
    ConfigWritten,
    /// containerd was restarted with that config (or needed no restart).
    Restarted,
    /// containerd knows the handler and accepted a pod with it (or `--no-verify`).
    Verified,
    /// The run failed and what it changed was put back; `last_error` says why.
    RolledBack,
    /// An uninstall is under way.
    Uninstalling,
}

impl Phase {
    /// The name used in the state file, the crash hook and messages.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Planned => "planned",
            Phase::BinaryInstalled => "binary-installed",
            Phase::ConfigWritten => "config-written",
            Phase::Restarted => "restarted",
            Phase::Verified => "verified",
            Phase::RolledBack => "rolled-back",
            Phase::Uninstalling => "uninstalling",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What was at a path before warden wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Original {
    /// Nothing: warden created the file, and removing it restores the node.
    Absent,
    /// These bytes, saved in the state dir.
    Saved {
        digest: String,
        /// Relative to the state dir (`backups/<hex>`).
        backup: String,
        /// The file's mode and owner, put back with its bytes (absent in states written
        /// before warden recorded them: the file's current ones are kept then).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<FileMeta>,
    },
    /// Someone else changed the file after warden wrote it, so its pre-warden bytes would
    /// undo their change: uninstall removes only warden's entry.
    Unknown,
}

/// A file's permission bits and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl FileMeta {
    /// The mode and owner of the file at `path` (following a symlink: the file itself);
    /// `None` when there is none.
    pub fn of(path: &Path) -> Result<Option<FileMeta>, FsError> {
        Ok(FileMode::of(path)?.and_then(|m| {
            m.owner.map(|(uid, gid)| FileMeta {
                mode: m.mode,
                uid,
                gid,
            })
        }))
    }

    /// As the mode a write puts on the file.
    pub fn file_mode(self) -> FileMode {
        FileMode {
            mode: self.mode,
            owner: Some((self.uid, self.gid)),
        }
    }
}

impl Original {
    /// The same original, with the file's mode and owner recorded.
    pub fn with_meta(self, meta: Option<FileMeta>) -> Original {
        match self {
            Original::Saved { digest, backup, .. } => Original::Saved {
                digest,
                backup,
                meta,
            },
            other => other,
        }
    }

    /// The mode and owner to restore the original with: the recorded ones, else
    /// `current` (what the file has now), else `default`.
    pub fn restore_mode(&self, current: Option<FileMode>, default: u32) -> FileMode {
        match self {
            Original::Saved {
                meta: Some(meta), ..
            } => meta.file_mode(),
            _ => current.unwrap_or(FileMode::new(default)),
        }
    }

    /// The original's digest, if its bytes are known.
    pub fn digest(&self) -> Option<&str> {
        match self {
            Original::Saved { digest, .. } => Some(digest),
            _ => None,
        }
    }

    /// Whether a file whose digest is `current` (`None`: absent) is this original.
    pub fn is(&self, current: Option<&str>) -> bool {
        match self {
            Original::Absent => current.is_none(),
            Original::Saved { digest, .. } => current == Some(digest.as_str()),
            Original::Unknown => false,
        }
    }

    /// The original to keep for a path warden writes again: the recorded one while the
    /// file is still what warden wrote (`written`) or the original itself, else `Unknown`
    /// (someone else changed it since).
    pub fn carried(&self, written: &str, current: Option<&str>) -> Original {
        if current == Some(written) || self.is(current) {
            self.clone()
        } else {
            Original::Unknown
        }
    }
}

/// A config file warden wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The path on the node.
    pub path: PathBuf,
    /// What was there before warden's first write.
    pub original: Original,
    /// The digest of what warden wrote last.
    pub digest_after: String,
    /// When.
    pub written_at: String,
}

/// The shim binary warden installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryRecord {
    /// The path on the node.
    pub path: PathBuf,
    /// Its digest.
    pub digest: String,
    /// What was at the path before warden's first install.
    pub original: Original,
    /// When it was written.
    pub installed_at: String,
}

/// One path changed by the current install attempt, with what was there when the attempt
/// started: what a failed verification puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptEntry {
    pub path: PathBuf,
    /// `Absent` or `Saved` (never `Unknown`: the attempt read the bytes itself).
    pub before: Original,
    /// The digest the attempt writes.
    pub after: String,
    /// Whether this is the shim binary (else a config file).
    #[serde(default)]
    pub binary: bool,
}

/// The install attempt under way: from the first write of a run that starts from a
/// finished state until `verified` (or a rollback). A run killed midway is resumed as the
/// same attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub started: String,
    pub entries: Vec<AttemptEntry>,
    /// Directories the attempt created (outermost first).
    #[serde(default)]
    pub dirs_created: Vec<PathBuf>,
    /// Set just before containerd is restarted: a rollback must then restart it again.
    pub restart_started: bool,
}

impl Attempt {
    /// An attempt starting now.
    pub fn new() -> Attempt {
        Attempt {
            started: warden_audit::now_rfc3339(),
            entries: Vec::new(),
            dirs_created: Vec::new(),
            restart_started: false,
        }
    }

    /// Records that the attempt writes `after` to `path`; the first write keeps `before`.
    pub fn wrote(&mut self, path: &Path, before: Original, after: &str, binary: bool) {
        match self.entries.iter_mut().find(|e| e.path == path) {
            Some(entry) => entry.after = after.to_owned(),
            None => self.entries.push(AttemptEntry {
                path: path.to_path_buf(),
                before,
                after: after.to_owned(),
                binary,
            }),
        }
    }
}

impl Default for Attempt {
    fn default() -> Self {
        Attempt::new()
    }
}

/// A restart warden did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRecord {
    pub unit: Option<String>,
    /// How (`command: ...`, `systemd: ...`).
    pub method: String,
    pub at: String,
}

/// The result of the last verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub at: String,
    /// `passed` or `skipped`.
    pub result: String,
    pub detail: String,
}

/// `install.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub phase: Phase,
    pub created: String,
    pub updated: String,
    /// When each phase was last entered.
    pub timestamps: BTreeMap<Phase, String>,
    pub distribution: String,
    /// The main containerd config.
    pub config: PathBuf,
    /// The file holding warden's entry (the main config or a drop-in).
    pub target: PathBuf,
    pub install_dir: PathBuf,
    pub restart_unit: Option<String>,
    /// containerd's socket on the node, for `verify` and `uninstall`.
    #[serde(default)]
    pub containerd_socket: Option<PathBuf>,
    pub binary: Option<BinaryRecord>,
    pub files: Vec<FileRecord>,
    /// Directories warden created (outermost first), removed on uninstall when empty.
    pub dirs_created: Vec<PathBuf>,
    /// The config changed on disk and containerd has not been restarted since.
    pub restart_pending: bool,
    pub last_restart: Option<RestartRecord>,
    pub verification: Option<Verification>,
    pub attempt: Option<Attempt>,
    pub last_error: Option<String>,
}

impl State {
    /// A new state, in phase `planned`.
    pub fn new(
        distribution: &str,
        config: &Path,
        target: &Path,
        install_dir: &Path,
        restart_unit: Option<String>,
    ) -> State {
        let now = warden_audit::now_rfc3339();
        State {
            format: FORMAT,
            phase: Phase::Planned,
            created: now.clone(),
            updated: now.clone(),
            timestamps: BTreeMap::from([(Phase::Planned, now)]),
            distribution: distribution.to_owned(),
            config: config.to_path_buf(),
            target: target.to_path_buf(),
            install_dir: install_dir.to_path_buf(),
            restart_unit,
            containerd_socket: None,
            binary: None,
            files: Vec::new(),
            dirs_created: Vec::new(),
            restart_pending: false,
            last_restart: None,
            verification: None,
            attempt: None,
            last_error: None,
        }
    }

    /// Moves to `phase`, stamping the time.
    pub fn enter(&mut self, phase: Phase) {
        let now = warden_audit::now_rfc3339();
        self.phase = phase;
        self.timestamps.insert(phase, now.clone());
        self.updated = now;
    }

    /// The record of the config file at `path`.
    pub fn file(&self, path: &Path) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Whether nothing warden made is recorded any more.
    pub fn is_empty(&self) -> bool {
        self.binary.is_none() && self.files.is_empty() && self.dirs_created.is_empty()
    }

    /// Every backup a record refers to.
    fn backups(&self) -> Vec<&str> {
        let originals = self
            .files
            .iter()
            .map(|f| &f.original)
            .chain(self.binary.iter().map(|b| &b.original))
            .chain(
                self.attempt
                    .iter()
                    .flat_map(|a| a.entries.iter().map(|e| &e.before)),
            );
        originals
            .filter_map(|original| match original {
                Original::Saved { backup, .. } => Some(backup.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// The paths a run manages: what a state may name. Node paths.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The install dir of this run.
    pub install_dir: PathBuf,
    /// The shim in it.
    pub binary: PathBuf,
    /// The config files warden may write: the main config and the target (the main file
    /// or warden's drop-in) that detection found.
    pub config_files: Vec<PathBuf>,
}

impl Scope {
    fn describe(&self) -> String {
        let mut parts = vec![format!("the shim {}", self.binary.display())];
        parts.extend(self.config_files.iter().map(|p| p.display().to_string()));
        parts.join(", ")
    }

    /// Whether `dir` is one warden may have created: the install dir or a config file's
    /// directory, or one of their parents (never `/`).
    fn may_have_created(&self, dir: &Path) -> bool {
        let made_for = |leaf: &Path| leaf.ancestors().any(|a| a == dir);
        dir != Path::new("/")
            && (made_for(&self.install_dir)
                || self
                    .config_files
                    .iter()
                    .filter_map(|f| f.parent())
                    .any(made_for))
    }
}

/// An absolute path without `.` or `..`: `starts_with` and equality then mean what they say.
fn is_plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// A backup name as warden writes it: `backups/<the 64 hex digits of digest>`.
pub fn is_backup_name(backup: &str, digest: &str) -> bool {
    let Some(hex) = backup
        .strip_prefix(BACKUP_DIR)
        .and_then(|b| b.strip_prefix('/'))
    else {
        return false;
    };
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && digest.strip_prefix(warden_common::digest::PREFIX) == Some(hex)
}

impl State {
    /// Checks that every path the state names is one this run manages, and every backup a
    /// name inside the state dir: a state someone crafted cannot make warden remove,
    /// restore or copy anything else. Returns the first field at fault.
    pub fn check_paths(&self, scope: &Scope) -> Result<(), (String, String, String)> {
        let outside = |field: String, path: &Path, reason: &str| {
            Err((field, path.display().to_string(), reason.to_owned()))
        };
        let config = |field: String, path: &Path| {
            if is_plain_absolute(path) && scope.config_files.iter().any(|f| f == path) {
                Ok(())
            } else {
                outside(field, path, "not a config file warden manages on this node")
            }
        };
        let binary = |field: String, path: &Path| {
            if is_plain_absolute(path) && path == scope.binary {
                Ok(())
            } else {
                outside(field, path, "not the shim in this run's install dir")
            }
        };
        let dir = |field: String, path: &Path| {
            if is_plain_absolute(path) && scope.may_have_created(path) {
                Ok(())
            } else {
                outside(
                    field,
                    path,
                    "not the install dir, a config dir, or one of their parents",
                )
            }
        };
        let original = |field: String, original: &Original| match original {
            Original::Saved { digest, backup, .. } if !is_backup_name(backup, digest) => Err((
                field,
                backup.clone(),
                format!("a backup must be `{BACKUP_DIR}/<its sha256 hex>` inside the state dir"),
            )),
            _ => Ok(()),
        };
        if self.install_dir != scope.install_dir {
            outside(
                "install_dir".into(),
                &self.install_dir,
                "not this run's install dir (pass the --install-dir warden was installed with)",
            )?;
        }
        if let Some(record) = &self.binary {
            binary("binary.path".into(), &record.path)?;
            original("binary.original.backup".into(), &record.original)?;
        }
        for (i, record) in self.files.iter().enumerate() {
            config(format!("files[{i}].path"), &record.path)?;
            original(format!("files[{i}].original.backup"), &record.original)?;
        }
        for (i, d) in self.dirs_created.iter().enumerate() {
            dir(format!("dirs_created[{i}]"), d)?;
        }
        if let Some(attempt) = &self.attempt {
            for (i, entry) in attempt.entries.iter().enumerate() {
                let field = format!("attempt.entries[{i}].path");
                if entry.binary {
                    binary(field, &entry.path)?;
                } else {
                    config(field, &entry.path)?;
                }
                original(format!("attempt.entries[{i}].before.backup"), &entry.before)?;
            }
            for (i, d) in attempt.dirs_created.iter().enumerate() {
                dir(format!("attempt.dirs_created[{i}]"), d)?;
            }
        }
        Ok(())
    }
}

/// Why the state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "{}: not a warden state file ({reason}); it records what warden changed on this \
         node, so warden will not guess: inspect it, then move it aside to start afresh",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{}: state format {found} is newer than this warden understands ({FORMAT}): use the \
         warden that wrote it",
        path.display()
    )]
    Newer { path: PathBuf, found: u32 },
    #[error(
        "backup {} does not hold the bytes recorded ({expected}); refusing to restore it",
        path.display()
    )]
    BadBackup { path: PathBuf, expected: String },
    #[error(
        "{}: `{field}` is {value}: {reason}; warden manages only {scope} and its state dir, \
         so it acts on nothing this state names: inspect the state (was it edited?), then \
         move it aside",
        path.display()
    )]
    Outside {
        path: PathBuf,
        field: String,
        value: String,
        reason: String,
        scope: String,
    },
    #[error(transparent)]
    Input(#[from] InputError),
}

/// The state dir, as a path on the installer's file system.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>) -> StateStore {
        StateStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn backup_dir(&self) -> PathBuf {
        self.dir.join(BACKUP_DIR)
    }

    /// The state file's bytes, if there is one: a regular file (never a symlink) of at
    /// most [`STATE_CAP`] bytes.
    pub fn read_raw(&self) -> Result<Option<Vec<u8>>, StateError> {
        Ok(read_capped(
            "state file",
            &self.state_path(),
            STATE_CAP,
            Links::Refuse,
        )?)
    }

    /// Checks every path `state` names against `scope` ([`State::check_paths`]).
    pub fn validate(&self, state: &State, scope: &Scope) -> Result<(), StateError> {
        state
            .check_paths(scope)
            .map_err(|(field, value, reason)| StateError::Outside {
                path: self.state_path(),
                field,
                value,
                reason,
                scope: scope.describe(),
            })
    }

    /// The state, if there is one.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        match self.read_raw()? {
            None => Ok(None),
            Some(bytes) => self.parse(&bytes).map(Some),
        }
    }

    fn parse(&self, bytes: &[u8]) -> Result<State, StateError> {
        let path = self.state_path();
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if let Some(found) = value.get("format").and_then(serde_json::Value::as_u64)
            && found > u64::from(FORMAT)
        {
            return Err(StateError::Newer {
                path,
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
        serde_json::from_value(value).map_err(|e| StateError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Creates the state dir (mode 0755, parents included); returns the directories made.
    pub fn create_dir(&self) -> Result<Vec<PathBuf>, FsError> {
        durable::create_dirs(&self.dir)
    }

    /// Writes the state atomically (mode 0600). `hook` runs before the rename.
    pub fn save(&self, state: &State) -> Result<(), FsError> {
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| FsError::Io {
            path: self.state_path(),
            op: "encode",
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        durable::write_atomic(&self.state_path(), &bytes, FileMode::new(0o600), &|| {})
    }

    /// Puts back the state file's earlier bytes (`None`: there was none).
    pub fn restore_raw(&self, bytes: Option<&[u8]>) -> Result<(), FsError> {
        match bytes {
            Some(bytes) => {
                durable::write_atomic(&self.state_path(), bytes, FileMode::new(0o600), &|| {})
            }
            None => durable::remove_durable(&self.state_path()).map(|_| ()),
        }
    }

    /// Saves `bytes` as a backup; returns its record. Saving the same bytes twice is a
    /// no-op.
    pub fn save_backup(&self, bytes: &[u8]) -> Result<Original, FsError> {
        let digest = Digest::of(bytes).to_string();
        let (backup, path) = self.backup_name(&digest);
        if digest::of_file(&path).ok().flatten().as_deref() != Some(digest.as_str()) {
            durable::create_dirs(&self.backup_dir())?;
            durable::write_atomic(&path, bytes, FileMode::new(0o600), &|| {})?;
        }
        Ok(Original::Saved {
            digest,
            backup,
            meta: None,
        })
    }

    /// Saves a copy of the file at `source` (whose digest is `digest`) as a backup.
    pub fn save_backup_file(&self, source: &Path, digest: &str) -> Result<Original, FsError> {
        let (backup, path) = self.backup_name(digest);
        if digest::of_file(&path).ok().flatten().as_deref() != Some(digest) {
            durable::create_dirs(&self.backup_dir())?;
            durable::copy_atomic(source, &path, digest, FileMode::new(0o600), &|| {})?;
        }
        Ok(Original::Saved {
            digest: digest.to_owned(),
            backup,
            meta: None,
        })
    }

    /// The host path of a backup named in a record.
    pub fn backup_path(&self, backup: &str) -> PathBuf {
        self.dir.join(backup)
    }

    /// The bytes of a saved original, checked against its digest. Only a name warden gives
    /// a backup is read (`backups/<hex>` in the state dir), never through a symlink.
    pub fn read_backup(&self, digest: &str, backup: &str) -> Result<Vec<u8>, StateError> {
        let path = self.backup_path(backup);
        if !is_backup_name(backup, digest) {
            return Err(StateError::Outside {
                path: self.state_path(),
                field: "backup".to_owned(),
                value: backup.to_owned(),
                reason: format!(
                    "a backup must be `{BACKUP_DIR}/<its sha256 hex>` inside the state dir"
                ),
                scope: "its backups".to_owned(),
            });
        }
        let mut file = open_regular("backup", &path, Links::Refuse)?
            .ok_or_else(|| FsError::new(&path, "read", io::Error::from(io::ErrorKind::NotFound)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| FsError::new(&path, "read", e))?;
        if Digest::of(&bytes).to_string() != digest {
            return Err(StateError::BadBackup {
                path,
                expected: digest.to_owned(),
            });
        }
        Ok(bytes)
    }

    /// Removes the backups no record of `state` refers to (all of them for `None`).
    pub fn prune_backups(&self, state: Option<&State>) -> Result<(), FsError> {
        let keep: Vec<PathBuf> = state
            .map(|s| s.backups().iter().map(|b| self.backup_path(b)).collect())
            .unwrap_or_default();
        let dir = self.backup_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(FsError::new(&dir, "list", e)),
        };
        let mut removed = false;
        for entry in entries.flatten() {
            let path = entry.path();
            if !keep.contains(&path) {
                fs::remove_file(&path).map_err(|e| FsError::new(&path, "remove", e))?;
                removed = true;
            }
        }
        if removed {
            durable::sync_dir(&dir)?;
        }
        if keep.is_empty() {
            durable::remove_dir_if_empty(&dir)?;
        }
        Ok(())
    }

    /// Removes the state file and every backup (the lock file stays: another run may be
    /// waiting on it).
    pub fn remove(&self) -> Result<(), FsError> {
        durable::remove_durable(&self.state_path())?;
        self.prune_backups(None)
    }

    fn backup_name(&self, digest: &str) -> (String, PathBuf) {
        let hex = digest
            .strip_prefix(warden_common::digest::PREFIX)
            .unwrap_or(digest);
        let backup = format!("{BACKUP_DIR}/{hex}");
        let path = self.dir.join(&backup);
        (backup, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(
            "containerd",
            Path::new("/etc/containerd/config.toml"),
            Path::new("/etc/containerd/config.toml"),
            Path::new("/opt/warden/bin"),
            Some("containerd".into()),
        )
    }

    #[test]
    fn round_trip_with_phase_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state"));
        assert!(store.load().unwrap().is_none());
        store.create_dir().unwrap();
        let mut s = state();
        s.enter(Phase::BinaryInstalled);
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), Some(s.clone()));
        let text = fs::read_to_string(store.state_path()).unwrap();
        assert!(text.contains("\"phase\": \"binary-installed\""), "{text}");
        assert!(text.contains("\"planned\":"), "{text}");
    }

    #[test]
    fn corrupt_and_newer_states_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        fs::write(store.state_path(), "{ half").unwrap();
        assert!(matches!(
            store.load().unwrap_err(),
            StateError::Corrupt { .. }
        ));
        fs::write(store.state_path(), "{\"format\": 99}").unwrap();
        assert!(matches!(
            store.load().unwrap_err(),
            StateError::Newer { found: 99, .. }
        ));
    }

    #[test]
    fn backups_are_content_addressed_checked_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let original = store.save_backup(b"original").unwrap();
        assert_eq!(store.save_backup(b"original").unwrap(), original);
        let Original::Saved { digest, backup, .. } = &original else {
            panic!("{original:?}")
        };
        assert_eq!(store.read_backup(digest, backup).unwrap(), b"original");
        fs::write(store.backup_path(backup), b"tampered").unwrap();
        assert!(matches!(
            store.read_backup(digest, backup).unwrap_err(),
            StateError::BadBackup { .. }
        ));

        let kept = store.save_backup(b"kept").unwrap();
        let mut s = state();
        s.files.push(FileRecord {
            path: "/etc/containerd/config.toml".into(),
            original: kept.clone(),
            digest_after: Digest::of(b"after").to_string(),
            written_at: String::new(),
        });
        store.prune_backups(Some(&s)).unwrap();
        assert!(!store.backup_path(backup).exists());
        let Original::Saved {
            backup: kept_name, ..
        } = &kept
        else {
            panic!()
        };
        assert!(store.backup_path(kept_name).exists());
        store.remove().unwrap();
        assert!(!dir.path().join(BACKUP_DIR).exists());
    }

    fn scope() -> Scope {
        Scope {
            install_dir: "/opt/warden/bin".into(),
            binary: "/opt/warden/bin/containerd-shim-warden-v1".into(),
            config_files: vec![
                "/etc/containerd/config.toml".into(),
                "/etc/containerd/conf.d/warden.toml".into(),
            ],
        }
    }

    fn saved(bytes: &[u8], backup: Option<&str>) -> Original {
        let digest = Digest::of(bytes).to_string();
        let backup = backup.map_or_else(
            || {
                format!(
                    "{BACKUP_DIR}/{}",
                    &digest[warden_common::digest::PREFIX.len()..]
                )
            },
            str::to_owned,
        );
        Original::Saved {
            digest,
            backup,
            meta: None,
        }
    }

    fn installed() -> State {
        let mut s = state();
        s.binary = Some(BinaryRecord {
            path: "/opt/warden/bin/containerd-shim-warden-v1".into(),
            digest: Digest::of(b"shim").to_string(),
            original: saved(b"old shim", None),
            installed_at: String::new(),
        });
        s.files.push(FileRecord {
            path: "/etc/containerd/conf.d/warden.toml".into(),
            original: Original::Absent,
            digest_after: Digest::of(b"x").to_string(),
            written_at: String::new(),
        });
        s.dirs_created = vec![
            "/opt/warden".into(),
            "/opt/warden/bin".into(),
            "/etc/containerd/conf.d".into(),
        ];
        s
    }

    #[test]
    fn a_state_naming_only_managed_paths_passes() {
        assert_eq!(installed().check_paths(&scope()), Ok(()));
        assert_eq!(state().check_paths(&scope()), Ok(()));
    }

    #[test]
    fn paths_outside_the_managed_dirs_are_refused_by_field() {
        let field = |s: &State| s.check_paths(&scope()).unwrap_err().0;
        let mut s = installed();
        s.files[0].path = "/etc/shadow".into();
        assert_eq!(field(&s), "files[0].path");
        let mut s = installed();
        s.files[0].path = "/etc/containerd/conf.d/../../shadow".into();
        assert_eq!(field(&s), "files[0].path");
        let mut s = installed();
        s.binary.as_mut().unwrap().path = "/usr/bin/containerd".into();
        assert_eq!(field(&s), "binary.path");
        let mut s = installed();
        s.install_dir = "/usr/bin".into();
        assert_eq!(field(&s), "install_dir");
        let mut s = installed();
        s.dirs_created.push("/".into());
        assert_eq!(field(&s), "dirs_created[3]");
        let mut s = installed();
        s.dirs_created.push("/var/lib/kubelet".into());
        assert_eq!(field(&s), "dirs_created[3]");
        let mut s = installed();
        let mut attempt = Attempt::new();
        attempt.wrote(
            Path::new("/etc/passwd"),
            Original::Absent,
            "sha256:00",
            false,
        );
        s.attempt = Some(attempt);
        assert_eq!(field(&s), "attempt.entries[0].path");
    }

    #[test]
    fn backups_must_be_named_by_their_digest_inside_the_state_dir() {
        let field = |original: Original| {
            let mut s = installed();
            s.files[0].original = original;
            s.check_paths(&scope()).map_err(|e| e.0)
        };
        assert_eq!(field(saved(b"a", None)), Ok(()));
        for bad in [
            "/etc/shadow",
            "backups/../../../etc/shadow",
            "backups/0000000000000000000000000000000000000000000000000000000000000000",
            "shadow",
        ] {
            assert_eq!(
                field(saved(b"a", Some(bad))),
                Err("files[0].original.backup".to_owned()),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let err = store
            .read_backup(&Digest::of(b"a").to_string(), "/etc/shadow")
            .unwrap_err();
        assert!(matches!(err, StateError::Outside { .. }), "{err}");
    }

    #[test]
    fn originals_without_mode_and_owner_still_load_and_keep_the_current_ones() {
        let old: Original = serde_json::from_str(
            r#"{"kind": "saved", "digest": "sha256:00", "backup": "backups/00"}"#,
        )
        .unwrap();
        assert!(matches!(old, Original::Saved { meta: None, .. }));
        let current = FileMode {
            mode: 0o600,
            owner: Some((5, 6)),
        };
        assert_eq!(old.restore_mode(Some(current), 0o644), current);
        assert_eq!(old.restore_mode(None, 0o644), FileMode::new(0o644));
        let meta = FileMeta {
            mode: 0o640,
            uid: 7,
            gid: 8,
        };
        let new = old.with_meta(Some(meta));
        assert_eq!(new.restore_mode(Some(current), 0o644), meta.file_mode());
        let text = serde_json::to_string(&new).unwrap();
        assert!(
            text.contains(r#""meta":{"mode":416,"uid":7,"gid":8}"#),
            "{text}"
        );
    }

    #[test]
    fn a_state_file_that_is_not_a_regular_file_or_too_big_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let file = fs::File::create(store.state_path()).unwrap();
        file.set_len(STATE_CAP + 1).unwrap();
        assert!(matches!(
            store.load().unwrap_err(),
            StateError::Input(InputError::TooLarge { .. })
        ));
        fs::remove_file(store.state_path()).unwrap();
        fs::create_dir(store.state_path()).unwrap();
        assert!(matches!(
            store.load().unwrap_err(),
            StateError::Input(InputError::NotRegular { .. })
        ));
    }
}
