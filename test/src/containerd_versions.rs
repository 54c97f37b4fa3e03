//! Which containerd the harness starts: the system's (on `PATH`), or a newer release from
//! Debian's newer suites, side by side with the system's and never installed over it.
//!
//! `WARDEN_TEST_CONTAINERD` chooses ([`Version::from_env`]):
//!
//! | value | binaries |
//! |---|---|
//! | unset, empty or `1.6` | `containerd` and `ctr` on `PATH` (Debian bookworm: 1.6.20) |
//! | `1.7` | Debian trixie's `containerd` package (1.7.x) |
//! | `2.1` | Debian sid's `containerd` package (2.1.x) |
//! | a directory | its `containerd` and `ctr` (e.g. a release tarball's `bin/`) |
//!
//! The Debian packages are fetched once and kept ([`bin_dir`], [`cache_dir`]): into
//! `$WARDEN_CONTAINERD_CACHE` when that variable is set (the directory of the one version
//! chosen), else into `<target dir>/containerd-versions/<version>`. The cache is laid out as
//!
//! ```text
//! containerd-versions/
//!   1.7.lock            flock(2)ed while one process checks or fills 1.7/
//!   1.7/                the package as `dpkg-deb -x` extracts it, renamed into place whole
//!     usr/bin/          containerd, ctr, containerd-shim-runc-v2, ...
//!     warden-fetched    what was fetched: suite, package file, `containerd --version`
//!   2.1.lock
//!   2.1/ ...
//! ```
//!
//! (with `$WARDEN_CONTAINERD_CACHE=/c/v`: `/c/v.lock` and `/c/v/`). A cache that holds another
//! release than the one asked for (`WARDEN_CONTAINERD_CACHE` left pointing at 1.7's with
//! `WARDEN_TEST_CONTAINERD=2.1`) is an error, not used.
//!
//! A fetch runs `apt-get update` and `apt-get download containerd` with a private sources list
//! (the suite on the mirror, and with the keyring, of the system's own apt sources) and private
//! lists and cache, in a work dir next to the cache that is removed afterwards; nothing of the
//! system's apt state or packages changes. Test processes that start at once wait for each
//! other on the lock file; the extracted tree only appears, by a rename, once it is complete and
//! its `containerd --version` has answered, so a reader never sees half of it.
//!
//! runc is not part of these packages: every version uses the system's `runc` (sid's own runc
//! needs a newer glibc than bookworm's). The version's directory is put first on containerd's
//! `PATH` (after the shim's), so that containerd starts its own `containerd-shim-runc-v2`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::util::{self, Error};

/// The environment variable that chooses the version.
pub const VERSION_ENV: &str = "WARDEN_TEST_CONTAINERD";
/// The environment variable that names the chosen version's cache directory (default
/// `<target dir>/containerd-versions/<version>`).
pub const CACHE_ENV: &str = "WARDEN_CONTAINERD_CACHE";
/// The Debian package that holds containerd and ctr.
pub const PACKAGE: &str = "containerd";
/// The file in a version's cache directory that records what was fetched.
pub const FETCHED_FILE: &str = "warden-fetched";
/// Where the system's apt sources live.
pub const APT_SOURCES: &str = "/etc/apt/sources.list";
/// Where more of the system's apt sources live.
pub const APT_SOURCES_DIR: &str = "/etc/apt/sources.list.d";
/// The keyring used when the system's Debian source names none.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// How long one `apt-get` or `dpkg-deb` may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(600);

/// A containerd release the harness can start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// The system's `containerd` and `ctr`, found on `PATH` (Debian bookworm's 1.6.20).
    V1_6,
    /// containerd 1.7 from Debian trixie.
    V1_7,
    /// containerd 2.1 from Debian sid.
    V2_1,
    /// The `containerd` and `ctr` in this directory.
    Path(PathBuf),
}

impl Version {
    /// The version `WARDEN_TEST_CONTAINERD` chooses ([`Version::parse`]); [`Version::V1_6`]
    /// when it is unset or empty.
    pub fn from_env() -> Result<Version, Error> {
        match std::env::var_os(VERSION_ENV) {
            None => Ok(Version::V1_6),
            Some(value) => match value.to_str() {
                Some(text) => Version::parse(text),
                None => Err(Error::new(format!(
                    "{VERSION_ENV}={value:?} is not valid UTF-8"
                ))),
            },
        }
    }

