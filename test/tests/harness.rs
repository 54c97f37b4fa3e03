//! Self-tests of the harness against real containerd and runc (run as root).
//!
//! They also pin down what containerd 1.6.20's `ctr` does with the images the harness builds,
//! so that the README can state it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_test::containerd::{Containerd, Options, RUNC_RUNTIME, RunError, RunOpts};
use warden_test::guests::{self, GUEST_NAMES, Guests, HELLO_NATIVE, Wasi};
use warden_test::image::{self, ImageBuilder};

const NATIVE_IMAGE: &str = "localhost/warden-test/native-hello:latest";

fn native_image() -> ImageBuilder {
    let binary = std::fs::read(guests::build_guests().native_hello()).expect("native-hello built");
    ImageBuilder::new(NATIVE_IMAGE)
        .file("/native-hello", binary, 0o755)
        .entrypoint(["/native-hello"])
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// containerd's server version, e.g. `(1, 6, 20)`.
fn server_version(containerd: &Containerd) -> (u32, u32, u32) {
    let text = containerd.ctr_ok(["version"]);
    let server = text
        .split("Server:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Server section in `ctr version`:\n{text}"));
    let version = server
        .lines()
        .find_map(|line| line.trim().strip_prefix("Version:"))
        .unwrap_or_else(|| panic!("no server Version in `ctr version`:\n{text}"))
        .trim()
        .trim_start_matches('v');
    let numbers: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|part| part.parse().unwrap_or(0))
        .collect();
    match numbers.as_slice() {
        [major, minor, patch] => (*major, *minor, *patch),
        _ => panic!("cannot parse containerd version {version:?}"),
    }
}

/// Whether this containerd has the `mismatched image rootfs and manifest layers` bug for
/// images with non-tar layers (fixed in 1.6.25, 1.7.7 and 2.0).
fn refuses_wasm_layers(version: (u32, u32, u32)) -> bool {
    match version {
        (1, 6, patch) => patch < 25,
        (1, 7, patch) => patch < 7,
        (1, minor, _) => minor < 6,
        _ => false,
    }
}

#[test]
fn native_static_hello_runs_under_runc() {
    let containerd = Containerd::start(Options::default());
    let info = containerd.import_image(&native_image());
    assert!(
        containerd.images().contains(&info.name),
        "{:?}",
        containerd.images()
    );

    let id = containerd.unique_id("hello");
    let result = containerd.run_ok(NATIVE_IMAGE, &id, RunOpts::default());
    assert_eq!(result.stdout, format!("{HELLO_NATIVE}\n"), "{result:?}");
    assert_eq!(result.stderr, "", "{result:?}");

    // --rm removed the container.
    let containers = containerd.ctr_ok(["containers", "ls", "-q"]);
    assert!(!containers.contains(&id), "{containers}");
}

#[test]
fn exit_code_propagates_through_ctr_run() {
    let containerd = Containerd::start(Options::default());
    containerd.import_image(&native_image());
    let result = containerd.run(
        NATIVE_IMAGE,
        &containerd.unique_id("exit"),
        RunOpts::default().args(["/native-hello", "exit", "42"]),
    );
    assert_eq!(result.code, Some(42), "{result:?}");
    assert_eq!(result.stdout, format!("{HELLO_NATIVE}\n"));
}

#[test]
fn run_timeout_kills_the_task_and_reports_the_log() {
    let containerd = Containerd::start(Options::default());
    containerd.import_image(&native_image());
    let id = containerd.unique_id("slow");
    let error = containerd
        .try_run(
            NATIVE_IMAGE,
            &id,
            RunOpts::default()
                .args(["/native-hello", "sleep", "600"])
                .timeout(Duration::from_secs(2)),
        )
        .expect_err("a 600 s sleep must time out");
    match &error {
        RunError::Timeout { stdout, .. } => assert_eq!(stdout, &format!("{HELLO_NATIVE}\n")),
        other => panic!("expected a timeout, got {other}"),
    }
    let message = error.to_string();
    assert!(message.contains("containerd log"), "{message}");
    assert!(message.contains("starting signal loop"), "{message}");

    let tasks = containerd.ctr_ok(["tasks", "ls", "-q"]);
    assert!(!tasks.contains(&id), "the task was left running: {tasks}");
    let containers = containerd.ctr_ok(["containers", "ls", "-q"]);
    assert!(
        !containers.contains(&id),
        "the container was left: {containers}"
    );
}

