//! containerd's two short-lived invocations of the shim binary, `start` and `delete`, handled
//! without containerd-shimkit's process setup.
//!
//! containerd runs the binary three times per container (runc's shim too): `start`, which
//! spawns the long-lived daemon and prints its address; the daemon itself; and `delete`,
//! which containerd runs after the daemon has exited. containerd-shimkit's `shim_main` forks
//! a zygote and starts a logger in it for every invocation, and asks the zygote for its
//! memory use on the way out, although only the daemon ever creates a container. Measured,
//! that was most of each short invocation's time, on the critical path of every `ctr run`
//! and every pod's start and removal. Here the two do exactly what containerd-shimkit's
//! `Shim` does for them (the same socket grouping, the same spawn, the same reply), through
//! containerd-shim's public helpers, and nothing else; the daemon and `-info` still go
//! through `shim_main`.
//!
//! A person running the binary by hand gets an answer here too, never a panic:
//! containerd-shimkit unwraps its argument parse and starts a daemon for any other word, so
//! `--help`, `--version`, a flag it does not know, an unknown action and a daemon invocation
//! without containerd's flags are answered before it runs.

use std::io::Write;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::{Flags, StartOpts, api};

/// The annotation CRI sets on every container of a pod: its sandbox's id. The containers of
/// one pod share one shim daemon (one socket), as with containerd-shimkit.
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// What the exit status of a container is taken to be when only `delete` can say anything:
/// its daemon is gone (containerd-shimkit's value).
const DEAD_SHIM_EXIT_STATUS: u32 = 137;

/// Which invocation the arguments ask for, with containerd's flags for the two handled
/// here.
#[derive(Debug)]
pub enum Action {
    Start(Box<Flags>),
    Delete(Box<Flags>),
    /// The long-lived daemon: containerd-shimkit's `shim_main`.
    Daemon,
    /// `-info`: containerd-shimkit's `shim_main` too.
    Info,
    /// `-v`, `-version`, `--version`.
    Version,
    /// `-h`, `-help`, `--help`.
    Help,
    /// Arguments containerd never passes; the message says what is wrong.
    Usage(String),
}

/// The invocation `args` (without the program name) ask for.
pub fn action_of(args: &[std::ffi::OsString]) -> Action {
    let wants = |names: &[&str]| args.iter().any(|a| names.iter().any(|n| a == n));
    if wants(&["-h", "-help", "--help"]) {
        return Action::Help;
    }
    if wants(&["-version", "--version"]) {
        return Action::Version;
    }
    let flags = match containerd_shim::parse(args) {
        Ok(flags) => flags,
        Err(e) => return Action::Usage(e.to_string()),
    };
    if flags.version {
        return Action::Version;
    }
    if flags.info {
        return Action::Info;
    }
    match flags.action.as_str() {
        "start" => Action::Start(Box::new(flags)),
        "delete" => Action::Delete(Box::new(flags)),
        // The daemon: `start` spawns it with these three, always.
        "" if flags.namespace.is_empty() || flags.id.is_empty() || flags.address.is_empty() => {
            Action::Usage(
                "containerd runs this binary, with -namespace, -id and -address; run \
                 `warden install` to register it"
                    .into(),
            )
        }
        "" => Action::Daemon,
        other => Action::Usage(format!(
            "unknown action {:?} (containerd's are start and delete)",
            warden_audit::escape_for_terminal(other)
        )),
    }
}

