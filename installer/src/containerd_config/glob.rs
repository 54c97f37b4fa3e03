//! containerd's `imports`: which files a glob names, and whether warden can add one.
//!
//! containerd resolves each import with Go's `filepath.Glob` (relative to the importing
//! file's directory), sorted by name, and later files win. Warden only ever needs the simple
//! case, a directory without wildcards and a pattern for the file name such as `*.toml`:
//! that is a drop-in directory, and a file named `warden.toml` there is picked up.

use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::source::host_path;

/// The file name warden uses in a drop-in directory.
pub const DROP_IN_FILE_NAME: &str = "warden.toml";

/// An `imports` entry resolved against the importing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportGlob {
    /// The directory part, absolute.
    pub dir: PathBuf,
    /// The file-name pattern (may be a literal name).
    pub pattern: String,
    /// Whether the directory part holds wildcards (then warden cannot place a file there).
    pub dir_has_wildcards: bool,
}

impl ImportGlob {
    /// Resolves `import` as containerd does: relative to the directory of `config_path`.
    pub fn resolve(config_path: &Path, import: &str) -> Self {
        let import_path = Path::new(import);
        let absolute = if import_path.is_absolute() {
            import_path.to_path_buf()
        } else {
            config_path
                .parent()
                .unwrap_or(Path::new("/"))
                .join(import_path)
        };
        let pattern = absolute
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = absolute
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let dir_has_wildcards = has_wildcards(&dir.to_string_lossy());
        ImportGlob {
            dir,
            pattern,
            dir_has_wildcards,
        }
    }

    /// Where warden's drop-in goes if this import would load it.
    pub fn drop_in_path(&self) -> Option<PathBuf> {
        (!self.dir_has_wildcards
            && has_wildcards(&self.pattern)
            && matches(&self.pattern, DROP_IN_FILE_NAME))
        .then(|| self.dir.join(DROP_IN_FILE_NAME))
    }

