//! The examples' images in the start-latency table: `make examples` writes them as OCI
//! image tars into `$IMAGES_DIR` (default `<repo>/target/images`). A tar that is there is
//! imported and measured, cold and warm, with the image's own entrypoint and command under
//! the example's own profile (copied from its `policy.toml` into the bench's policy, for any
//! namespace: both read their `/data`, which `strict` does not give); a tar that is not is
//! reported as not built, and a run that fails is reported with its error: neither stops the
//! bench.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use warden_test::containerd::RunOpts;

use crate::Bench;
use crate::latency;
use crate::report::Table;

/// An example image the bench measures when it is built.
pub struct Example {
    /// The row name (`... , cold compile cache` / `..., warm cache` follow).
    pub case: &'static str,
    /// The example's name under `examples/`: its profile in its `policy.toml` has this
    /// name too.
    pub name: &'static str,
}

impl Example {
    /// The tar `make examples` writes into `$IMAGES_DIR`.
    fn tar(&self) -> String {
        format!("warden-example-{}.tar", self.name)
    }
}

pub const EXAMPLES: &[Example] = &[
    Example {
        case: "warden Go CLI example (GOOS=wasip1)",
        name: "go-cli",
    },
    Example {
        case: "warden Python component example (componentize-py)",
        name: "python",
    },
];

/// `policy` (the bench's policy file) with each measured example's own profile added, for any
/// namespace.
pub fn with_example_profiles(policy: &str) -> Result<String> {
    let mut policy: toml::Table = policy.parse().context("the bench's policy")?;
    let profiles = policy
        .get_mut("profiles")
        .and_then(toml::Value::as_table_mut)
        .context("the bench's policy has no profiles")?;
    for example in EXAMPLES {
        let path = warden_test::workspace_root()
            .join("examples")
            .join(example.name)
            .join("policy.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let own: toml::Table = text
            .parse()
            .with_context(|| format!("parsing {}", path.display()))?;
        let mut profile = own
            .get("profiles")
            .and_then(|p| p.get(example.name))
            .and_then(toml::Value::as_table)
            .cloned()
            .with_context(|| format!("{} has no profile {}", path.display(), example.name))?;
        profile.insert(
            "namespaces".into(),
            toml::Value::Array(vec![toml::Value::String("*".into())]),
        );
        profiles.insert(example.name.into(), toml::Value::Table(profile));
    }
    Ok(policy.to_string())
}

/// Cold samples at most: an interpreter component compiles for seconds.
const COLD_LIMIT: usize = 5;

/// Where `make examples` leaves the image tars.
pub fn images_dir() -> PathBuf {
    std::env::var_os("IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| warden_test::workspace_root().join("target/images"))
}

/// Measures `example` into `table`, or says why not.
pub fn measure(b: &Bench, table: &mut Table, example: &Example) -> Result<()> {
    let tar = images_dir().join(example.tar());
    if !tar.is_file() {
        table.not_run(example.case, "not built (make examples)");
        return Ok(());
    }
    let outcome = image_name(&tar).and_then(|image| {
        let out = b.c.try_import(&tar);
        if !out.status.success() {
            bail!(
                "ctr images import {}: {}",
                tar.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let opts = || RunOpts::warden().annotation("warden.dev/profile", example.name);
        latency::sample_cases(b, table, example.case, &image, &opts, COLD_LIMIT)
    });
    if let Err(e) = outcome {
        eprintln!("bench: {}: {e:#}", example.case);
        table.not_run(example.case, &failure(&format!("{e:#}")));
    }
    Ok(())
}

/// The image name an OCI image-layout tar records for its first manifest
/// (`io.containerd.image.name`, else `org.opencontainers.image.ref.name`).
pub fn image_name(tar: &Path) -> Result<String> {
    let file =
        std::fs::File::open(tar).with_context(|| format!("cannot open {}", tar.display()))?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().context("reading the tar")? {
        let entry = entry.context("reading the tar")?;
        let path = entry.path().context("a tar entry's path")?.into_owned();
        if path.as_os_str() != "index.json" && path.as_os_str() != "./index.json" {
            continue;
        }
        let mut text = String::new();
        entry
            .take(1 << 20)
            .read_to_string(&mut text)
            .context("reading index.json")?;
        return name_from_index(&text)
            .with_context(|| format!("{}: index.json names no image", tar.display()));
    }
    bail!("{} holds no index.json", tar.display())
}

/// A failure as a table cell: its first line, at most [`REASON_CHARS`] characters (the whole
/// error goes to stderr).
fn failure(error: &str) -> String {
    let first = error.lines().next().unwrap_or_default();
    let mut reason: String = first.chars().take(REASON_CHARS).collect();
    if first.chars().count() > REASON_CHARS {
        reason.push_str("...");
    }
    format!("failed: {reason}")
}

const REASON_CHARS: usize = 160;

fn name_from_index(text: &str) -> Option<String> {
    let index: serde_json::Value = serde_json::from_str(text).ok()?;
    let annotations = &index["manifests"].as_array()?.first()?["annotations"];
    [
        "io.containerd.image.name",
        "org.opencontainers.image.ref.name",
    ]
    .iter()
    .find_map(|k| annotations[*k].as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_profiles_join_the_bench_policy_for_any_namespace() {
        let policy = with_example_profiles(crate::POLICY).unwrap();
        let parsed: toml::Table = policy.parse().unwrap();
        for example in EXAMPLES {
            let profile = &parsed["profiles"][example.name];
            assert_eq!(profile["namespaces"].as_array().unwrap().len(), 1);
            assert_eq!(profile["namespaces"][0].as_str(), Some("*"));
            assert_eq!(profile["mounts"][0].as_str(), Some("/data"), "{policy}");
        }
        // The bench's own profiles are still there.
        assert!(parsed["profiles"].get("granted").is_some());
    }

    #[test]
    fn a_failure_is_one_short_line() {
        assert_eq!(failure("exit 1\nmore"), "failed: exit 1");
        let long = "x".repeat(500);
        assert_eq!(failure(&long).len(), "failed: ".len() + REASON_CHARS + 3);
    }

    #[test]
    fn the_image_name_comes_from_the_index() {
        let index = r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:00","annotations":{
            "io.containerd.image.name":"docker.io/warden/go-cli:0.1.0",
            "org.opencontainers.image.ref.name":"0.1.0"}}]}"#;
        assert_eq!(
            name_from_index(index).as_deref(),
            Some("docker.io/warden/go-cli:0.1.0")
        );
        let short =
            r#"{"manifests":[{"annotations":{"org.opencontainers.image.ref.name":"x:1"}}]}"#;
        assert_eq!(name_from_index(short).as_deref(), Some("x:1"));
        assert_eq!(name_from_index(r#"{"manifests":[]}"#), None);
        assert_eq!(name_from_index("not json"), None);
    }
}