    /// `1.6`, `1.7`, `2.1` (a leading `v` is allowed), or a directory: anything with a `/`.
    /// Empty means [`Version::V1_6`].
    pub fn parse(text: &str) -> Result<Version, Error> {
        let text = text.trim();
        if text.contains('/') {
            return Ok(Version::Path(PathBuf::from(text)));
        }
        match text.strip_prefix('v').unwrap_or(text) {
            "" | "1.6" => Ok(Version::V1_6),
            "1.7" => Ok(Version::V1_7),
            "2.1" => Ok(Version::V2_1),
            other => Err(Error::new(format!(
                "{VERSION_ENV}={other:?}: expected 1.6 (the system's containerd on PATH), 1.7 \
                 (Debian trixie's), 2.1 (Debian sid's) or a directory holding `containerd` and \
                 `ctr`"
            ))),
        }
    }

    /// What the cache calls it and messages show: `1.6`, `1.7`, `2.1` or the directory.
    pub fn label(&self) -> String {
        match self {
            Version::V1_6 => "1.6".into(),
            Version::V1_7 => "1.7".into(),
            Version::V2_1 => "2.1".into(),
            Version::Path(dir) => dir.display().to_string(),
        }
    }

    /// The Debian suite whose `containerd` package is this version, for those fetched.
    pub fn suite(&self) -> Option<&'static str> {
        match self {
            Version::V1_7 => Some("trixie"),
            Version::V2_1 => Some("sid"),
            Version::V1_6 | Version::Path(_) => None,
        }
    }

    /// The `(major, minor)` a fetched package must have: sid moves on, and a cache called
    /// `2.1` must not silently hold another release.
    fn expected_release(&self) -> Option<(u32, u32)> {
        match self {
            Version::V1_7 => Some((1, 7)),
            Version::V2_1 => Some((2, 1)),
            Version::V1_6 | Version::Path(_) => None,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// A containerd release number, from `containerd --version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Release {
    /// The release in `containerd --version` output, whatever the packager put around it:
    /// `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3` (Debian),
    /// `containerd github.com/containerd/containerd/v2 v2.1.9 <commit>` (upstream): the first
    /// word after the program's name that starts with `N.N` (optionally `v`).
    pub fn parse(output: &str) -> Option<Release> {
        output.split_whitespace().skip(1).find_map(|word| {
            let word = word.strip_prefix('v').unwrap_or(word);
            let mut numbers = word.split(['.', '-', '~', '+']).map(|part| {
                (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse::<u32>().ok())
                    .flatten()
            });
            let major = numbers.next()??;
            let minor = numbers.next()??;
            let patch = numbers.next().flatten().unwrap_or(0);
            Some(Release {
                major,
                minor,
                patch,
            })
        })
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The chosen version's programs, and what they say they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// What was asked for.
    pub version: Version,
    /// The directory [`bin_dir`] returned.
    pub dir: PathBuf,
    /// The `containerd` program.
    pub containerd: PathBuf,
    /// The `ctr` program.
    pub ctr: PathBuf,
    /// Put first on containerd's `PATH` (after the shim's), so that it starts its own runc
    /// shim: the version's directory, `None` for the system's containerd.
    pub path_prefix: Option<PathBuf>,
    /// What `containerd --version` printed, trimmed.
    pub version_output: String,
    /// The release in it.
    pub release: Release,
}

impl Binaries {
    /// Finds (fetching if need be) the programs of `version` and asks containerd its version.
    pub fn locate(version: &Version) -> Result<Binaries, Error> {
        let dir = bin_dir(version)?;
        let (containerd, ctr) = match version {
            // `ctr` may sit in another PATH directory than containerd.
            Version::V1_6 => (
                dir.join("containerd"),
                crate::find_in_path("ctr").ok_or_else(|| {
                    Error::new("`ctr` is not on PATH (apt-get install containerd)")
                })?,
            ),
            _ => (dir.join("containerd"), dir.join("ctr")),
        };
        let version_output = version_output(&containerd)?;
        let release = Release::parse(&version_output).ok_or_else(|| {
            Error::new(format!(
                "cannot find a release number in `{} --version`: {version_output}",
                containerd.display()
            ))
        })?;
        if let Some((major, minor)) = version.expected_release()
            && (release.major, release.minor) != (major, minor)
        {
            return Err(Error::new(format!(
                "{} is containerd {release}, not {version} ({version_output}); is {CACHE_ENV} \
                 the cache of another version?",
                containerd.display()
            )));
        }
        let path_prefix = (!matches!(version, Version::V1_6)).then(|| dir.clone());
        Ok(Binaries {
            version: version.clone(),
            dir,
            containerd,
            ctr,
            path_prefix,
            version_output,
            release,
        })
    }

    /// The binaries on `PATH`, without running them: for values built without containerd.
    #[cfg(test)]
    pub(crate) fn on_path_unchecked() -> Binaries {
        Binaries {
            version: Version::V1_6,
            dir: PathBuf::from("/usr/bin"),
            containerd: PathBuf::from("containerd"),
            ctr: PathBuf::from("ctr"),
            path_prefix: None,
            version_output: String::new(),
            release: Release {
                major: 1,
                minor: 6,
                patch: 0,
            },
        }
    }
}

/// The binaries `WARDEN_TEST_CONTAINERD` chooses, located (and fetched) once per process.
pub fn selected() -> Result<&'static Binaries, Error> {
    let version = Version::from_env()?;
    located(&version).map_err(|e| Error::new(format!("{e} (chosen by {VERSION_ENV})")))
}

/// The binaries of `version`, located (and fetched) once per process: the version a test
/// names itself, whatever `WARDEN_TEST_CONTAINERD` chooses for the others.
pub fn located(version: &Version) -> Result<&'static Binaries, Error> {
    type Located = Mutex<Vec<(Version, &'static Result<Binaries, Error>)>>;
    static LOCATED: OnceLock<Located> = OnceLock::new();
    // One lock for all versions: locating may fetch a package, which a concurrent test of
    // the same version must wait for rather than repeat; the cache's own file lock orders
    // other processes.
    let mut known = LOCATED
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let found = match known.iter().find(|(v, _)| v == version) {
        Some((_, found)) => *found,
        None => {
            let result = Binaries::locate(version)
                .map_err(|e| Error::new(format!("cannot provide containerd {version}: {e}")));
            let leaked: &'static Result<Binaries, Error> = Box::leak(Box::new(result));
            known.push((version.clone(), leaked));
            leaked
        }
    };
    found.as_ref().map_err(Clone::clone)
}

/// The directory holding `version`'s `containerd` and `ctr`: for [`Version::V1_6`] the
/// `PATH` directory of `containerd`, for [`Version::Path`] that directory (checked), for
/// the Debian ones the cache's `usr/bin`, fetched first when the cache does not hold it.
pub fn bin_dir(version: &Version) -> Result<PathBuf, Error> {
    match version {
        Version::V1_6 => {
            let containerd = crate::find_in_path("containerd").ok_or_else(|| {
                Error::new("`containerd` is not on PATH (apt-get install containerd)")
            })?;
            Ok(containerd
                .parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_path_buf))
        }
        Version::Path(dir) => {
            let missing: Vec<&str> = ["containerd", "ctr"]
                .into_iter()
                .filter(|program| !util::is_executable(&dir.join(program)))
                .collect();
            if missing.is_empty() {
                Ok(dir.clone())
            } else {
                Err(Error::new(format!(
                    "{} holds no executable {}",
                    dir.display(),
                    missing.join(" or ")
                )))
            }
        }
        Version::V1_7 | Version::V2_1 => {
            let version_dir = cache_dir(version);
            fetched(version, &version_dir)?;
            Ok(version_dir.join("usr/bin"))
        }
    }
}

