//! `warden`, the node CLI. Parsing and dispatch only; the commands live in the library
//! (`warden_installer::*_cmd`, `warden_installer::install`) where they are unit-tested.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use warden_installer::install::{
    self, Failed, Format, InstallArgs, Outcome, PlanArgs, Refusal, UninstallArgs, VerifyArgs,
};
use warden_installer::{audit_cmd::AuditCommand, daemon, policy_cmd::PolicyCommand};

/// warden: run WebAssembly on this Kubernetes node under a deny-by-default policy.
///
/// Paths default to /etc/warden/policy.toml and /var/log/warden/audit.jsonl; the
/// environment variables WARDEN_POLICY and WARDEN_AUDIT_LOG override them, and flags
/// override both.
#[derive(Debug, Parser)]
#[command(name = "warden", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per top-level command; each carries its own subcommands or arguments.
#[derive(Debug, Subcommand)]
enum Command {
    /// Install the shim and register the `warden` runtime with containerd.
    ///
    /// Detects the node (distribution, containerd config and version, drop-in imports,
    /// cgroup driver), verifies the shim's SHA-256, installs it atomically into the install
    /// dir, adds the `warden` runtime to containerd's config (a drop-in where containerd
    /// merges one, else the main file, keeping its comments and formatting), restarts
    /// containerd only if its config changed, then checks through CRI that containerd knows
    /// the handler and accepts a pod with it. If that check fails, the previous config is
    /// restored and containerd restarted again.
    ///
    /// Every change is recorded in the state dir (install.json, backups) before it is
    /// made and in the audit log after; a run killed at any point is finished by the next.
    /// Running it again on an installed node changes nothing and restarts nothing. Refuses,
    /// changing nothing, on: an unparsable config, config version 1, a shim digest
    /// mismatch, an unknown layout, a read-only install dir, an immutable OS, a
    /// distribution mismatch, a full disk; and on any path a local user could use against
    /// it: an install, state, config or audit log dir (or a parent) not owned by root or
    /// writable by others, a symlinked lock or state, a state naming paths outside the dirs
    /// warden manages, a config, policy or .sha256 that is not a regular file or too big.
    ///
    /// With --daemon (what the DaemonSet runs) it stays running, re-checks and repairs, and
    /// labels the node; SIGTERM ends it with status 0 without uninstalling and without
    /// removing the node's label (see --daemon).
    Install(InstallArgs),
    /// Undo `install`: remove only what the state proves warden made.
    ///
    /// Config files warden wrote are restored byte for byte from their backups (or
    /// removed, if warden created them); a file someone changed since only loses the
    /// `warden` runtime. containerd is restarted if a config changed, the shim is removed,
    /// and the state is deleted. Without a state, nothing is touched.
    Uninstall(UninstallArgs),
    /// Show what `install` would do, and change nothing.
    ///
    /// Prints the detected layout, the shim's action, the exact diff of every file install
    /// would write, and whether (and how) containerd would be restarted. Refuses exactly as
    /// install would. Writes nothing, not even the state dir.
    Plan(PlanArgs),
    /// Check that warden is installed as its state says.
    ///
    /// The shim's digest, every config file warden wrote, the `warden` runtime still
    /// registered as wanted, and containerd: it knows the handler and accepts a pod with
    /// it. Exits 1 naming what is wrong.
    Verify(VerifyArgs),
    /// Verify, pin and read the tamper-evident audit log.
    ///
    /// `verify` catches edits, removals from the start or middle, reorders and torn lines;
    /// only a pin kept off the node (`head`, then `verify --pin`) catches a deleted or
    /// replaced last line or a log rewritten from scratch, and nothing catches lines
    /// appended after the latest pin by someone who can write the file.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check the node policy and what it grants.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let node_command = |format: Format, result: anyhow::Result<Outcome>, out: &mut dyn Write| {
        node_report(format, result, out)
    };
    let result = match &cli.command {
        Command::Install(args) if args.daemon => {
            // The daemon logs as it goes; stdout must not stay locked.
            drop(stdout);
            return match daemon::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Install(args) if args.uninstall_mode => Err(anyhow::anyhow!(
            "WARDEN_UNINSTALL (--uninstall-mode) applies to `install --daemon` only; to \
             uninstall by hand run `warden uninstall`"
        )),
        Command::Install(args) => Ok(node_command(
            args.node.output,
            install::install(args),
            &mut stdout,
        )),
        Command::Uninstall(args) => Ok(node_command(
            args.node.output,
            daemon::uninstall_with_label(args),
            &mut stdout,
        )),
        Command::Plan(args) => Ok(node_command(
            args.node.output,
            install::plan(args),
            &mut stdout,
        )),
        Command::Verify(args) => Ok(node_command(
            args.node.output,
            install::verify(args),
            &mut stdout,
        )),
        Command::Audit(cmd) => cmd.run(&mut stdout),
        Command::Policy(cmd) => cmd.run(&mut stdout),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a node command's report, or its error (on stderr, and as JSON on stdout with
/// `--output json`); returns the exit status.
fn node_report(format: Format, result: anyhow::Result<Outcome>, out: &mut dyn Write) -> u8 {
    match result {
        Ok(outcome) => match outcome.print(format, out) {
            Ok(()) => outcome.code,
            Err(e) => {
                eprintln!("error: cannot print the report: {e}");
                1
            }
        },
        Err(e) => {
            let refused = e.downcast_ref::<Refusal>().is_some();
            let failed = e.downcast_ref::<Failed>().is_some();
            let message = format!("{e:#}");
            if refused {
                eprintln!("refused: {message}\nnothing was changed");
            } else {
                eprintln!("error: {message}");
            }
            if format == Format::Json {
                let result = if refused {
                    "refused"
                } else if failed {
                    "failed"
                } else {
                    "error"
                };
                let doc = json!({
                    "ok": false,
                    "result": result,
                    "error": message,
                    "changed": !refused,
                });
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&doc).unwrap_or_default()
                );
            }
            1
        }
    }
}
