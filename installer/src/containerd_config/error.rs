//! Every way the config logic refuses, as one typed error.
//!
//! Each variant names the file (or the root that was searched) and says what is wrong and,
//! where there is one, what the user can do about it: the installer prints these messages as
//! they are and changes nothing on disk when it gets one.

use std::path::PathBuf;

/// Why reading, detecting or editing containerd's config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read (other than "not found", which has its own variant).
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The path is a FIFO, a device or a directory, or the file is over its size cap.
    #[error(transparent)]
    Input(#[from] warden_common::input_file::InputError),

    /// The config file the layout needs does not exist.
    #[error("{}: containerd config not found{}", path.display(), hint_suffix(hint))]
    NotFound { path: PathBuf, hint: String },

    /// The file holds NUL bytes or is not UTF-8: not a TOML file at all.
    #[error("{}: binary file ({reason}), not a containerd config", path.display())]
    Binary { path: PathBuf, reason: String },

    /// The file has no settings. containerd would run on its built-in defaults, whose
    /// version and plugin names depend on the containerd release: refuse rather than guess.
    #[error(
        "{}: empty config (no settings): containerd runs on its built-in defaults and warden \
         will not guess which; write them out first with `containerd config default > {}` \
         and run again",
        path.display(),
        path.display()
    )]
    Empty { path: PathBuf },

    /// The TOML does not parse.
    #[error("{}: invalid TOML at line {line}, column {column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A table or key is defined twice (TOML forbids it, containerd would refuse to start).
    #[error("{}: duplicate table or key at line {line}, column {column}: {message}", path.display())]
    Duplicate {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A key has the wrong TOML type (e.g. `plugins` is a string, `runtimes` an array).
    #[error("{}: `{key}` must be {expected}, found {found}", path.display())]
    WrongType {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    /// Config version 1 (or no `version` key): plugin names differ and warden never writes it.
    #[error(
        "{}: config version 1 is not supported: migrate with `containerd config migrate`",
        path.display()
    )]
    VersionOne { path: PathBuf },

    /// A `version` newer than any containerd warden knows.
    #[error(
        "{}: config version {version} is not known to warden (it knows 2, 3 and 4)",
        path.display()
    )]
    UnknownVersion { path: PathBuf, version: i64 },

    /// No known layout was found under the root.
    #[error(
        "unknown node layout under {}: no containerd config at any of {}; pass --config FILE \
         (and --distribution NAME) if containerd is configured elsewhere",
        root.display(),
        list_paths(looked_at)
    )]
    UnknownLayout {
        root: PathBuf,
        looked_at: Vec<PathBuf>,
    },

    /// Several distributions' configs exist and nothing says which containerd runs the pods.
    #[error(
        "several layouts found under {}: {}; pass --distribution NAME to choose",
        root.display(),
        found.join(", ")
    )]
    Ambiguous { root: PathBuf, found: Vec<String> },

    /// `--distribution` (or `--config`) says one thing, the files say another.
    #[error("asked for distribution `{asked}`, but {found}")]
    DistributionMismatch { asked: String, found: String },

    /// An unknown `--distribution` name.
    #[error(
        "unknown distribution `{name}`: expected one of containerd, k3s, rke2, k0s, microk8s, \
         kind, eks"
    )]
    UnknownDistribution { name: String },

    /// A file that a distribution renders from a template (or rewrites itself): editing it
    /// is lost on the next restart, and copying it into a template freezes the
    /// distribution's defaults forever.
    #[error("{}: rendered by {distribution}, warden will not edit it: {hint}", path.display())]
    Rendered {
        path: PathBuf,
        distribution: String,
        hint: String,
    },

    /// The decision between a drop-in and the main file depends on the containerd version,
    /// and it could not be told from the config.
    #[error("{}: {reason}; pass the containerd version (`containerd --version`)", path.display())]
    ContainerdVersionNeeded { path: PathBuf, reason: String },

    /// The containerd version given contradicts the config (containerd 1.x cannot read
    /// version 3 or 4).
    #[error(
        "{}: config version {config_version} needs containerd 2.x, but containerd {major}.x was given",
        path.display()
    )]
    ContainerdVersionConflict {
        path: PathBuf,
        config_version: u32,
        major: u32,
    },

    /// `containerd --version` printed something without a version number.
    #[error("cannot find a version in `containerd --version` output: {output:?}")]
    VersionOutput { output: String },

    /// On containerd 1.x an imported file that defines the CRI plugin replaces the main
    /// file's CRI section whole, so an entry added to the main file would be ignored.
    #[error(
        "{}: containerd 1.x takes the whole `{plugin}` section from the imported {}, so a \
         runtime added here would be ignored; move that section into {} or upgrade to \
         containerd 2",
        path.display(),
        import.display(),
        path.display()
    )]
    ShadowedByImport {
        path: PathBuf,
        import: PathBuf,
        plugin: String,
    },

    /// The config disables containerd's CRI plugin (Docker's packaged config does): the
    /// kubelet does not use this containerd, and a runtime registered here is never used.
    #[error(
        "{}: containerd's CRI plugin is disabled (`disabled_plugins` lists \"{plugin}\"), so \
         Kubernetes does not run pods through this containerd; point --config at the config of \
         the containerd the kubelet uses, or remove \"{plugin}\" from `disabled_plugins` if \
         this containerd should serve Kubernetes",
        path.display()
    )]
    CriDisabled { path: PathBuf, plugin: String },

    /// The install dir must be absolute: containerd resolves `runtime_path` as given.
    #[error("install dir {} must be an absolute, UTF-8 path", path.display())]
    InstallDir { path: PathBuf },
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(": {hint}")
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