/// What `--help` prints.
fn usage(binary: &str) -> String {
    use warden_common::names::{
        DEFAULT_AUDIT_LOG, DEFAULT_POLICY_PATH, PROFILE_ANNOTATION, RUNTIME_TYPE,
    };
    format!(
        "{binary}: warden's containerd shim (runtime type {RUNTIME_TYPE}).

containerd runs this binary; people do not. It runs WebAssembly containers deny by default:
a module gets what the node policy ({DEFAULT_POLICY_PATH}, env WARDEN_POLICY) grants its
pod's namespace and profile ({PROFILE_ANNOTATION}), and every decision is appended to the
audit log ({DEFAULT_AUDIT_LOG}, env WARDEN_AUDIT_LOG). The WARDEN_* variables are read
from containerd's environment.

Register it with `warden install` (see `warden install --help`), then:
  ctr run --rm --runtime {RUNTIME_TYPE} IMAGE ID /app.wasm
or give a pod `runtimeClassName: warden`.

Flags:
  -v, --version   print the version and exit
  -h, --help      print this text and exit

containerd's own invocations: `start`, `delete`, `-info`, and the daemon
(-namespace NS -id ID -address ADDRESS).
"
    )
}

/// What the process does after [`handle`].
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Exit with this code: the invocation was answered.
    Exit(i32),
    /// Run as the daemon (containerd-shimkit's `shim_main`).
    Daemon,
    /// Answer `-info` (containerd-shimkit's `shim_main`).
    Info,
}

/// Handles every invocation but the daemon's and `-info`, and says what is left to do. An
/// error of `start` or `delete` is printed as containerd-shim prints its own (`warden: ...`
/// on stderr, exit code 1): containerd includes it in the create's or the cleanup's error.
/// Arguments containerd never passes exit 2.
pub fn handle(runtime_id: &str, version: &str, args: &[std::ffi::OsString]) -> Next {
    let binary = warden_common::names::SHIM_BINARY;
    let outcome = match action_of(args.get(1..).unwrap_or_default()) {
        Action::Start(flags) => start(*flags),
        Action::Delete(flags) => delete(&flags),
        Action::Daemon => return Next::Daemon,
        Action::Info => return Next::Info,
        Action::Version => {
            print!("{version}");
            return Next::Exit(0);
        }
        Action::Help => {
            print!("{}", usage(binary));
            return Next::Exit(0);
        }
        Action::Usage(message) => {
            eprintln!("{binary}: {message}\nRun `{binary} --help` for what this binary is.");
            return Next::Exit(2);
        }
    };
    Next::Exit(match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{runtime_id}: {e:#}");
            1
        }
    })
}

/// `start`: spawns the daemon on the pod's socket (or finds it already serving) and prints
/// the socket's address. Runs in the bundle directory.
fn start(flags: Flags) -> Result<()> {
    if flags.namespace.is_empty() {
        bail!("shim namespace cannot be empty");
    }
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").context("reading TTRPC_ADDRESS")?;
    let bundle = std::env::current_dir().context("finding the bundle directory")?;
    let config = bundle.join("config.json");
    let text = std::fs::read(&config)
        .with_context(|| format!("reading the runtime spec {}", config.display()))?;
    let grouping = grouping(&text, &flags.id)
        .with_context(|| format!("reading the runtime spec {}", config.display()))?;
    let opts = StartOpts {
        id: flags.id,
        publish_binary: flags.publish_binary,
        address: flags.address,
        ttrpc_address,
        namespace: flags.namespace,
        debug: flags.debug,
    };
    let (_pid, address) =
        containerd_shim::spawn(opts, &grouping, Vec::new()).context("spawning the shim daemon")?;
    containerd_shim::util::write_address(&address).context("writing the shim's address")?;
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the address to containerd")
}

/// The daemon a container joins: its pod's (the sandbox id CRI annotated), else its own.
fn grouping(spec_json: &[u8], id: &str) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Annotations {
        annotations: Option<std::collections::HashMap<String, String>>,
    }
    let spec: Annotations = serde_json::from_slice(spec_json)?;
    Ok(spec
        .annotations
        .as_ref()
        .and_then(|a| a.get(SANDBOX_ID))
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| id.to_string()))
}

/// `delete`: containerd's cleanup after the daemon has gone; replies with the exit status it
/// should assume.
fn delete(flags: &Flags) -> Result<()> {
    if flags.namespace.is_empty() {
        bail!("shim namespace cannot be empty");
    }
    let reply = delete_reply(SystemTime::now());
    let mut out = std::io::stdout().lock();
    reply
        .write_to_writer(&mut out)
        .context("writing the reply to containerd")?;
    out.flush().context("writing the reply to containerd")
}

