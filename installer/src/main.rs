//! `warden`, the node CLI. Parsing and dispatch only; the commands live in the library
//! (`warden_installer::*_cmd`) where they are unit-tested.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use warden_installer::{audit_cmd::AuditCommand, policy_cmd::PolicyCommand};

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
    /// Verify and read the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check the node policy and what it grants.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let result = match &cli.command {
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