/// Where `version`'s package is kept: `$WARDEN_CONTAINERD_CACHE` when `version` is the one
/// `WARDEN_TEST_CONTAINERD` chooses, else `<target dir>/containerd-versions/<version>`.
pub fn cache_dir(version: &Version) -> PathBuf {
    let chosen = Version::from_env().is_ok_and(|v| &v == version);
    match std::env::var_os(CACHE_ENV) {
        Some(dir) if chosen && !dir.is_empty() => PathBuf::from(dir),
        _ => crate::target_dir()
            .join("containerd-versions")
            .join(version.label()),
    }
}

/// Whether `version_dir` holds a whole extracted package.
fn complete(version_dir: &Path) -> bool {
    version_dir.join(FETCHED_FILE).is_file()
        && ["containerd", "ctr", "containerd-shim-runc-v2"]
            .iter()
            .all(|program| util::is_executable(&version_dir.join("usr/bin").join(program)))
}

/// Makes sure `version_dir` holds `version`'s package: fetches it under the version's lock
/// unless it is already there.
fn fetched(version: &Version, version_dir: &Path) -> Result<(), Error> {
    if complete(version_dir) {
        return Ok(());
    }
    let (Some(root), Some(name)) = (version_dir.parent(), version_dir.file_name()) else {
        return Err(Error::new(format!(
            "{} cannot be a cache directory: it has no parent or no name",
            version_dir.display()
        )));
    };
    let root = if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    };
    std::fs::create_dir_all(root)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", root.display())))?;
    let name = name.to_string_lossy();
    let label = version.label();
    let lock_path = root.join(format!("{name}.lock"));
    let lock_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| Error::new(format!("cannot open {}: {e}", lock_path.display())))?;
    let _held = warden_common::lock::Flock::exclusive(&lock_file)
        .map_err(|e| Error::new(format!("cannot lock {}: {e}", lock_path.display())))?;

    // Another process may have filled it while this one waited.
    if complete(version_dir) {
        return Ok(());
    }
    // Left by a process that died while it worked: no one else works on them, the lock is
    // ours.
    let partial_prefix = format!(".{name}.partial-");
    let work_prefix = format!(".{name}.work-");
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&partial_prefix) || name.starts_with(&work_prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    if version_dir.exists() {
        // Incomplete (someone removed a file from it): rebuilt.
        std::fs::remove_dir_all(version_dir).map_err(|e| {
            Error::new(format!(
                "{} is incomplete and cannot be removed: {e}",
                version_dir.display()
            ))
        })?;
    }

    let suite = version
        .suite()
        .ok_or_else(|| Error::new(format!("containerd {label} is not fetched from Debian")))?;
    let started = Instant::now();
    let tempdir = |prefix: &str| {
        tempfile::Builder::new()
            .prefix(prefix)
            .rand_bytes(6)
            .tempdir_in(root)
            .map_err(|e| {
                Error::new(format!(
                    "cannot create a temp dir in {}: {e}",
                    root.display()
                ))
            })
    };
    let work = tempdir(&work_prefix)?;
    let partial = tempdir(&partial_prefix)?;
    let deb = download(suite, work.path())?;
    extract(&deb, partial.path())?;

    // Checked before it is put in place: a package whose containerd does not run here, or
    // is not the release the cache is named after, must not be cached.
    let output = version_output(&partial.path().join("usr/bin/containerd"))?;
    let release = Release::parse(&output);
    if let Some(expected) = version.expected_release()
        && release.map(|r| (r.major, r.minor)) != Some(expected)
    {
        return Err(Error::new(format!(
            "Debian {suite}'s {PACKAGE} package ({}) is not containerd {label}: `containerd \
             --version` says {output:?}; the suite has moved on, update {} to another suite",
            file_name(&deb),
            file!()
        )));
    }
    let record = format!(
        "suite = {suite}\npackage = {}\nversion = {output}\nfetched_in_ms = {}\n",
        file_name(&deb),
        started.elapsed().as_millis()
    );
    let record_path = partial.path().join(FETCHED_FILE);
    std::fs::write(&record_path, record)
        .map_err(|e| Error::new(format!("cannot write {}: {e}", record_path.display())))?;
    if !complete(partial.path()) {
        return Err(Error::new(format!(
            "Debian {suite}'s {} holds no usr/bin/containerd, ctr and containerd-shim-runc-v2",
            file_name(&deb)
        )));
    }
    let partial = partial.keep();
    // A temp dir is private (0700); the cache is read by whoever runs the tests.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755));
    }
    std::fs::rename(&partial, version_dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&partial);
        Error::new(format!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            version_dir.display()
        ))
    })?;
    // The work dir (apt's lists and cache, the .deb) goes with `work`.
    drop(work);
    eprintln!(
        "warden-test: fetched containerd {label} ({}) from Debian {suite} into {} in {:.1?}",
        release.map(|r| r.to_string()).unwrap_or_default(),
        version_dir.display(),
        started.elapsed()
    );
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// What `containerd --version` prints (trimmed); an error when it does not run.
fn version_output(containerd: &Path) -> Result<String, Error> {
    let mut command = Command::new(containerd);
    command.arg("--version");
    let output = run_tool(&mut command, Duration::from_secs(30))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Runs `command`; an error with its output unless it exits 0 within `timeout`.
fn run_tool(command: &mut Command, timeout: Duration) -> Result<std::process::Output, Error> {
    let describe = util::describe(command);
    match util::output_with_timeout(command, timeout)? {
        Ok(output) if output.status.success() => Ok(output),
        Ok(output) => Err(Error::new(format!(
            "`{describe}` failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            output.status,
            util::tail(&String::from_utf8_lossy(&output.stdout), 30),
            util::tail(&String::from_utf8_lossy(&output.stderr), 30),
        ))),
        Err(timed_out) => Err(Error::new(format!(
            "`{describe}` did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            util::tail(&String::from_utf8_lossy(&timed_out.stdout), 30),
            util::tail(&String::from_utf8_lossy(&timed_out.stderr), 30),
        ))),
    }
}

/// Downloads `suite`'s containerd package into `work` with apt-get and a private sources
/// list, lists and cache; returns the `.deb`.
fn download(suite: &str, work: &Path) -> Result<PathBuf, Error> {
    let source = debian_source()?;
    let keyring = match &source.signed_by {
        SignedBy::File(path) => path.clone(),
        SignedBy::Inline(key) => {
            let path = work.join("archive-keyring.asc");
            std::fs::write(&path, key)
                .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))?;
            path
        }
    };
    let sources_list = work.join("sources.list");
    std::fs::write(
        &sources_list,
        format!(
            "deb [signed-by={}] {} {suite} main\n",
            keyring.display(),
            source.uri
        ),
    )
    .map_err(|e| Error::new(format!("cannot write {}: {e}", sources_list.display())))?;
    let lists = work.join("lists");
    let cache = work.join("cache");
    let downloads = work.join("download");
    for dir in [
        lists.join("partial"),
        cache.join("archives/partial"),
        downloads.clone(),
    ] {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
    }
    let apt_get = |action: &str| {
        let mut command = Command::new("apt-get");
        command.current_dir(&downloads).arg("-q");
        let mut options = vec![
            format!("Dir::Etc::sourcelist={}", sources_list.display()),
            "Dir::Etc::sourceparts=/dev/null".to_string(),
            format!("Dir::State::Lists={}", lists.display()),
            format!("Dir::Cache={}", cache.display()),
            // Only the Packages index is needed.
            "Acquire::Languages=none".to_string(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_string(),
        ];
        // apt drops to user _apt to download, who cannot write into a root-owned work dir.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            options.push("APT::Sandbox::User=root".to_string());
        }
        for option in options {
            command.arg("-o").arg(option);
        }
        command.arg(action);
        if action == "download" {
            command.arg(PACKAGE);
        }
        command
    };
    let context = |e: Error| {
        Error::new(format!(
            "fetching Debian {suite}'s {PACKAGE} from {} (the mirror of the system's Debian \
             source, {}; keyring {}) failed: {e}",
            source.uri,
            source.file.display(),
            keyring.display()
        ))
    };
    run_tool(&mut apt_get("update"), TOOL_TIMEOUT).map_err(context)?;
    run_tool(&mut apt_get("download"), TOOL_TIMEOUT).map_err(context)?;
    let debs: Vec<PathBuf> = std::fs::read_dir(&downloads)
        .map_err(|e| Error::new(format!("cannot list {}: {e}", downloads.display())))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = file_name(path);
            name.starts_with(&format!("{PACKAGE}_")) && name.ends_with(".deb")
        })
        .collect();
    match debs.as_slice() {
        [deb] => Ok(deb.clone()),
        _ => Err(context(Error::new(format!(
            "`apt-get download {PACKAGE}` left {} {PACKAGE}_*.deb files in {}",
            debs.len(),
            downloads.display()
        )))),
    }
}

