//! `make demo`: warden's main job, end to end, on this machine, narrated for a newcomer.
//!
//! A private containerd (its own config, root, state and socket under a temp dir, nothing of
//! the host's touched), the shim registered in it, a Wasm image run deny-by-default, a module
//! that reaches for a host file and is refused, refusals of native and precompiled code, and
//! the audit log read back and verified with the `warden` CLI. Everything is stopped and
//! removed at the end.

use std::path::{Path, PathBuf};
use std::process::Command;

use warden_test::containerd::{Containerd, Options, RunOpts, RunResult};
use warden_test::guests::{Wasi, build_guests};
use warden_test::image::ImageBuilder;

const POLICY: &str = r#"# The node policy: deny by default; profiles grant, namespaces choose.
version = 1

[profiles.reader]
namespaces = ["demo"]
mounts = [{ path = "/config" }]   # read-only
env = ["APP_*"]

[profiles.reader.limits]
memory = "32Mi"
deadline = "5s"
"#;

fn main() {
    if let Err(e) = run() {
        eprintln!("\ndemo failed: {e}");
        std::process::exit(1);
    }
}

fn step(n: u32, title: &str) {
    println!("\n\x1b[1m== {n}. {title}\x1b[0m");
}

fn say(text: &str) {
    for line in text.lines() {
        println!("   {line}");
    }
}

fn show(r: &RunResult) {
    for l in r.stdout.lines() {
        println!("   | {l}");
    }
    for l in r.stderr.lines() {
        println!("   ! {l}");
    }
    println!(
        "   exit status: {}",
        r.code.map_or("killed".into(), |c| c.to_string())
    );
}

fn run() -> Result<(), String> {
    warden_test::require_root();
    let files = tempfile::Builder::new()
        .prefix("warden-demo-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let policy = files.path().join("policy.toml");
    let audit = files.path().join("audit.jsonl");
    std::fs::write(&policy, POLICY).map_err(|e| e.to_string())?;

    step(1, "Build the shim and the example Wasm programs");
    let shim = warden_test::shim::shim_binary();
    let guests = build_guests();
    say(&format!("shim: {}", shim.display()));

    step(2, "Start a private containerd and register warden in it");
    let containerd = Containerd::start(Options {
        shim_dir: Some(warden_test::shim::shim_dir().to_path_buf()),
        env: vec![
            ("WARDEN_POLICY".into(), policy.display().to_string()),
            ("WARDEN_AUDIT_LOG".into(), audit.display().to_string()),
            (
                "WARDEN_CACHE_DIR".into(),
                files.path().join("cache").display().to_string(),
            ),
        ],
        namespace: "demo".into(),
        ..Options::default()
    });
    say(&format!(
        "containerd {} (socket {}), started in {:?}\n\
         the shim is on its PATH, so `ctr run --runtime io.containerd.warden.v1` finds it;\n\
         policy: {}\naudit log: {}",
        containerd.dir().display(),
        containerd.socket().display(),
        containerd.startup_time(),
        policy.display(),
        audit.display()
    ));

    let image = |name: &str, bytes: Vec<u8>| -> String {
        let reference = format!("localhost/demo/{name}:latest");
        containerd.import_image(
            &ImageBuilder::wasm_rootfs(&reference, "/app.wasm", bytes)
                .file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
                .file(
                    "/config/greeting.txt",
                    "hello from a granted mount\n",
                    0o644,
                ),
        );
        reference
    };
    let ctr_run = |img: &str, args: &[&str], opts: RunOpts| -> RunResult {
        let id = containerd.unique_id("demo");
        let mut argv = vec!["/app.wasm".to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let opts = opts.args(argv);
        say(&format!(
            "$ ctr {}",
            containerd.run_args(img, &id, &opts).join(" ")
        ));
        let r = containerd.run(img, &id, opts);
        show(&r);
        r
    };

    step(
        3,
        "Run a Wasm image (WASI preview 1) under the built-in strict profile",
    );
    let hello = image("hello", guests.p1("hello"));
    let r = ctr_run(&hello, &[], RunOpts::warden());
    expect(
        r.code == Some(0) && r.stdout.contains("hello from wasm"),
        "hello did not run",
    )?;
    say("strict grants only args, stdout/stderr, clocks and random.");

    step(4, "A module reaches for a host file: refused");
    let reader = image("read-file", guests.p1("read-file"));
    let r = ctr_run(&reader, &["/etc/passwd"], RunOpts::warden());
    expect(
        r.code != Some(0) && !r.stdout.contains("root:"),
        "the read was not refused",
    )?;
    say(
        "/etc/passwd is in the image, but strict preopens no directory: the module cannot name it.",
    );

    step(
        5,
        "The same module under a profile that grants /config read-only",
    );
    let r = ctr_run(
        &reader,
        &["/config/greeting.txt"],
        RunOpts::warden().annotation("warden.dev/profile", "reader"),
    );
    expect(r.code == Some(0), "the granted read failed")?;
    let r = ctr_run(
        &reader,
        &["/etc/passwd"],
        RunOpts::warden().annotation("warden.dev/profile", "reader"),
    );
    expect(r.code != Some(0), "an ungranted path was readable")?;
    say("the profile names /config; everything else stays invisible.");

    step(6, "Native code is refused before anything runs");
    let native = std::fs::read(guests.native_hello()).map_err(|e| e.to_string())?;
    let elf = image("native", native);
    let r = ctr_run(&elf, &[], RunOpts::warden());
    expect(r.code != Some(0), "native code ran")?;

    step(
        7,
        "A WASI preview 2 component, and a network connection it may not make",
    );
    let p2 = image("hello-p2", guests.bytes(Wasi::P2, "hello"));
    let r = ctr_run(&p2, &[], RunOpts::warden());
    expect(r.code == Some(0), "the component did not run")?;
    let connect = image("tcp-connect", guests.bytes(Wasi::P2, "tcp-connect"));
    let mut opts = RunOpts::warden();
    opts.net_host = true;
    let r = ctr_run(&connect, &["127.0.0.1:22"], opts);
    expect(r.code != Some(0), "the connection was not refused")?;
    say("even with the host's network namespace, no address is allowed unless granted.");

    step(
        8,
        "The audit log: what ran, from which bytes, with which rights",
    );
    let warden = warden_cli()?;
    let show = Command::new(&warden)
        .args(["audit", "show", "--file"])
        .arg(&audit)
        .output()
        .map_err(|e| format!("running {}: {e}", warden.display()))?;
    print!("{}", indent(&String::from_utf8_lossy(&show.stdout)));
    let verify = Command::new(&warden)
        .args(["audit", "verify", "--file"])
        .arg(&audit)
        .output()
        .map_err(|e| format!("running {}: {e}", warden.display()))?;
    say(&format!("$ warden audit verify --file {}", audit.display()));
    print!("{}", indent(&String::from_utf8_lossy(&verify.stdout)));
    expect(verify.status.success(), "the audit log does not verify")?;

    step(9, "Clean up");
    drop(containerd);
    say("containerd stopped, its mounts and files removed; nothing left running.");
    println!("\nDemo complete.");
    Ok(())
}

fn expect(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}

/// The `warden` binary built next to the shim.
fn warden_cli() -> Result<PathBuf, String> {
    let dir: &Path = warden_test::shim::shim_dir();
    let p = dir.join("warden");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build -p warden-installer`",
            p.display()
        ))
    }
}
