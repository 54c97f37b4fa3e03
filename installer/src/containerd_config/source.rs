//! Reading one containerd config file into a checked `toml_edit` document.
//!
//! Everything that can be wrong with the bytes themselves is found here, before any
//! decision is taken from them: binary content, an empty file, invalid TOML (with the line
//! and column), duplicate tables, a `version` of the wrong type, and `plugins` or `imports`
//! of the wrong type. The document keeps the user's comments and formatting, so the editor
//! can change only what it must.

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, TableLike};

use super::error::ConfigError;
use warden_common::input_file::{CONFIG_CAP, InputError, Links, read_capped};

/// How many leading bytes are searched for a NUL, as `git` and `grep` do to call a file
/// binary.
const BINARY_PROBE_LEN: usize = 8000;

/// One parsed config file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The path as the node sees it (used in messages and plans).
    pub path: PathBuf,
    /// The exact text that was read.
    pub text: String,
    /// The parsed document, formatting and comments included.
    pub doc: DocumentMut,
    /// The `version` key; 1 when absent, as containerd reads it.
    pub version: u32,
}

impl ConfigFile {
    /// Parses `bytes` read from `path`. Comment-only and empty files are refused as
    /// [`ConfigError::Empty`]; an absent `version` is reported as 1 (the caller decides
    /// whether that is acceptable: it is for reading, never for writing).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let path = path.to_path_buf();
        let probe = &bytes[..bytes.len().min(BINARY_PROBE_LEN)];
        if let Some(offset) = probe.iter().position(|b| *b == 0) {
            return Err(ConfigError::Binary {
                path,
                reason: format!("NUL byte at offset {offset}"),
            });
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(e) => {
                return Err(ConfigError::Binary {
                    path,
                    reason: format!("not UTF-8 at byte {}", e.valid_up_to()),
                });
            }
        };
        let doc: DocumentMut = match text.parse() {
            Ok(doc) => doc,
            Err(e) => return Err(parse_error(path, &text, &e)),
        };
        if doc.as_table().is_empty() {
            return Err(ConfigError::Empty { path });
        }
        let version = read_version(&path, &doc)?;
        check_top_level_types(&path, &doc)?;
        Ok(ConfigFile {
            path,
            text,
            doc,
            version,
        })
    }

    /// The plugins listed in `disabled_plugins`.
    pub fn disabled_plugins(&self) -> Vec<String> {
        self.strings("disabled_plugins")
    }

    /// Reads and parses `node_path` under `root` (`root` is `/` on a real node, a fake tree
    /// in tests).
    pub fn read(root: &Path, node_path: &Path) -> Result<Self, ConfigError> {
        let bytes = read_bytes(root, node_path)?.ok_or_else(|| ConfigError::NotFound {
            path: node_path.to_path_buf(),
            hint: String::new(),
        })?;
        Self::parse(node_path, &bytes)
    }

    /// The `imports` globs, in file order (an absent key is no imports).
    pub fn imports(&self) -> Vec<String> {
        self.strings("imports")
    }

    /// A top-level array of strings (absent: empty). Types were checked by `parse`.
    fn strings(&self, key: &str) -> Vec<String> {
        self.doc
            .get(key)
            .and_then(Item::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Maps a node path to the path under `root`.
pub fn host_path(root: &Path, node_path: &Path) -> PathBuf {
    let relative = node_path.strip_prefix("/").unwrap_or(node_path);
    root.join(relative)
}

/// Reads `node_path` under `root`; `Ok(None)` when it does not exist. A symlink is
/// followed (distributions link their config), but only a regular file of at most
/// [`CONFIG_CAP`] bytes is read: a FIFO, a device or a huge file is refused before a byte
/// is read.
pub fn read_bytes(root: &Path, node_path: &Path) -> Result<Option<Vec<u8>>, ConfigError> {
    match read_capped(
        "containerd config",
        &host_path(root, node_path),
        CONFIG_CAP,
        Links::Follow,
    ) {
        Ok(bytes) => Ok(bytes),
        Err(InputError::Io { source, .. }) => Err(ConfigError::Io {
            path: node_path.to_path_buf(),
            source,
        }),
        Err(e) => Err(ConfigError::Input(e.with_path(node_path))),
    }
}

/// Whether `node_path` exists under `root` (any file type).
pub fn exists(root: &Path, node_path: &Path) -> bool {
    host_path(root, node_path).symlink_metadata().is_ok()
}

fn parse_error(path: PathBuf, text: &str, e: &toml_edit::TomlError) -> ConfigError {
    let offset = e.span().map(|s| s.start).unwrap_or(0);
    let (line, column) = line_column(text, offset);
    // toml_edit's message spans lines ("invalid table header\nexpected `.`, `]`").
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if message.contains("duplicate key") {
        ConfigError::Duplicate {
            path,
            line,
            column,
            message,
        }
    } else {
        ConfigError::Parse {
            path,
            line,
            column,
            message,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

fn read_version(path: &Path, doc: &DocumentMut) -> Result<u32, ConfigError> {
    let Some(item) = doc.get("version") else {
        return Ok(1);
    };
    let Some(version) = item.as_integer() else {
        return Err(wrong_type(path, "version", "an integer", item));
    };
    match version {
        // containerd reads 0 as "not set", which is version 1.
        0 | 1 => Ok(1),
        2..=4 => Ok(version as u32),
        _ => Err(ConfigError::UnknownVersion {
            path: path.to_path_buf(),
            version,
        }),
    }
}

fn check_top_level_types(path: &Path, doc: &DocumentMut) -> Result<(), ConfigError> {
    if let Some(item) = doc.get("plugins")
        && item.as_table_like().is_none()
    {
        return Err(wrong_type(path, "plugins", "a table", item));
    }
    if let Some(item) = doc.get("disabled_plugins") {
        let strings = item
            .as_array()
            .is_some_and(|a| a.iter().all(|v| v.as_str().is_some()));
        if !strings {
            return Err(wrong_type(
                path,
                "disabled_plugins",
                "an array of strings",
                item,
            ));
        }
    }
    if let Some(item) = doc.get("imports") {
        let Some(array) = item.as_array() else {
            return Err(wrong_type(path, "imports", "an array of strings", item));
        };
        if array.iter().any(|v| v.as_str().is_none()) {
            return Err(ConfigError::WrongType {
                path: path.to_path_buf(),
                key: "imports".into(),
                expected: "an array of strings",
                found: "an array holding other values",
            });
        }
    }
    Ok(())
}

/// The table at `segments` below the document root, if every segment exists; a segment
/// that exists but is not a table is [`ConfigError::WrongType`].
pub fn table_at<'d>(
    path: &Path,
    doc: &'d DocumentMut,
    segments: &[&str],
) -> Result<Option<&'d dyn TableLike>, ConfigError> {
    let mut current: &dyn TableLike = doc.as_table();
    for (depth, segment) in segments.iter().enumerate() {
        let Some(item) = current.get(segment) else {
            return Ok(None);
        };
        match item.as_table_like() {
            Some(table) => current = table,
            None => {
                return Err(wrong_type(
                    path,
                    &dotted(&segments[..=depth]),
                    "a table",
                    item,
                ));
            }
        }
    }
    Ok(Some(current))
}

/// A TOML dotted key for messages, quoting segments that need it.
pub fn dotted(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| {
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                (*s).to_owned()
            } else {
                format!("\"{s}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A [`ConfigError::WrongType`] for `item` found at `key`.
pub fn wrong_type(path: &Path, key: &str, expected: &'static str, item: &Item) -> ConfigError {
    ConfigError::WrongType {
        path: path.to_path_buf(),
        key: key.to_owned(),
        expected,
        found: type_name(item),
    }
}

/// A TOML type name for messages.
pub fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => match v {
            toml_edit::Value::String(_) => "a string",
            toml_edit::Value::Integer(_) => "an integer",
            toml_edit::Value::Float(_) => "a float",
            toml_edit::Value::Boolean(_) => "a boolean",
            toml_edit::Value::Datetime(_) => "a datetime",
            toml_edit::Value::Array(_) => "an array",
            toml_edit::Value::InlineTable(_) => "an inline table",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("/etc/containerd/config.toml"), text.as_bytes())
    }

    #[test]
    fn absent_version_is_one() {
        let file = parse("root = \"/var/lib/containerd\"\n").unwrap();
        assert_eq!(file.version, 1);
    }

    #[test]
    fn version_zero_is_one_and_four_is_known() {
        assert_eq!(parse("version = 0\n").unwrap().version, 1);
        assert_eq!(parse("version = 4\n").unwrap().version, 4);
    }

    #[test]
    fn unknown_version_is_refused() {
        let err = parse("version = 5\n").unwrap_err();
        assert!(matches!(
            err,
            ConfigError::UnknownVersion { version: 5, .. }
        ));
    }

    #[test]
    fn string_version_is_wrong_type() {
        let err = parse("version = \"2\"\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::WrongType { ref key, .. } if key == "version"),
            "{err}"
        );
    }

    #[test]
    fn empty_and_comment_only_files_are_empty() {
        assert!(matches!(parse("").unwrap_err(), ConfigError::Empty { .. }));
        assert!(matches!(
            parse("\n  \n# only a comment\n").unwrap_err(),
            ConfigError::Empty { .. }
        ));
    }

    #[test]
    fn nul_byte_is_binary() {
        let err = ConfigFile::parse(Path::new("/x"), b"version = 2\n\0\x01").unwrap_err();
        assert!(matches!(err, ConfigError::Binary { .. }), "{err}");
    }

    #[test]
    fn invalid_utf8_is_binary() {
        let err = ConfigFile::parse(Path::new("/x"), b"version = 2\n\xff\xfe").unwrap_err();
        assert!(matches!(err, ConfigError::Binary { .. }), "{err}");
    }

    #[test]
    fn parse_error_has_line_and_column() {
        let err = parse("version = 2\n[plugins\n").unwrap_err();
        match err {
            ConfigError::Parse { line, column, .. } => {
                assert_eq!(line, 2);
                assert!(column > 1);
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn duplicate_table_is_its_own_error() {
        let err =
            parse("version = 2\n[grpc]\naddress = \"a\"\n[grpc]\naddress = \"b\"\n").unwrap_err();
        match err {
            ConfigError::Duplicate { line, .. } => assert_eq!(line, 4),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn plugins_must_be_a_table() {
        let err = parse("version = 2\nplugins = \"cri\"\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::WrongType { ref key, found: "a string", .. } if key == "plugins"),
            "{err}"
        );
    }

    #[test]
    fn imports_must_be_strings() {
        let err = parse("version = 2\nimports = [1]\n").unwrap_err();
        assert!(matches!(err, ConfigError::WrongType { .. }), "{err}");
        let err = parse("version = 2\nimports = \"/etc/containerd/conf.d/*.toml\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::WrongType { .. }), "{err}");
    }

    #[test]
    fn table_at_reports_the_failing_segment() {
        let file = parse("version = 2\n[plugins]\n\"io.containerd.grpc.v1.cri\" = 3\n").unwrap();
        let result = table_at(
            &file.path,
            &file.doc,
            &["plugins", "io.containerd.grpc.v1.cri", "containerd"],
        );
        match result {
            Err(ConfigError::WrongType { key, .. }) => {
                assert_eq!(key, "plugins.\"io.containerd.grpc.v1.cri\"")
            }
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncdé f", 8), (2, 5));
        assert_eq!(line_column("", 0), (1, 1));
    }
}