/// `dpkg-deb -x DEB DIR`.
fn extract(deb: &Path, dir: &Path) -> Result<(), Error> {
    let mut command = Command::new("dpkg-deb");
    command.arg("-x").arg(deb).arg(dir);
    run_tool(&mut command, TOOL_TIMEOUT).map(drop)
}

/// How a source's archive signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SignedBy {
    /// A keyring file.
    File(PathBuf),
    /// An armored key written into the sources file (deb822 `Signed-By:` block).
    Inline(String),
}

/// The system's source of Debian's main archive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AptSource {
    uri: String,
    signed_by: SignedBy,
    /// The file that names it.
    file: PathBuf,
}

/// The mirror and keyring of the system's Debian source: the `deb` entry with component
/// `main` for the system's release (`VERSION_CODENAME` of /etc/os-release, e.g. `bookworm`;
/// not `bookworm-security` or `-updates`), from /etc/apt/sources.list and the `.list` and
/// `.sources` files of /etc/apt/sources.list.d.
fn debian_source() -> Result<AptSource, Error> {
    let codename = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("VERSION_CODENAME=")
                    .map(|value| value.trim().trim_matches('"').to_string())
            })
        })
        .filter(|codename| !codename.is_empty());
    let mut files = Vec::new();
    if Path::new(APT_SOURCES).is_file() {
        files.push(PathBuf::from(APT_SOURCES));
    }
    if let Ok(entries) = std::fs::read_dir(APT_SOURCES_DIR) {
        let mut more: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|ext| ext == "list" || ext == "sources")
            })
            .collect();
        more.sort();
        files.extend(more);
    }
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let entries = if file.extension().is_some_and(|ext| ext == "sources") {
            parse_deb822(&text)
        } else {
            parse_one_line(&text)
        };
        if let Some(entry) = entries
            .into_iter()
            .find(|entry| entry.is_debian_main(codename.as_deref()))
        {
            let signed_by = match entry.signed_by {
                Some(signed_by) => signed_by,
                None if Path::new(DEBIAN_KEYRING).is_file() => {
                    SignedBy::File(PathBuf::from(DEBIAN_KEYRING))
                }
                None => {
                    return Err(Error::new(format!(
                        "the Debian source in {} names no keyring (signed-by) and {DEBIAN_KEYRING} \
                         is missing (apt-get install debian-archive-keyring)",
                        file.display()
                    )));
                }
            };
            return Ok(AptSource {
                uri: entry.uri,
                signed_by,
                file: file.clone(),
            });
        }
    }
    Err(Error::new(format!(
        "no `deb` source with component main for Debian {} in {APT_SOURCES} or \
         {APT_SOURCES_DIR}/*.list|*.sources: the newer containerd releases are fetched from \
         the mirror the system's apt uses",
        codename
            .as_deref()
            .unwrap_or("(no VERSION_CODENAME in /etc/os-release)")
    )))
}

