//! The test programs of `test/guests`, built once per test process.
//!
//! `test/guests` is a Cargo workspace of its own (not a member of the repository's), so the
//! main workspace never builds these programs for the host. [`build_guests`] builds it into
//! `<workspace target>/guests`:
//! - package `warden-guests` for `wasm32-wasip1` (core modules) and `wasm32-wasip2`
//!   (components), one program per `src/bin/*.rs` (names in [`GUEST_NAMES`]);
//! - package `http-service` for `wasm32-wasip2`: a `wasi:http` proxy component (its routes
//!   are listed in `test/guests/http-service/src/lib.rs`); package `http-hello`, the smallest
//!   one, which answers every request as `http-service` answers `GET /` (`make bench`);
//! - package `native-hello` for `x86_64-unknown-linux-musl`, a static native baseline that
//!   prints `hello from native`.
//!
//! Conventions of the programs: success prints what they got to stdout and exits 0; a refused
//! operation prints `denied: <error>` to stderr and exits [`DENIED_EXIT_CODE`]; a bad command
//! line prints `usage: ...` and exits [`USAGE_EXIT_CODE`]. `argv[0]` is the module's path, so
//! `ctr run IMAGE ID /hello.wasm ARG...` passes `ARG...` to the program.
//!
//! Exit codes of the wasip2 builds: WASI 0.2's stable `wasi:cli/exit` carries only success or
//! failure, so `exit(N)` with N != 0 ends a component with status 1 (wasmtime reports
//! `Exited with i32 exit status 1`); `denied: ` on stderr is the reliable mark of a refusal.
//! The wasip1 builds exit with N exactly.
//!
//! Checked with wasmtime 50 + wasmtime-wasi 50 on both targets: every program does what its
//! doc says when granted (a preopened dir, env, and for the socket programs
//! `inherit_network()` plus `allow_tcp(true)` / `allow_ip_name_lookup(true)`: TCP and name
//! lookup are off by default in wasmtime-wasi 50, so without them `tcp-connect` and
//! `tcp-listen` print `denied: ...: Permission denied`). `trap`'s backtrace names
//! [`TRAP_FUNCTION`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::image::ImageBuilder;
use crate::util;

/// Every program in `test/guests/src/bin`, built for both `wasm32-wasip1` and
/// `wasm32-wasip2`.
pub const GUEST_NAMES: &[&str] = &[
    "hello",
    "exit-code",
    "args",
    "trap",
    "read-file",
    "write-file",
    "list-dir",
    "env",
    "tcp-connect",
    "tcp-listen",
    "dns",
    "resolve",
    "connect-flood",
    "memory",
    "spin",
    "sleep",
    "wagi",
];

/// The programs that use sockets: on wasip1 they print `denied: no sockets in wasip1` and
/// exit 3.
pub const SOCKET_GUESTS: &[&str] = &[
    "tcp-connect",
    "tcp-listen",
    "dns",
    "resolve",
    "connect-flood",
];

/// Exit code of a guest whose operation was refused (`denied: ...` on stderr).
pub const DENIED_EXIT_CODE: i32 = 3;
/// Exit code of a guest called with a bad command line (`usage: ...` on stderr).
pub const USAGE_EXIT_CODE: i32 = 2;

/// Name of the function in which the `trap` guest executes `unreachable`. The guests keep
/// the wasm `name` section, so the name appears in wasmtime's trap backtraces.
pub const TRAP_FUNCTION: &str = "warden_guest_trap_here";

/// What `hello` prints (plus a newline).
pub const HELLO_WASM: &str = "hello from wasm";
/// What the native baseline prints (plus a newline).
pub const HELLO_NATIVE: &str = "hello from native";

/// WASI versions the guests are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wasi {
    /// `wasm32-wasip1`: core modules.
    P1,
    /// `wasm32-wasip2`: components.
    P2,
}

impl Wasi {
    /// The Rust target triple.
    pub fn target(self) -> &'static str {
        match self {
            Wasi::P1 => "wasm32-wasip1",
            Wasi::P2 => "wasm32-wasip2",
        }
    }
}