/// A rootfs-style Wasm image (the `.wasm` as a file in an ordinary tar layer).
#[test]
fn wasm_rootfs_image_imports_only_with_all_platforms_and_runc_runs_it_as_a_file() {
    let guests = guests::build_guests();
    let containerd = Containerd::start(Options::default());
    let name = Guests::image_name(Wasi::P1, "hello");
    let (tar, _) = containerd.write_image_tar(&guests.image(Wasi::P1, "hello"));

    // Without --all-platforms, ctr 1.6 filters the index by the host's platform: nothing of
    // a wasip1/wasm image is left to import.
    let plain = containerd.ctr(["images".as_ref(), "import".as_ref(), tar.as_os_str()]);
    assert!(!plain.status.success());
    assert_eq!(stderr_of(&plain).trim(), "ctr: image might be filtered out");

    // With it (what Containerd::import passes), the image is imported and unpacked.
    let imported = containerd.try_import(&tar);
    assert!(imported.status.success(), "{imported:?}");
    assert!(
        String::from_utf8_lossy(&imported.stdout).contains("...done"),
        "{imported:?}"
    );

    // `ctr run` does not check the image platform: runc simply tries to exec the module.
    let result = containerd.run(&name, &containerd.unique_id("p1"), RunOpts::default());
    assert_eq!(result.code, Some(1), "{result:?}");
    assert!(result.stderr.contains("exec format error"), "{result:?}");
}

/// OCI Wasm-layer images (layer media type `application/wasm` or runwasi's component type,
/// no diff_ids): containerd 1.6.20 refuses them on import and on run.
#[test]
fn wasm_layer_images_on_this_containerd() {
    let guests = guests::build_guests();
    let containerd = Containerd::start(Options::default());
    let version = server_version(&containerd);
    let cases = [
        (
            "localhost/warden-test/layer-p1:latest",
            guests.p1("hello"),
            image::MEDIA_TYPE_WASM,
            "wasip1",
        ),
        (
            "localhost/warden-test/layer-p2:latest",
            guests.p2("hello"),
            image::MEDIA_TYPE_WASM_COMPONENT,
            "wasi",
        ),
    ];
    for (name, module, media_type, os) in cases {
        let image = ImageBuilder::new(name)
            .wasm_layer(module, media_type)
            .platform(os, "wasm");
        let (tar, info) = containerd.write_image_tar(&image);
        assert!(info.diff_ids.is_empty());
        let imported = containerd.try_import(&tar);
        if refuses_wasm_layers(version) {
            assert!(!imported.status.success(), "{version:?}: {imported:?}");
            assert_eq!(
                stderr_of(&imported).trim(),
                "ctr: mismatched image rootfs and manifest layers",
                "{version:?}"
            );
            // The failure comes from unpacking: the image record was already written.
            assert!(containerd.images().contains(&name.to_string()));
            // And running it fails the same way, before any shim is started.
            let result = containerd.run(name, &containerd.unique_id("layer"), RunOpts::default());
            assert_eq!(result.code, Some(1), "{result:?}");
            assert_eq!(
                result.stderr.trim(),
                "ctr: mismatched image rootfs and manifest layers"
            );
            assert!(!containerd.log().contains("starting signal loop"));

            // With --no-unpack the import itself succeeds; the error then comes at run.
            containerd.ctr_ok(["images", "rm", name]);
            containerd.ctr_ok([
                "images".as_ref(),
                "import".as_ref(),
                "--all-platforms".as_ref(),
                "--no-unpack".as_ref(),
                tar.as_os_str(),
            ]);
            let result = containerd.run(name, &containerd.unique_id("layer"), RunOpts::default());
            assert_eq!(
                result.stderr.trim(),
                "ctr: mismatched image rootfs and manifest layers",
                "{result:?}"
            );
        } else {
            assert!(imported.status.success(), "{version:?}: {imported:?}");
        }
    }
}

/// The status of plugin `kind` `id` in `ctr plugins ls`, if listed.
fn plugin_status(containerd: &Containerd, kind: &str, id: &str) -> Option<String> {
    containerd
        .ctr_ok(["plugins", "ls"])
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 3 && fields[0] == kind && fields[1] == id)
                .then(|| fields[fields.len() - 1].to_string())
        })
}

