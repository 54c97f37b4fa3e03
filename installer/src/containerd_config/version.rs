//! Which containerd, and which CRI plugin table its config version uses.
//!
//! The config `version` alone does not say how imports are merged: `version = 2` is written
//! by containerd 1.6 and 1.7 (which replace whole plugin sections from imported files) and
//! still read by 2.x (which merges them deeply). So the caller runs `containerd --version`
//! and hands the output to [`ContainerdVersion::parse`]; `version = 3` or `4` alone already
//! implies containerd 2.x.

use serde::Serialize;

use super::error::ConfigError;

/// The CRI plugin of config version 2 (containerd 1.x, read by 2.x through migration).
pub const CRI_PLUGIN_V2: &str = "io.containerd.grpc.v1.cri";
/// The CRI runtime plugin of config versions 3 and 4 (containerd 2.x).
pub const CRI_PLUGIN_V3: &str = "io.containerd.cri.v1.runtime";

/// A containerd release number, as printed by `containerd --version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ContainerdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ContainerdVersion {
    /// Parses `containerd --version` output, whatever the packager put around the number:
    ///
    /// - `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1` (Debian)
    /// - `containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da` (Docker)
    /// - `containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7193e4e490e9fbdc236c0e811ccaba3376`
    ///
    /// The first word after `containerd` that starts with `N.N` (optionally `v`) is the
    /// version; the package path before it never starts with a digit.
    pub fn parse(output: &str) -> Result<Self, ConfigError> {
        output
            .split_whitespace()
            .skip(1)
            .find_map(parse_release)
            .ok_or_else(|| ConfigError::VersionOutput {
                output: output.trim().to_owned(),
            })
    }
}

impl std::fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

fn parse_release(word: &str) -> Option<ContainerdVersion> {
    let word = word.strip_prefix('v').unwrap_or(word);
    let mut numbers = word.split(['.', '-', '~', '+']).map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || digits.len() != part.len() {
            None
        } else {
            digits.parse::<u32>().ok()
        }
    });
    let major = numbers.next()??;
    let minor = numbers.next()??;
    let patch = numbers.next().flatten().unwrap_or(0);
    Some(ContainerdVersion {
        major,
        minor,
        patch,
    })
}

/// The CRI plugin table that holds `containerd.runtimes` for a config `version`, or `None`
/// for version 1 (absent), which warden reads but never writes.
pub fn cri_runtime_plugin(config_version: u32) -> Option<&'static str> {
    match config_version {
        2 => Some(CRI_PLUGIN_V2),
        3 | 4 => Some(CRI_PLUGIN_V3),
        _ => None,
    }
}

/// The path from the document root to the `runtimes` table for a config version.
pub fn runtimes_path(config_version: u32) -> Option<[&'static str; 4]> {
    cri_runtime_plugin(config_version).map(|plugin| ["plugins", plugin, "containerd", "runtimes"])
}

/// The containerd major version the config itself implies: versions 3 and 4 are only
/// written and read by containerd 2.x.
pub fn implied_major(config_version: u32) -> Option<u32> {
    (config_version >= 3).then_some(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> ContainerdVersion {
        ContainerdVersion {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn debian_output() {
        let out = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n";
        assert_eq!(ContainerdVersion::parse(out).unwrap(), v(1, 6, 20));
    }

    #[test]
    fn docker_package_output() {
        let out = "containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da";
        assert_eq!(ContainerdVersion::parse(out).unwrap(), v(1, 7, 27));
    }

    #[test]
    fn upstream_v2_output() {
        let out = "containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7193e4e490e9fbdc236c0e811ccaba3376";
        assert_eq!(ContainerdVersion::parse(out).unwrap(), v(2, 1, 4));
    }

    #[test]
    fn k3s_fork_and_rc_output() {
        let out = "containerd github.com/k3s-io/containerd v2.0.5-k3s1 ";
        assert_eq!(ContainerdVersion::parse(out).unwrap(), v(2, 0, 5));
        let out = "containerd github.com/containerd/containerd/v2 v2.3.0-rc.1 abc";
        assert_eq!(ContainerdVersion::parse(out).unwrap(), v(2, 3, 0));
    }

    #[test]
    fn no_version_is_an_error() {
        let err = ContainerdVersion::parse("containerd: command not found").unwrap_err();
        assert!(matches!(err, ConfigError::VersionOutput { .. }));
        assert!(ContainerdVersion::parse("").is_err());
        // A commit hash alone is not a version.
        assert!(ContainerdVersion::parse("containerd 05044ec0a9a75232cad458").is_err());
    }

    #[test]
    fn plugin_by_config_version() {
        assert_eq!(cri_runtime_plugin(1), None);
        assert_eq!(cri_runtime_plugin(2), Some(CRI_PLUGIN_V2));
        assert_eq!(cri_runtime_plugin(3), Some(CRI_PLUGIN_V3));
        assert_eq!(cri_runtime_plugin(4), Some(CRI_PLUGIN_V3));
        assert_eq!(implied_major(2), None);
        assert_eq!(implied_major(3), Some(2));
    }
}
