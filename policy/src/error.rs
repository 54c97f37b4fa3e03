//! Errors from loading a policy file.
//!
//! Every variant that comes from the file's content names the file, the 1-based line and
//! the key, because the person reading it is a node admin who has to fix one line of TOML,
//! and the shim prints the same text when it refuses to run workloads (fail closed).

use std::fmt;

/// A policy file that could not be read, parsed or validated.
///
/// `Display` reads like `/etc/warden/policy.toml:12: unknown key 'foo' in [profiles.x]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read (absent, unreadable, not UTF-8).
    ///
    /// The I/O error is part of the message rather than a `source`, so that a report
    /// printed with its whole chain does not repeat it.
    #[error("{file}: cannot read the policy file: {error}")]
    Read { file: String, error: std::io::Error },
    /// The text is not valid TOML.
    #[error("{file}:{line}: TOML syntax error: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    /// A key the policy format does not know, anywhere in the file.
    #[error("{file}:{line}: unknown key '{key}' in {table}")]
    UnknownKey {
        file: String,
        line: usize,
        key: String,
        /// Where the key was found, e.g. `[profiles.x]` or `the top level`.
        table: String,
    },
    /// A key the format requires (`version`, a mount's `path`).
    #[error("{file}:{line}: missing key '{key}' in {table}")]
    MissingKey {
        file: String,
        line: usize,
        key: String,
        table: String,
    },
    /// A value of the wrong type or form, or one that contradicts the rest of the file.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        /// Dotted path of the offending key, e.g. `profiles.api.network.connect[1]`.
        key: String,
        message: String,
    },
}

impl PolicyError {
    /// The file (or source name) the error is about.
    pub fn file(&self) -> &str {
        match self {
            PolicyError::Read { file, .. }
            | PolicyError::Syntax { file, .. }
            | PolicyError::UnknownKey { file, .. }
            | PolicyError::MissingKey { file, .. }
            | PolicyError::Invalid { file, .. } => file,
        }
    }

    /// The 1-based line of the offending text, if the error is about the content.
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Read { .. } => None,
            PolicyError::Syntax { line, .. }
            | PolicyError::UnknownKey { line, .. }
            | PolicyError::MissingKey { line, .. }
            | PolicyError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The offending key as a dotted path (`profiles.x.foo`), if there is one.
    pub fn key(&self) -> Option<String> {
        match self {
            PolicyError::Read { .. } | PolicyError::Syntax { .. } => None,
            PolicyError::UnknownKey { key, table, .. }
            | PolicyError::MissingKey { key, table, .. } => Some(join_table_key(table, key)),
            PolicyError::Invalid { key, .. } => Some(key.clone()),
        }
    }

    /// The message without the `file:line:` prefix.
    pub fn message(&self) -> String {
        let full = self.to_string();
        let prefix = match self.line() {
            Some(line) => format!("{}:{line}: ", self.file()),
            None => format!("{}: ", self.file()),
        };
        full.strip_prefix(&prefix)
            .map(str::to_owned)
            .unwrap_or(full)
    }

    /// True when the file does not exist; callers then run with [`crate::Policy::strict_only`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, PolicyError::Read { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    }
}

/// `[profiles.x]` + `foo` -> `profiles.x.foo`; `the top level` + `foo` -> `foo`.
fn join_table_key(table: &str, key: &str) -> String {
    // Bracketed names (`[a.b]`) hold only keys; unbracketed ones (`a.b[1]`) are paths.
    let t = table
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(table);
    if table == TOP_LEVEL || t.is_empty() {
        key.to_owned()
    } else {
        format!("{t}.{key}")
    }
}

pub(crate) const TOP_LEVEL: &str = "the top level";

/// One step of a key path: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Formats a path as TOML would spell it: `profiles."a.b".mounts[1]`.
pub(crate) struct DottedPath<'a>(pub &'a [Seg]);

impl fmt::Display for DottedPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    if is_bare_key(k) {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// How an error message names the table holding a key.
pub(crate) fn table_name(path: &[Seg]) -> String {
    if path.is_empty() {
        TOP_LEVEL.to_owned()
    } else if path.iter().all(|s| matches!(s, Seg::Key(_))) {
        format!("[{}]", DottedPath(path))
    } else {
        DottedPath(path).to_string()
    }
}

fn is_bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