    /// The files this import loads today, sorted as `filepath.Glob` sorts them. Imports
    /// with wildcards in the directory part are not expanded (warden never needs them).
    pub fn files(&self, root: &Path) -> Result<Vec<PathBuf>, ConfigError> {
        if self.dir_has_wildcards {
            return Ok(Vec::new());
        }
        if !has_wildcards(&self.pattern) {
            let path = self.dir.join(&self.pattern);
            return Ok(if host_path(root, &path).is_file() {
                vec![path]
            } else {
                Vec::new()
            });
        }
        let entries = match std::fs::read_dir(host_path(root, &self.dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ConfigError::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ConfigError::Io {
                path: self.dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if matches(&self.pattern, &name) && entry.path().is_file() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names.into_iter().map(|n| self.dir.join(n)).collect())
    }
}

fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go `path.Match` for one path component: `*`, `?`, `[abc]`, `[a-z]`, `[^a]`, `\x`.
/// A malformed class matches nothing (Go returns an error, containerd then fails to load).
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    match_from(&pattern, &name)
}

fn match_from(pattern: &[char], name: &[char]) -> bool {
    let Some((&first, rest)) = pattern.split_first() else {
        return name.is_empty();
    };
    match first {
        '*' => (0..=name.len()).any(|skip| match_from(rest, &name[skip..])),
        '?' => !name.is_empty() && match_from(rest, &name[1..]),
        '[' => {
            let Some((&c, name_rest)) = name.split_first() else {
                return false;
            };
            match match_class(rest, c) {
                Some((true, after)) => match_from(after, name_rest),
                _ => false,
            }
        }
        '\\' => match rest.split_first() {
            Some((&literal, after)) => {
                name.first() == Some(&literal) && match_from(after, &name[1..])
            }
            None => false,
        },
        literal => name.first() == Some(&literal) && match_from(rest, &name[1..]),
    }
}

/// Matches `c` against the class starting after `[`; returns whether it matched and the
/// pattern after `]`, or `None` for a malformed class.
fn match_class(pattern: &[char], c: char) -> Option<(bool, &[char])> {
    let (negated, mut rest) = match pattern.split_first() {
        Some(('^', rest)) => (true, rest),
        _ => (false, pattern),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        let (&lo, after) = rest.split_first()?;
        if lo == ']' && !first {
            return Some((matched != negated, after));
        }
        first = false;
        let (lo, after) = if lo == '\\' {
            let (&escaped, after) = after.split_first()?;
            (escaped, after)
        } else {
            (lo, after)
        };
        rest = after;
        if let Some(('-', range_rest)) = rest.split_first()
            && let Some((&hi, after_hi)) = range_rest.split_first()
            && hi != ']'
        {
            matched |= lo <= c && c <= hi;
            rest = after_hi;
            continue;
        }
        matched |= lo == c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_question_mark() {
        assert!(matches("*.toml", "warden.toml"));
        assert!(matches("*", "warden.toml"));
        assert!(!matches("*.toml", "warden.toml.bak"));
        assert!(matches("??-*.toml", "10-gvisor.toml"));
        assert!(!matches("??-*.toml", "warden.toml"));
        assert!(matches("warden.toml", "warden.toml"));
    }

    #[test]
    fn classes() {
        assert!(matches("[0-9][0-9]-*.toml", "90-x.toml"));
        assert!(!matches("[0-9]*.toml", "warden.toml"));
        assert!(matches("[^0-9]*.toml", "warden.toml"));
        assert!(matches("[vw]arden.toml", "warden.toml"));
        assert!(!matches("[abc", "a"));
        assert!(matches("\\*.toml", "*.toml"));
        assert!(!matches("\\*.toml", "x.toml"));
    }

    #[test]
    fn resolve_absolute_and_relative() {
        let g = ImportGlob::resolve(
            Path::new("/etc/containerd/config.toml"),
            "/etc/containerd/conf.d/*.toml",
        );
        assert_eq!(g.dir, PathBuf::from("/etc/containerd/conf.d"));
        assert_eq!(
            g.drop_in_path(),
            Some(PathBuf::from("/etc/containerd/conf.d/warden.toml"))
        );
        let g = ImportGlob::resolve(Path::new("/etc/containerd/config.toml"), "config.d/*.toml");
        assert_eq!(g.dir, PathBuf::from("/etc/containerd/config.d"));
    }

    #[test]
    fn literal_files_and_wildcard_dirs_are_not_drop_in_dirs() {
        let g = ImportGlob::resolve(Path::new("/etc/k0s/containerd.toml"), "/run/k0s/cri.toml");
        assert_eq!(g.drop_in_path(), None);
        let g = ImportGlob::resolve(Path::new("/etc/c/config.toml"), "/etc/*/conf.d/*.toml");
        assert!(g.dir_has_wildcards);
        assert_eq!(g.drop_in_path(), None);
        let g = ImportGlob::resolve(Path::new("/etc/c/config.toml"), "/etc/c/conf.d/[0-9]*.toml");
        assert_eq!(g.drop_in_path(), None);
    }

    #[test]
    fn files_are_sorted_and_filtered() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc/containerd/conf.d");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["b.toml", "a.toml", "c.txt"] {
            std::fs::write(dir.join(name), "version = 2\n").unwrap();
        }
        let g = ImportGlob::resolve(
            Path::new("/etc/containerd/config.toml"),
            "/etc/containerd/conf.d/*.toml",
        );
        assert_eq!(
            g.files(root.path()).unwrap(),
            vec![
                PathBuf::from("/etc/containerd/conf.d/a.toml"),
                PathBuf::from("/etc/containerd/conf.d/b.toml")
            ]
        );
        let missing = ImportGlob::resolve(Path::new("/etc/containerd/config.toml"), "/nope/*.toml");
        assert!(missing.files(root.path()).unwrap().is_empty());
    }
}