#[test]
fn cri_plugin_loads_with_extra_config() {
    let containerd = Containerd::start(Options {
        cri: true,
        extra_config: r#"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.warden]
runtime_type = "io.containerd.warden.v1"
"#
        .into(),
        ..Options::default()
    });
    assert_eq!(
        plugin_status(&containerd, "io.containerd.grpc.v1", "cri").as_deref(),
        Some("ok"),
        "{}",
        containerd.log()
    );
    let config = std::fs::read_to_string(containerd.config_path()).unwrap();
    assert!(config.contains("restrict_oom_score_adj = true"), "{config}");
    assert!(
        config.contains(r#"runtime_type = "io.containerd.warden.v1""#),
        "{config}"
    );
    eprintln!(
        "containerd with CRI answered after {:?}",
        containerd.startup_time()
    );
}

#[test]
fn a_cri_plugin_that_fails_to_load_fails_the_start() {
    let error = Containerd::try_start(Options {
        cri: true,
        extra_config: r#"
[plugins."io.containerd.grpc.v1.cri".containerd]
default_runtime_name = "nonexistent"
"#
        .into(),
        ..Options::default()
    })
    .expect_err("CRI cannot load with a default runtime that is not configured");
    assert!(
        error
            .0
            .contains("plugin io.containerd.grpc.v1.cri is error"),
        "{error}"
    );
    assert!(error.0.contains("nonexistent"), "{error}");
}

#[test]
fn without_cri_the_plugin_is_disabled() {
    let containerd = Containerd::start(Options::default());
    assert_eq!(
        plugin_status(&containerd, "io.containerd.grpc.v1", "cri"),
        None
    );
    assert_eq!(
        plugin_status(
            &containerd,
            "io.containerd.snapshotter.v1",
            containerd.snapshotter()
        )
        .as_deref(),
        Some("ok")
    );
}

/// What must be gone once a `Containerd` is dropped.
struct Footprint {
    dir: PathBuf,
    socket: String,
    containerd_pid: u32,
    task_pid: Option<u32>,
    runc_state: PathBuf,
}

impl Footprint {
    fn of(containerd: &Containerd, id: &str, task_pid: Option<u32>) -> Footprint {
        Footprint {
            dir: containerd.dir().to_path_buf(),
            socket: containerd.socket().to_string_lossy().into_owned(),
            containerd_pid: containerd.pid(),
            task_pid,
            runc_state: Path::new("/run/containerd/runc")
                .join(containerd.namespace())
                .join(id),
        }
    }

    fn assert_gone(&self) {
        assert!(
            !warden_test::process_alive(self.containerd_pid),
            "containerd (pid {}) is still running",
            self.containerd_pid
        );
        let left = warden_test::pids_with_cmdline_containing(&self.socket);
        assert!(
            left.is_empty(),
            "processes naming {} survive: {left:?}",
            self.socket
        );
        if let Some(pid) = self.task_pid {
            assert!(
                !warden_test::process_alive(pid),
                "the task (pid {pid}) survives"
            );
        }
        let mounts = warden_test::mounts_below(&self.dir);
        assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
        assert!(!self.dir.exists(), "{} was not removed", self.dir.display());
        assert!(
            !self.runc_state.exists(),
            "runc state {} was left (the task was not deleted through containerd)",
            self.runc_state.display()
        );
    }
}

/// Starts a container that keeps running (detached), so that a shim, a task and a rootfs
/// mount exist; returns the task's pid.
fn start_sleeper(containerd: &Containerd, id: &str) -> u32 {
    containerd.import_image(&native_image());
    let result = containerd.run(
        NATIVE_IMAGE,
        id,
        RunOpts {
            rm: false,
            extra_flags: vec!["--detach".into()],
            ..RunOpts::default().args(["/native-hello", "sleep", "600"])
        },
    );
    assert_eq!(result.code, Some(0), "{result:?}");
    let tasks = containerd.ctr_ok(["tasks", "ls"]);
    let pid = tasks
        .lines()
        .find(|line| line.starts_with(id))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("task {id} not listed:\n{tasks}"));
    assert!(warden_test::process_alive(pid));
    pid
}

#[test]
fn drop_leaves_no_process_mount_or_directory() {
    let containerd = Containerd::start(Options::default());
    let id = containerd.unique_id("sleeper");
    let task_pid = start_sleeper(&containerd, &id);
    let footprint = Footprint::of(&containerd, &id, Some(task_pid));
    assert!(
        !warden_test::pids_with_cmdline_containing(&footprint.socket).is_empty(),
        "no shim process names the socket"
    );
    assert!(
        !warden_test::mounts_below(&footprint.dir).is_empty(),
        "the running container's rootfs is not mounted below the instance dir"
    );
    drop(containerd);
    footprint.assert_gone();
}