fn delete_reply(now: SystemTime) -> api::DeleteResponse {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let exited_at = Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
        ..Default::default()
    };
    api::DeleteResponse {
        exit_status: DEAD_SHIM_EXIT_STATUS,
        exited_at: MessageField::some(exited_at),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(args: &[&str]) -> Action {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        action_of(&args)
    }

    #[test]
    fn only_start_and_delete_are_handled_here() {
        let base = [
            "-namespace",
            "k8s.io",
            "-id",
            "c1",
            "-address",
            "/run/c.sock",
        ];
        let with = |tail: &[&str]| {
            let mut a: Vec<&str> = base.to_vec();
            a.extend_from_slice(tail);
            action(&a)
        };
        assert!(matches!(with(&["start"]), Action::Start(f) if f.id == "c1"));
        assert!(matches!(with(&["delete"]), Action::Delete(f) if f.namespace == "k8s.io"));
        assert!(matches!(with(&[]), Action::Daemon), "the daemon");
        assert!(matches!(with(&["-info"]), Action::Info));
        assert!(matches!(with(&["-v"]), Action::Version));
        assert!(matches!(with(&["-v", "start"]), Action::Version));
    }

    #[test]
    fn what_a_person_types_is_answered_not_panicked_on() {
        for help in [
            &["--help"][..],
            &["-h"],
            &["-help"],
            &["-id", "x", "--help"],
        ] {
            assert!(matches!(action(help), Action::Help), "{help:?}");
        }
        for version in [&["--version"][..], &["-version"], &["-v"]] {
            assert!(matches!(action(version), Action::Version), "{version:?}");
        }
        let Action::Usage(m) = action(&["--bogus"]) else {
            panic!("an unknown flag is a usage error");
        };
        assert!(m.contains("bogus"), "{m}");
        let Action::Usage(m) = action(&["run", "-namespace", "x"]) else {
            panic!("an unknown action is a usage error");
        };
        assert!(m.contains("unknown action \"run\""), "{m}");
        let Action::Usage(m) = action(&[]) else {
            panic!("a daemon without containerd's flags is a usage error");
        };
        assert!(m.contains("-namespace, -id and -address"), "{m}");
        assert!(matches!(
            action(&["-namespace", "n", "-id", "i"]),
            Action::Usage(_)
        ));
    }

    #[test]
    fn the_help_names_the_runtime_and_how_to_register_it() {
        let text = usage("containerd-shim-warden-v1");
        assert!(text.contains("io.containerd.warden.v1"), "{text}");
        assert!(text.contains("warden install"), "{text}");
        assert!(text.contains("/etc/warden/policy.toml"), "{text}");
    }

    #[test]
    fn a_pods_containers_share_the_sandboxs_daemon() {
        let spec =
            br#"{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#;
        assert_eq!(grouping(spec, "c1").unwrap(), "pod1");
        let alone = br#"{"ociVersion":"1.0.2","process":{"args":["/x.wasm"]}}"#;
        assert_eq!(grouping(alone, "c1").unwrap(), "c1");
        let null = br#"{"ociVersion":"1.0.2","annotations":null}"#;
        assert_eq!(grouping(null, "c1").unwrap(), "c1");
        let empty = br#"{"annotations":{"io.kubernetes.cri.sandbox-id":""}}"#;
        assert_eq!(grouping(empty, "c1").unwrap(), "c1");
        assert!(grouping(b"{not json", "c1").is_err());
    }

    #[test]
    fn the_delete_reply_is_the_dead_shim_status_at_the_time_given() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        let bytes = delete_reply(at).write_to_bytes().unwrap();
        let back = api::DeleteResponse::parse_from_bytes(&bytes).unwrap();
        assert_eq!(back.exit_status, 137);
        assert_eq!(back.exited_at.seconds, 1_700_000_000);
        assert_eq!(back.exited_at.nanos, 5);
        assert_eq!(back.pid, 0);
    }
}