/// One URI of one apt source entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceEntry {
    types: Vec<String>,
    uri: String,
    suites: Vec<String>,
    components: Vec<String>,
    signed_by: Option<SignedBy>,
    enabled: bool,
}

impl SourceEntry {
    /// Whether it is the system release's main archive (not security, updates or backports,
    /// which have no newer suites on their mirror).
    fn is_debian_main(&self, codename: Option<&str>) -> bool {
        self.enabled
            && self.types.iter().any(|t| t == "deb")
            && self.components.iter().any(|c| c == "main")
            && self.suites.iter().any(|suite| match codename {
                Some(codename) => suite == codename,
                None => !suite.contains(['-', '/']),
            })
            && !self.uri.trim_end_matches('/').ends_with("-security")
    }
}

/// Entries of a deb822 `.sources` file: one per URI of each stanza.
fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        if fields.is_empty() {
            return;
        }
        let get = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let words = |name: &str| -> Vec<String> {
            get(name)
                .map(|value| value.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let signed_by = get("Signed-By").map(|value| {
            let value = value.trim();
            if value.contains('\n') || value.starts_with("-----BEGIN") {
                SignedBy::Inline(format!("{value}\n"))
            } else {
                SignedBy::File(PathBuf::from(value))
            }
        });
        let enabled = get("Enabled").is_none_or(|value| !value.trim().eq_ignore_ascii_case("no"));
        for uri in words("URIs") {
            entries.push(SourceEntry {
                types: words("Types"),
                uri,
                suites: words("Suites"),
                components: words("Components"),
                signed_by: signed_by.clone(),
                enabled,
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            // A continuation; a line of "." stands for an empty line in a multi-line value.
            if let Some((_, value)) = fields.last_mut() {
                let part = line.trim();
                value.push('\n');
                value.push_str(if part == "." { "" } else { part });
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    flush(&mut fields);
    entries
}

/// Entries of a one-line-style `sources.list`: `deb [opt=value ...] URI SUITE COMPONENT...`.
fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or_default().trim();
            let (kind, rest) = line.split_once(char::is_whitespace)?;
            let rest = rest.trim_start();
            let (options, rest) = match rest.strip_prefix('[') {
                Some(after) => {
                    let (options, rest) = after.split_once(']')?;
                    (options, rest)
                }
                None => ("", rest),
            };
            let signed_by = options.split_whitespace().find_map(|option| {
                option
                    .strip_prefix("signed-by=")
                    .map(|path| SignedBy::File(PathBuf::from(path)))
            });
            let mut words = rest.split_whitespace();
            let uri = words.next()?.to_string();
            let suite = words.next()?.to_string();
            Some(SourceEntry {
                types: vec![kind.to_string()],
                uri,
                suites: vec![suite],
                components: words.map(str::to_string).collect(),
                signed_by,
                enabled: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(Version::parse("").unwrap(), Version::V1_6);
        assert_eq!(Version::parse("1.6").unwrap(), Version::V1_6);
        assert_eq!(Version::parse(" 1.7 ").unwrap(), Version::V1_7);
        assert_eq!(Version::parse("v2.1").unwrap(), Version::V2_1);
        assert_eq!(
            Version::parse("/opt/containerd/bin").unwrap(),
            Version::Path(PathBuf::from("/opt/containerd/bin"))
        );
        let error = Version::parse("2.0").unwrap_err();
        assert!(error.0.contains("expected 1.6"), "{error}");
        assert_eq!(Version::V2_1.suite(), Some("sid"));
        assert_eq!(Version::V1_7.suite(), Some("trixie"));
        assert_eq!(Version::V1_6.suite(), None);
    }

    #[test]
    fn releases_parse() {
        let r = |major, minor, patch| {
            Some(Release {
                major,
                minor,
                patch,
            })
        };
        assert_eq!(
            Release::parse(
                "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
            ),
            r(1, 6, 20)
        );
        assert_eq!(
            Release::parse("containerd github.com/containerd/containerd/v2 2.1.9+unknown "),
            r(2, 1, 9)
        );
        assert_eq!(
            Release::parse("containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b71"),
            r(2, 1, 4)
        );
        assert_eq!(Release::parse("containerd: not found"), None);
    }

    #[test]
    fn deb822_sources_give_the_main_archive() {
        let text = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n";
        let entries = parse_deb822(text);
        assert_eq!(entries.len(), 2);
        let main: Vec<_> = entries
            .iter()
            .filter(|e| e.is_debian_main(Some("bookworm")))
            .collect();
        assert_eq!(main.len(), 1);
        assert_eq!(main[0].uri, "http://mirror.example/debian");
        assert_eq!(
            main[0].signed_by,
            Some(SignedBy::File(PathBuf::from("/usr/share/keyrings/k.gpg")))
        );
        assert!(
            !entries[1].is_debian_main(None),
            "security is not the main archive"
        );

        let inline = "Types: deb\nURIs: http://m.example/debian\nSuites: trixie\nComponents: main contrib\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----\nEnabled: yes\n";
        let entries = parse_deb822(inline);
        assert!(entries[0].is_debian_main(Some("trixie")));
        assert_eq!(
            entries[0].signed_by,
            Some(SignedBy::Inline(
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n-----END PGP PUBLIC KEY BLOCK-----\n"
                    .into()
            ))
        );
        let disabled = parse_deb822(&inline.replace("Enabled: yes", "Enabled: no"));
        assert!(!disabled[0].is_debian_main(Some("trixie")));
    }

    #[test]
    fn one_line_sources_give_the_main_archive() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\ndeb-src http://m.example/debian bookworm main\ndeb http://m.example/debian-security bookworm-security main\n";
        let entries = parse_one_line(text);
        assert_eq!(entries.len(), 3);
        assert!(entries[0].is_debian_main(Some("bookworm")));
        assert_eq!(
            entries[0].signed_by,
            Some(SignedBy::File(PathBuf::from("/k.gpg")))
        );
        assert!(!entries[1].is_debian_main(Some("bookworm")), "deb-src");
        assert!(!entries[2].is_debian_main(Some("bookworm")));
    }
}
