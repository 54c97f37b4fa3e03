//! The examples of `examples/`, built by their own Makefile (`make -C examples`, what
//! `make examples` runs) once per test process, into `<workspace target>/examples` with their
//! image tars in `<workspace target>/examples/images`.
//!
//! `make` rebuilds only what changed (cargo, npm, the Go and Python steps each have their
//! inputs), so a second call is a no-op; a file lock next to the build dir orders test
//! processes that build at once. A failed build panics with make's output.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util;

/// Every example, as named under `examples/` and in its image's name.
pub const EXAMPLES: &[&str] = &[
    "hello",
    "wat",
    "rust-cli",
    "rust-component",
    "rust-http",
    "wagi",
    "c-cli",
    "go-cli",
    "js-http",
    "python",
];

/// The version in the examples' image names.
pub const VERSION: &str = "0.1.0";

/// The built examples.
#[derive(Debug)]
pub struct Examples {
    build_dir: PathBuf,
    images_dir: PathBuf,
    build_time: Duration,
}

impl Examples {
    /// The image tar of example `name`: `warden-example-<name>.tar`.
    pub fn image_tar(&self, name: &str) -> PathBuf {
        check(name);
        self.images_dir.join(format!("warden-example-{name}.tar"))
    }

    /// The module of example `name`, as the image holds it.
    pub fn wasm(&self, name: &str) -> PathBuf {
        check(name);
        self.build_dir.join("wasm").join(format!("{name}.wasm"))
    }

    /// Where the images were written.
    pub fn images_dir(&self) -> &Path {
        &self.images_dir
    }

    /// How long the (possibly no-op) build took in this process.
    pub fn build_time(&self) -> Duration {
        self.build_time
    }

    /// `docker.io/library/warden-example-<name>:0.1.0`.
    pub fn image_name(name: &str) -> String {
        check(name);
        format!("docker.io/library/warden-example-{name}:{VERSION}")
    }

    /// Where the image puts the module (its entrypoint): `/<name>.wasm`.
    pub fn module_path(name: &str) -> String {
        check(name);
        format!("/{name}.wasm")
    }
}

fn check(name: &str) {
    assert!(
        EXAMPLES.contains(&name),
        "no example named {name:?}; the examples are {EXAMPLES:?}"
    );
}

/// `examples/` of this checkout.
pub fn examples_dir() -> PathBuf {
    crate::workspace_root().join("examples")
}

/// `examples/<name>/<file>`, read; panics when it is missing.
pub fn example_file(name: &str, file: &str) -> String {
    let path = examples_dir().join(name).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Example `name`'s `policy.toml` with profile `profile`'s `http.outbound` origins replaced by
/// `origin` (a test's loopback upstream stands in for the example's real origin), or with its
/// `http` table removed (`None`): the profile without its outbound grant.
pub fn policy_with_outbound(name: &str, profile: &str, origin: Option<&str>) -> String {
    let text = example_file(name, "policy.toml");
    let mut policy: toml::Table = text.parse().expect("the example's policy parses");
    let mut table = policy["profiles"][profile]
        .as_table()
        .cloned()
        .expect("the example's profile");
    match origin {
        Some(origin) => {
            let mut http = toml::Table::new();
            http.insert("outbound".into(), toml::Value::Array(vec![origin.into()]));
            table.insert("http".into(), toml::Value::Table(http));
        }
        None => {
            table.remove("http");
        }
    }
    policy["profiles"]
        .as_table_mut()
        .expect("profiles")
        .insert(profile.into(), toml::Value::Table(table));
    toml::to_string(&policy).expect("policy serializes")
}

/// The `http.outbound` denials among audit `records`, each checked to name `origin`.
pub fn outbound_denials(
    records: impl IntoIterator<Item = serde_json::Value>,
    origin: &str,
) -> Vec<serde_json::Value> {
    let denials: Vec<serde_json::Value> = records
        .into_iter()
        .filter(|r| r["event"] == "deny" && r["rule"] == "http.outbound")
        .collect();
    for d in &denials {
        assert!(
            d["reason"].as_str().is_some_and(|r| r.contains(origin)),
            "a denial that does not name {origin}: {d}"
        );
    }
    denials
}

/// Builds every example (once per process) with `make -C examples`, its images written by
/// `oci_image` (the `oci-image` binary cargo built for the caller; `None`: make builds it).
/// Panics with make's output when the build fails.
pub fn build_examples(oci_image: Option<&Path>) -> &'static Examples {
    static EXAMPLES_BUILT: OnceLock<Examples> = OnceLock::new();
    EXAMPLES_BUILT.get_or_init(|| {
        let target = crate::target_dir();
        let build_dir = target.join("examples");
        let images_dir = build_dir.join("images");
        std::fs::create_dir_all(&build_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", build_dir.display()));
        let lock_path = target.join("examples.lock");
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", lock_path.display()));
        let _held = warden_common::lock::Flock::exclusive(&lock_file)
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));

        let start = Instant::now();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = std::process::Command::new("make");
        command
            .arg("--no-print-directory")
            .arg("-C")
            .arg(examples_dir())
            .arg("all")
            .arg(format!("TARGET_DIR={}", target.display()))
            .arg(format!("BUILD={}", build_dir.display()))
            .arg(format!("IMAGES_DIR={}", images_dir.display()))
            .arg(format!("CARGO={}", cargo.to_string_lossy()));
        if let Some(oci_image) = oci_image {
            command.arg(format!("OCI_IMAGE={}", oci_image.display()));
        }
        // A make above this process (`make test`) must not hand its jobserver down.
        for var in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL"] {
            command.env_remove(var);
        }
        let output = util::output(&mut command).unwrap_or_else(|e| {
            panic!("cannot run make (apt-get install make) for the examples: {e}")
        });
        assert!(
            output.status.success(),
            "building the examples failed: `{}` ({}). `make deps` installs their tools; `make \
             examples` builds them:\n{}{}",
            util::describe(&command),
            output.status,
            util::tail(&String::from_utf8_lossy(&output.stdout), 60),
            util::tail(&String::from_utf8_lossy(&output.stderr), 60)
        );
        let built = Examples {
            build_dir,
            images_dir,
            build_time: start.elapsed(),
        };
        for name in EXAMPLES {
            let tar = built.image_tar(name);
            assert!(
                tar.is_file(),
                "make built the examples but {} is missing: run make examples",
                tar.display()
            );
        }
        built
    })
}