#[test]
fn cleanup_happens_when_the_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let containerd = Containerd::start(Options::default());
        let id = containerd.unique_id("panicky");
        let task_pid = start_sleeper(&containerd, &id);
        tx.send(Footprint::of(&containerd, &id, Some(task_pid)))
            .unwrap();
        panic!("deliberate panic with a running container");
    })
    .join();
    assert!(outcome.is_err(), "the thread was meant to panic");
    rx.recv()
        .expect("footprint sent before the panic")
        .assert_gone();
}

#[test]
fn instances_are_independent() {
    let first = Containerd::start(Options::default());
    let second = Containerd::start(Options {
        namespace: "other".into(),
        ..Options::default()
    });
    assert_ne!(first.socket(), second.socket());
    first.import_image(&native_image());
    assert_eq!(first.images(), vec![NATIVE_IMAGE.to_string()]);
    assert!(second.images().is_empty());
    assert_eq!(second.namespace(), "other");
    let result = second.ctr(["--namespace", "warden-test", "images", "ls", "-q"]);
    assert_eq!(String::from_utf8_lossy(&result.stdout).trim(), "");
    assert!(first.startup_time() < Duration::from_secs(20));
    eprintln!(
        "containerd answered after {:?} and {:?}",
        first.startup_time(),
        second.startup_time()
    );
}

#[test]
fn runtime_can_be_named_by_path() {
    // `--runtime` also takes a shim binary's absolute path (used for the warden shim too).
    let containerd = Containerd::start(Options::default());
    containerd.import_image(&native_image());
    let shim = warden_test::find_in_path("containerd-shim-runc-v2").expect("runc shim on PATH");
    let result = containerd.run_ok(
        NATIVE_IMAGE,
        &containerd.unique_id("bypath"),
        RunOpts {
            runtime: shim.to_string_lossy().into_owned(),
            ..RunOpts::default()
        },
    );
    assert_eq!(result.stdout, format!("{HELLO_NATIVE}\n"));
    assert_ne!(RUNC_RUNTIME, shim.to_string_lossy());
}

/// The ELF program header types of a 64-bit little-endian ELF file.
fn elf_program_header_types(bytes: &[u8]) -> Vec<u32> {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(bytes[4], 2, "not a 64-bit ELF file");
    assert_eq!(bytes[5], 1, "not a little-endian ELF file");
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).map(|i| u32_at(phoff + i * phentsize)).collect()
}

#[test]
fn guests_are_built_for_both_targets() {
    let guests = guests::build_guests();
    eprintln!("guest build took {:?} in this process", guests.build_time());
    for name in GUEST_NAMES {
        let p1 = guests.p1(name);
        assert!(
            guests::is_core_module(&p1),
            "{} is not a core module",
            guests.p1_path(name).display()
        );
        let p2 = guests.p2(name);
        assert_eq!(p2[..4], *b"\0asm");
        assert_eq!(
            p2[4..8],
            [0x0d, 0x00, 0x01, 0x00],
            "{} is not a component",
            guests.p2_path(name).display()
        );
        assert_eq!(guests.path(Wasi::P2, name), guests.p2_path(name));
    }
    // The trap function keeps its name (name section or export) in both forms.
    for bytes in [guests.p1("trap"), guests.p2("trap")] {
        let needle = guests::TRAP_FUNCTION.as_bytes();
        assert!(bytes.windows(needle.len()).any(|window| window == needle));
    }

    // The native baseline is static: no interpreter (PT_INTERP = 3), no dynamic section
    // (PT_DYNAMIC = 2).
    let native = std::fs::read(guests.native_hello()).unwrap();
    let types = elf_program_header_types(&native);
    assert!(!types.is_empty());
    assert!(!types.contains(&3), "native-hello has an ELF interpreter");
    assert!(!types.contains(&2), "native-hello is dynamically linked");
    let output = std::process::Command::new(guests.native_hello())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{HELLO_NATIVE}\n")
    );
}

#[test]
fn wat_modules_compile() {
    let bytes = guests::wat(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (func (export "_start") (call $exit (i32.const 7))))"#,
    );
    assert!(guests::is_core_module(&bytes));
}
