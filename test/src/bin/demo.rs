//! `make demo`: warden's main job, end to end, on this machine, narrated for a newcomer.
//!
//! A private containerd (its own config, root, state and socket under a temp dir, nothing of
//! the host's touched); `warden plan` and `warden install` putting the shim into it (digest
//! checked, config edited, containerd restarted, a CRI pod with handler `warden` accepted); a
//! Wasm image run deny-by-default; a module that reaches for a host file and is refused;
//! native code refused; the audit log read back and verified; `warden uninstall` restoring
//! the config byte for byte. Everything is stopped and removed at the end.

use std::path::{Path, PathBuf};
use std::process::Command;

use warden_test::containerd::{Containerd, Options, RunOpts, RunResult};
use warden_test::guests::{Wasi, build_guests};
use warden_test::image::ImageBuilder;

const POLICY: &str = r#"# The node policy: deny by default; profiles grant, namespaces choose.
version = 1

[profiles.reader]
namespaces = ["k8s.io"]
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

    let warden = warden_cli()?;
    let shim_bytes = std::fs::read(shim).map_err(|e| e.to_string())?;
    let shim_digest = warden_common::Digest::of(&shim_bytes).to_string();

    step(2, "Start a private containerd (CRI on), without warden");
    let env = vec![
        ("WARDEN_POLICY".to_string(), policy.display().to_string()),
        ("WARDEN_AUDIT_LOG".into(), audit.display().to_string()),
        (
            "WARDEN_CACHE_DIR".into(),
            files.path().join("cache").display().to_string(),
        ),
    ];
    let containerd = Containerd::start(Options {
        env: env.clone(),
        cri: true,
        namespace: "k8s.io".into(),
        extra_config: format!(
            "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"{PAUSE}\"\n"
        ),
        ..Options::default()
    });
    // A pod sandbox image (pause), since there is no registry here.
    let pause = std::fs::read(guests.native_hello()).map_err(|e| e.to_string())?;
    containerd.import_image(
        &ImageBuilder::new(PAUSE)
            .file("/pause", pause, 0o755)
            .entrypoint(["/pause", "sleep", "3600"])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    );
    let restart = files.path().join("restart-containerd.sh");
    containerd.write_restart_script(&restart, &env, None);
    let config_before = std::fs::read(containerd.config_path()).map_err(|e| e.to_string())?;
    say(&format!(
        "containerd {} (socket {}), started in {:?}\npolicy: {}\naudit log: {}",
        containerd.dir().display(),
        containerd.socket().display(),
        containerd.startup_time(),
        policy.display(),
        audit.display()
    ));
    let install_dir = files.path().join("bin");
    let warden_cmd = |sub: &str| -> Command {
        let mut c = Command::new(&warden);
        c.arg(sub)
            .arg("--config")
            .arg(containerd.config_path())
            .arg("--install-dir")
            .arg(&install_dir)
            .arg("--state-dir")
            .arg(files.path().join("state"))
            .arg("--audit-log")
            .arg(&audit)
            .arg("--policy")
            .arg(&policy)
            .arg("--restart-command")
            .arg(&restart);
        if sub != "uninstall" {
            c.arg("--shim")
                .arg(shim)
                .arg("--shim-digest")
                .arg(&shim_digest);
        }
        c
    };
    let run_warden = |sub: &str| -> Result<(), String> {
        say(&format!(
            "$ warden {sub} --config {} --install-dir {} --restart-command {} ...",
            containerd.config_path().display(),
            install_dir.display(),
            restart.display()
        ));
        let out = warden_cmd(sub)
            .output()
            .map_err(|e| format!("running warden {sub}: {e}"))?;
        print!("{}", indent(&String::from_utf8_lossy(&out.stdout)));
        print!("{}", indent(&String::from_utf8_lossy(&out.stderr)));
        expect(out.status.success(), &format!("warden {sub} failed"))
    };

    step(3, "warden plan: the exact change, and nothing else");
    run_warden("plan")?;

    step(
        4,
        "warden install: verify the shim's digest, install it, register it, restart, verify",
    );
    run_warden("install")?;
    let runtime = install_dir
        .join("containerd-shim-warden-v1")
        .display()
        .to_string();
    say(&format!(
        "ctr runs below use the installed shim: --runtime {runtime}"
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
        5,
        "Run a Wasm image (WASI preview 1) under the built-in strict profile",
    );
    let hello = image("hello", guests.p1("hello"));
    let warden_run = || RunOpts {
        runtime: runtime.clone(),
        ..RunOpts::default()
    };
    let r = ctr_run(&hello, &[], warden_run());
    expect(
        r.code == Some(0) && r.stdout.contains("hello from wasm"),
        "hello did not run",
    )?;
    say("strict grants only args, stdout/stderr, clocks and random.");

    step(6, "A module reaches for a host file: refused");
    let reader = image("read-file", guests.p1("read-file"));
    let r = ctr_run(&reader, &["/etc/passwd"], warden_run());
    expect(
        r.code != Some(0) && !r.stdout.contains("root:"),
        "the read was not refused",
    )?;
    say(
        "/etc/passwd is in the image, but strict preopens no directory: the module cannot name it.",
    );

    step(
        7,
        "The same module under a profile that grants /config read-only",
    );
    let r = ctr_run(
        &reader,
        &["/config/greeting.txt"],
        warden_run().annotation("warden.dev/profile", "reader"),
    );
    expect(r.code == Some(0), "the granted read failed")?;
    let r = ctr_run(
        &reader,
        &["/etc/passwd"],
        warden_run().annotation("warden.dev/profile", "reader"),
    );
    expect(r.code != Some(0), "an ungranted path was readable")?;
    say("the profile names /config; everything else stays invisible.");

    step(8, "Native code is refused before anything runs");
    let native = std::fs::read(guests.native_hello()).map_err(|e| e.to_string())?;
    let elf = image("native", native);
    let r = ctr_run(&elf, &[], warden_run());
    expect(r.code != Some(0), "native code ran")?;

    step(
        9,
        "A WASI preview 2 component, and a network connection it may not make",
    );
    let p2 = image("hello-p2", guests.bytes(Wasi::P2, "hello"));
    let r = ctr_run(&p2, &[], warden_run());
    expect(r.code == Some(0), "the component did not run")?;
    let connect = image("tcp-connect", guests.bytes(Wasi::P2, "tcp-connect"));
    let mut opts = warden_run();
    opts.net_host = true;
    let r = ctr_run(&connect, &["127.0.0.1:22"], opts);
    expect(r.code != Some(0), "the connection was not refused")?;
    say("even with the host's network namespace, no address is allowed unless granted.");

    step(
        10,
        "The audit log: what ran, from which bytes, with which rights, and what was installed",
    );
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

    step(
        11,
        "warden uninstall: exactly what install changed, taken back",
    );
    run_warden("uninstall")?;
    let config_after = std::fs::read(containerd.config_path()).map_err(|e| e.to_string())?;
    expect(
        config_after == config_before,
        "the config is not byte-identical after uninstall",
    )?;
    say("containerd's config is byte-identical to before the install; the shim is removed.");

    step(12, "Clean up");
    drop(containerd);
    say("containerd stopped, its mounts and files removed; nothing left running.");
    println!("\nDemo complete.");
    Ok(())
}

const PAUSE: &str = "localhost/demo/pause:1";

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
