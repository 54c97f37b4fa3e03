//! The installer: `warden plan` and a no-op `warden install` (the re-run on an installed
//! node: nothing written, no restart) against the config of a private containerd with CRI,
//! as the installer's live tests set it up, and against the floor of starting `warden` at
//! all (`warden --version`). The first install (writes, restart through a script, CRI
//! verification) is timed once.
//!
//! The `warden` binary: `WARDEN_BIN`, else `<target>/<profile>/warden`, built when missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use warden_common::Digest;
use warden_test::containerd::{Containerd, Options};

use crate::machine::Machine;
use crate::report::{Section, Table};
use crate::stats::Samples;
use crate::{Bench, warden_options};

const FLOOR: &str = "warden --version (process start and exit)";
/// No-op installs with CRI verification (a RunPodSandbox each) at most.
const VERIFIED_RUNS: usize = 5;

pub fn run(b: &Bench, machine: &mut Machine) -> Result<Section> {
    let warden = warden_binary()?;
    let files = tempfile::Builder::new()
        .prefix("warden-bench-install-")
        .tempdir()
        .context("temp dir")?;
    let dir = files.path();
    std::fs::copy(b.files.path().join("policy.toml"), dir.join("policy.toml"))
        .context("copying the policy")?;
    let install_dir = dir.join("bin");
    let options = Options {
        cri: true,
        shim_dir: Some(install_dir.clone()),
        namespace: "k8s.io".into(),
        extra_config: format!(
            "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"{}\"\n",
            warden_test::sandbox::PAUSE_IMAGE
        ),
        ..warden_options(dir)
    };
    let env = options.env.clone();
    let c = Containerd::start(options);
    machine.containerd.push(c.version().to_string());
    c.import_image(&warden_test::sandbox::pause_image());
    let shim = dir.join("shipped/containerd-shim-warden-v1");
    std::fs::create_dir_all(dir.join("shipped")).context("shipped dir")?;
    std::fs::copy(warden_test::shim::shim_binary(), &shim).context("copying the shim")?;
    let shim_bytes = std::fs::read(&shim).context("reading the shim")?;
    let shim_digest = Digest::of(&shim_bytes).to_string();
    let restart = dir.join("restart.sh");
    c.write_restart_script(&restart, &env, Some(&dir.join("restarts.log")));

    let command = |sub: &str, extra: &[&str]| {
        let mut cmd = Command::new(&warden);
        cmd.arg(sub)
            .arg("--config")
            .arg(c.config_path())
            .arg("--install-dir")
            .arg(&install_dir)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--audit-log")
            .arg(dir.join("audit-install.jsonl"))
            .arg("--policy")
            .arg(dir.join("policy.toml"))
            .arg("--restart-command")
            .arg(&restart)
            .arg("--verify-timeout")
            .arg("60");
        let v = c.version();
        cmd.arg("--containerd-version")
            .arg(format!("{}.{}.{}", v.major, v.minor, v.patch))
            .arg("--shim")
            .arg(&shim)
            .arg("--shim-digest")
            .arg(&shim_digest)
            .args(extra);
        cmd
    };
    let timed = |mut cmd: Command| -> Result<(Duration, String)> {
        let t = Instant::now();
        let out = cmd.output().context("cannot run warden")?;
        let took = t.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "{cmd:?}: {}\n{text}{}\n--- containerd log (end) ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            c.log_tail(20)
        );
        Ok((took, text))
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let repeat = |n: usize, f: &dyn Fn() -> Command| -> Result<Samples> {
        timed(f())?;
        (0..n)
            .map(|_| timed(f()).map(|(d, _)| ms(d)))
            .collect::<Result<Vec<_>>>()
            .map(Samples)
    };

    let floor = repeat(b.runs, &|| {
        let mut cmd = Command::new(&warden);
        cmd.arg("--version");
        cmd
    })?;
    let plan = repeat(b.runs, &|| command("plan", &[]))?;
    let (first, text) = timed(command("install", &[]))?;
    if !text.contains("RunPodSandbox with handler `warden` accepted") {
        bail!("the first install did not verify through CRI:\n{text}");
    }
    let noop = repeat(b.runs, &|| command("install", &["--no-verify"]))?;
    let verified = repeat(b.runs.min(VERIFIED_RUNS), &|| command("install", &[]))?;
    let restarts = std::fs::read_to_string(dir.join("restarts.log"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    ensure!(
        restarts == 1,
        "containerd was restarted {restarts} times, not once"
    );

    let mut t = Table::new(
        "warden CLI, against a private containerd's config",
        "ms",
        FLOOR,
    );
    t.measured(FLOOR, &floor);
    t.measured("warden plan (before the install)", &plan);
    t.measured("warden install, no-op re-run, --no-verify", &noop);
    t.measured(
        "warden install, no-op re-run, CRI verification (a RunPodSandbox)",
        &verified,
    );
    t.measured(
        "warden install, first run: write, restart containerd, CRI verification",
        &Samples(vec![ms(first)]),
    );
    let mut s = Section::new("installer", "Installer");
    s.table(t);
    s.note(format!(
        "containerd {} with CRI; the shim under test copied in as the shipped binary ({:.1} MB; plan and install hash it to check its digest, so their times grow with its size); the restart is `Containerd::write_restart_script` (SIGTERM, start, wait for the socket). One restart in all: the re-runs changed nothing.",
        c.version(),
        shim_bytes.len() as f64 / 1e6
    ));
    Ok(s)
}

/// The `warden` binary to measure.
fn warden_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("WARDEN_BIN") {
        return Ok(PathBuf::from(path));
    }
    let profile = warden_test::shim::profile();
    let path = warden_test::target_dir().join(profile).join("warden");
    if !path.is_file() {
        build(profile, &path)?;
    }
    Ok(path)
}

fn build(profile: &str, path: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(warden_test::workspace_root()).args([
        "build",
        "-p",
        "warden-installer",
        "--bin",
        "warden",
    ]);
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status().context("cannot run cargo")?;
    ensure!(
        status.success() && path.is_file(),
        "cargo build of warden failed ({status})"
    );
    Ok(())
}