/// The built test programs.
#[derive(Debug)]
pub struct Guests {
    target_dir: PathBuf,
    build_time: Duration,
}

impl Guests {
    /// Path of guest `name` built for `wasi`. Panics for a name not in [`GUEST_NAMES`].
    pub fn path(&self, wasi: Wasi, name: &str) -> PathBuf {
        assert!(
            GUEST_NAMES.contains(&name),
            "no guest program named {name:?}; the guests are {GUEST_NAMES:?}"
        );
        self.target_dir
            .join(wasi.target())
            .join("release")
            .join(format!("{name}.wasm"))
    }

    /// Bytes of guest `name` built for `wasi`.
    pub fn bytes(&self, wasi: Wasi, name: &str) -> Vec<u8> {
        let path = self.path(wasi, name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// Bytes of guest `name` as a `wasm32-wasip1` core module.
    pub fn p1(&self, name: &str) -> Vec<u8> {
        self.bytes(Wasi::P1, name)
    }

    /// Bytes of guest `name` as a `wasm32-wasip2` component.
    pub fn p2(&self, name: &str) -> Vec<u8> {
        self.bytes(Wasi::P2, name)
    }

    /// Path of guest `name` as a `wasm32-wasip1` core module.
    pub fn p1_path(&self, name: &str) -> PathBuf {
        self.path(Wasi::P1, name)
    }

    /// Path of guest `name` as a `wasm32-wasip2` component.
    pub fn p2_path(&self, name: &str) -> PathBuf {
        self.path(Wasi::P2, name)
    }

    /// A rootfs-style image of guest `name` built for `wasi`: named
    /// [`Guests::image_name`], the module at `/<name>.wasm` (see [`Guests::module_path`]) as
    /// its entrypoint, platform `wasip1/wasm` or `wasip2/wasm`. To pass arguments, give
    /// `ctr run` the whole argv: `["/exit-code.wasm", "7"]`.
    pub fn image(&self, wasi: Wasi, name: &str) -> ImageBuilder {
        ImageBuilder::wasm_rootfs(
            Guests::image_name(wasi, name),
            &Guests::module_path(name),
            self.bytes(wasi, name),
        )
    }

    /// The name of [`Guests::image`]: `localhost/warden-test/<name>-<p1|p2>:latest`.
    pub fn image_name(wasi: Wasi, name: &str) -> String {
        let suffix = match wasi {
            Wasi::P1 => "p1",
            Wasi::P2 => "p2",
        };
        format!("localhost/warden-test/{name}-{suffix}:latest")
    }

    /// Where [`Guests::image`] puts guest `name`: `/<name>.wasm`.
    pub fn module_path(name: &str) -> String {
        format!("/{name}.wasm")
    }

    /// Path of the static native baseline (`x86_64-unknown-linux-musl`), which prints
    /// [`HELLO_NATIVE`].
    pub fn native_hello(&self) -> PathBuf {
        self.target_dir
            .join("x86_64-unknown-linux-musl")
            .join("release")
            .join("native-hello")
    }

    /// Path of the static native HTTP/1.1 baseline (`x86_64-unknown-linux-musl`, hyper): it
    /// answers every request as the `http-service` component answers `GET /`, on the address
    /// in env `WARDEN_HTTP_ADDR`, and exits 0 on SIGTERM.
    pub fn native_http(&self) -> PathBuf {
        self.target_dir
            .join("x86_64-unknown-linux-musl")
            .join("release")
            .join("native-http")
    }

    /// Path of WASI 0.3 command `name` (`test/guests/p3/src/bin/<name>.rs`, e.g. `p3-hello`).
    pub fn p3_path(&self, name: &str) -> PathBuf {
        self.target_dir
            .join(Wasi::P2.target())
            .join("release")
            .join(format!("{name}.wasm"))
    }

    /// Path of the WASI 0.3 HTTP service component (`test/guests/p3-http-service`).
    pub fn p3_http_service(&self) -> PathBuf {
        self.target_dir
            .join(Wasi::P2.target())
            .join("release")
            .join("p3_http_service.wasm")
    }

    /// Bytes of WASI 0.3 command `name`.
    pub fn p3_bytes(&self, name: &str) -> Vec<u8> {
        let path = self.p3_path(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// Path of the hello `wasi:http` component `make bench` serves (`test/guests/http-hello`).
    pub fn http_hello(&self) -> PathBuf {
        self.target_dir
            .join(Wasi::P2.target())
            .join("release")
            .join("http_hello.wasm")
    }

    /// Path of the `wasi:http` proxy component (`test/guests/http-service`).
    pub fn http_service(&self) -> PathBuf {
        self.target_dir
            .join(Wasi::P2.target())
            .join("release")
            .join("http_service.wasm")
    }

    /// The target directory the guests were built in (`<workspace target>/guests`).
    pub fn target_dir(&self) -> &Path {
        &self.target_dir
    }

    /// How long the (possibly no-op) build took in this process.
    pub fn build_time(&self) -> Duration {
        self.build_time
    }
}

/// Builds the guests (once per process) and returns them. Panics with cargo's output when
/// the build fails.
pub fn build_guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| {
        let target_dir = crate::target_dir().join("guests");
        let start = Instant::now();
        cargo_build(
            &target_dir,
            &[
                "-p",
                "warden-guests",
                "--target",
                Wasi::P1.target(),
                "--target",
                Wasi::P2.target(),
            ],
        );
        cargo_build(
            &target_dir,
            &[
                "-p",
                "http-service",
                "-p",
                "http-hello",
                "-p",
                "warden-p3-guests",
                "-p",
                "p3-http-service",
                "--target",
                Wasi::P2.target(),
            ],
        );
        cargo_build(
            &target_dir,
            &[
                "-p",
                "native-hello",
                "-p",
                "native-http",
                "--target",
                "x86_64-unknown-linux-musl",
            ],
        );
        Guests {
            target_dir,
            build_time: start.elapsed(),
        }
    })
}

/// The directory of the guests' workspace (`test/guests`).
pub fn guests_dir() -> PathBuf {
    crate::workspace_root().join("test/guests")
}

fn cargo_build(target_dir: &Path, args: &[&str]) {
    let mut command = crate::cargo_command();
    command
        .current_dir(guests_dir())
        .args(["build", "--release", "--locked", "--target-dir"])
        .arg(target_dir)
        .args(args);
    // Flags meant for the host build of the main workspace must not reach the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
    let output = util::output(&mut command).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "building the test guests failed: `{}` in {} ({}):\n{}{}",
        util::describe(&command),
        guests_dir().display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Compiles WebAssembly text to binary with the `wat` crate. Panics on a syntax error.
pub fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("invalid WAT: {e}"))
}

/// Whether `bytes` is a WebAssembly component (layer 1) rather than a core module.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

/// Whether `bytes` is a WebAssembly core module (version 1).
pub fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x01, 0x00, 0x00, 0x00]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wat_compiles_a_core_module() {
        let bytes = wat(r#"(module (func (export "_start")))"#);
        assert!(is_core_module(&bytes));
        assert!(!is_component(&bytes));
    }

    #[test]
    #[should_panic(expected = "invalid WAT")]
    fn wat_rejects_bad_text() {
        wat("(module (func (oops)))");
    }

    #[test]
    fn the_list_of_guests_matches_the_sources() {
        let mut sources: Vec<String> = std::fs::read_dir(guests_dir().join("src/bin"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|file| file.strip_suffix(".rs").map(str::to_string))
            .collect();
        sources.sort();
        let mut listed: Vec<String> = GUEST_NAMES.iter().map(|name| name.to_string()).collect();
        listed.sort();
        assert_eq!(sources, listed);
    }

    #[test]
    fn image_names_and_paths() {
        assert_eq!(
            Guests::image_name(Wasi::P2, "hello"),
            "localhost/warden-test/hello-p2:latest"
        );
        assert_eq!(Guests::module_path("exit-code"), "/exit-code.wasm");
    }
}
