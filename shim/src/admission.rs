//! Admission: whether a container may run, and with which grants, as a pure function of
//! what the host side gathered.
//!
//! `Instance::new` (see [`crate::instance`]) gathers the facts (the spec, the loaded policy or
//! its load error, the entrypoint's kind and digest, or why it could not be read), calls
//! [`admit`], and then does the I/O the answer asks for (resolve granted paths, compile,
//! audit). Nothing here touches a file, so every rule is table-tested below without root.
//!
//! The most specific rule wins: what is wrong with the entrypoint itself (missing, not a
//! regular file, a precompiled artifact, not Wasm at all) is refused before any profile is
//! chosen, so a `.cwasm` is `precompiled` whatever the profile lists, and such a refusal
//! names no profile, since none was decided.

use std::fmt;

use warden_audit::escape_for_terminal;
use warden_common::Digest;
use warden_policy::{Decision, Grants, Policy, Request, Rule};

use std::net::SocketAddr;

use warden_common::names::{
    DEFAULT_HTTP_ADDR, HTTP_ADDR_ENV, HTTP_ANNOTATION, UPSTREAM_HTTP_ADDR_ENV,
};

use crate::entrypoint::Kind;
use crate::facts::Facts;
use crate::run::Serve;

/// What admission needs to know about the entrypoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFacts {
    /// Its path in the container, as resolved.
    pub path: String,
    pub kind: Kind,
    /// The sha256 of a Wasm entrypoint's bytes.
    pub digest: Option<Digest>,
}

/// Everything the host side gathered before deciding.
pub struct Gathered<'a> {
    pub facts: &'a Facts,
    /// The node policy, or why it does not load.
    pub policy: Result<&'a Policy, String>,
    /// The entrypoint, or why it could not be read.
    pub entry: Result<EntryFacts, String>,
}

/// Why a container may not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The profile decided, if the refusal came after one was.
    pub profile: Option<String>,
    pub rule: Rule,
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warden refused to run the container: {} (",
            escape_for_terminal(&self.reason)
        )?;
        if let Some(p) = &self.profile {
            write!(f, "profile \"{}\", ", escape_for_terminal(p))?;
        }
        write!(f, "rule {})", self.rule)
    }
}

impl std::error::Error for Refusal {}

/// A container allowed to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub profile: String,
    pub grants: Grants,
    pub entry: EntryFacts,
    /// As a command, or served as WAGI.
    pub serve: Serve,
    /// Where it listens if it serves HTTP.
    pub http_addr: SocketAddr,
}

/// Decides. See the module comment for the order of the rules.
pub fn admit(g: Gathered<'_>) -> Result<Admitted, Refusal> {
    let refuse = |rule, reason: String| Refusal {
        profile: None,
        rule,
        reason,
    };
    let policy = g.policy.map_err(|e| {
        refuse(
            Rule::PolicyInvalid,
            format!("the node policy does not load, so nothing runs until it is fixed: {e}"),
        )
    })?;
    let entry = g.entry.map_err(|e| refuse(Rule::Entrypoint, e))?;
    match entry.kind {
        Kind::Precompiled => {
            return Err(refuse(
                Rule::Precompiled,
                format!(
                    "{} is {}; warden runs only code it compiled itself, ship the .wasm instead",
                    entry.path,
                    entry.kind.describe()
                ),
            ));
        }
        Kind::Unknown => {
            return Err(refuse(
                Rule::ModuleInvalid,
                format!("{} is {}", entry.path, entry.kind.describe()),
            ));
        }
        Kind::Module | Kind::Component | Kind::Elf | Kind::Script => {}
    }
    let f = g.facts;
    let request = Request {
        namespace: f.namespace.clone(),
        requested_profile: f.requested_profile.clone(),
        env: f.env_pairs(),
        mounts: f.mounts.clone(),
        module_digest: entry.digest.as_ref().map(Digest::to_string),
        native: entry.kind.is_native(),
        sandbox: f.sandbox,
    };
    match policy.decide(&request) {
        Decision::Allow {
            profile,
            mut grants,
        } => {
            let refuse = |rule, reason| Refusal {
                profile: Some(profile.clone()),
                rule,
                reason,
            };
            // `warden.dev/http` is a pod annotation, so CRI hands it to the pod's sandbox
            // (pause) container too: it asks how the pod's workloads are served, and the
            // sandbox is never served.
            let mode = if f.sandbox {
                None
            } else {
                f.http_mode.as_deref()
            };
            let serve =
                serve_mode(mode, &entry, &grants).map_err(|(rule, reason)| refuse(rule, reason))?;
            let http_addr =
                http_addr(&f.env_pairs()).map_err(|reason| refuse(Rule::Http, reason))?;
            // The address is the server's, not the guest's business.
            grants
                .env
                .retain(|(k, _)| k != HTTP_ADDR_ENV && k != UPSTREAM_HTTP_ADDR_ENV);
            Ok(Admitted {
                profile,
                grants,
                entry,
                serve,
                http_addr,
            })
        }
        Decision::Deny {
            profile,
            rule,
            reason,
        } => {
            let reason = if entry.kind.is_native() {
                format!("{} is {}: {reason}", entry.path, entry.kind.describe())
            } else {
                reason
            };
            Err(Refusal {
                profile: Some(profile),
                rule,
                reason,
            })
        }
    }
}

/// How the container asked to be served (`warden.dev/http`), if it may be.
fn serve_mode(
    mode: Option<&str>,
    entry: &EntryFacts,
    grants: &Grants,
) -> Result<Serve, (Rule, String)> {
    match mode {
        None => Ok(Serve::Command),
        Some("wagi") if entry.kind != Kind::Module => Err((
            Rule::Http,
            format!(
                "{HTTP_ANNOTATION}=wagi serves WASI preview 1 modules; {} is {} (a wasi:http \
                 component is served without the annotation)",
                entry.path,
                entry.kind.describe()
            ),
        )),
        Some("wagi") if !grants.http.wagi => Err((
            Rule::HttpWagi,
            format!("the profile does not allow serving {} as WAGI", entry.path),
        )),
        Some("wagi") => Ok(Serve::Wagi),
        Some(other) => Err((
            Rule::Http,
            format!(
                "{HTTP_ANNOTATION}={:?} is not understood (the one value is \"wagi\")",
                escape_for_terminal(other)
            ),
        )),
    }
}

/// The listen address the container's env names (`WARDEN_HTTP_ADDR`, else upstream's
/// `WASMTIME_HTTP_PROXY_SOCKET_ADDR`), else [`DEFAULT_HTTP_ADDR`]. `IP:PORT`, `[IPv6]:PORT`,
/// or `:PORT` for every IPv4 address.
pub fn http_addr(env: &[(String, String)]) -> Result<SocketAddr, String> {
    fn named<'a>(env: &'a [(String, String)], name: &'a str) -> Option<(&'a str, &'a String)> {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| (name, v))
    }
    let Some((name, value)) =
        named(env, HTTP_ADDR_ENV).or_else(|| named(env, UPSTREAM_HTTP_ADDR_ENV))
    else {
        return DEFAULT_HTTP_ADDR
            .parse()
            .map_err(|_| "the default listen address does not parse".into());
    };
    let text = match value.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => value.clone(),
    };
    text.parse().map_err(|_| {
        format!(
            "{name}={:?} is not a listen address (IP:PORT, [IPv6]:PORT or :PORT)",
            escape_for_terminal(value)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"version = 1
[namespaces.team]
default = "team-app"

[profiles.team-app]
namespaces = ["team"]
env = ["LOG_LEVEL"]
modules = ["sha256:1111111111111111111111111111111111111111111111111111111111111111"]

[profiles.native-ok]
namespaces = ["team"]
native = true

[profiles.elsewhere]
namespaces = ["other"]
"#;

    const GOOD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn facts(ns: &str, profile: Option<&str>) -> Facts {
        Facts {
            namespace: ns.into(),
            requested_profile: profile.map(str::to_owned),
            env: vec!["LOG_LEVEL=debug".into(), "SECRET=x".into()],
            ..Facts::default()
        }
    }

    fn entry(kind: Kind, digest: Option<&str>) -> Result<EntryFacts, String> {
        Ok(EntryFacts {
            path: "/app.wasm".into(),
            kind,
            digest: digest.map(|d| d.parse().unwrap()),
        })
    }

    /// One row: the inputs and the refusal (rule, profile, exact message) or the profile
    /// allowed.
    struct Case {
        name: &'static str,
        ns: &'static str,
        profile: Option<&'static str>,
        policy_error: Option<&'static str>,
        entry: Result<EntryFacts, String>,
        want: Result<&'static str, (Rule, Option<&'static str>, &'static str)>,
    }

    #[test]
    fn every_rule_with_the_message_a_user_sees() {
        let policy = Policy::parse(POLICY, "/etc/warden/policy.toml").unwrap();
        let cases = vec![
            Case {
                name: "a policy that does not load refuses everything",
                ns: "team",
                profile: None,
                policy_error: Some("/etc/warden/policy.toml:3: unknown key 'x'"),
                entry: entry(Kind::Module, Some(GOOD)),
                want: Err((
                    Rule::PolicyInvalid,
                    None,
                    "warden refused to run the container: the node policy does not load, so \
                     nothing runs until it is fixed: /etc/warden/policy.toml:3: unknown key \
                     'x' (rule policy.invalid)",
                )),
            },
            Case {
                name: "an entrypoint that cannot be read",
                ns: "team",
                profile: None,
                policy_error: None,
                entry: Err("entrypoint /app.wasm is a FIFO, not a regular file".into()),
                want: Err((
                    Rule::Entrypoint,
                    None,
                    "warden refused to run the container: entrypoint /app.wasm is a FIFO, not \
                     a regular file (rule entrypoint)",
                )),
            },
            Case {
                name: "a .cwasm is precompiled whatever the profile's modules list says",
                ns: "team",
                profile: None,
                policy_error: None,
                entry: entry(Kind::Precompiled, Some(OTHER)),
                want: Err((
                    Rule::Precompiled,
                    None,
                    "warden refused to run the container: /app.wasm is a wasmtime precompiled \
                     artifact (native code); warden runs only code it compiled itself, ship \
                     the .wasm instead (rule precompiled)",
                )),
            },
            Case {
                name: "bytes that are nothing runnable",
                ns: "team",
                profile: None,
                policy_error: None,
                entry: entry(Kind::Unknown, Some(OTHER)),
                want: Err((
                    Rule::ModuleInvalid,
                    None,
                    "warden refused to run the container: /app.wasm is neither Wasm nor a \
                     native executable (rule module.invalid)",
                )),
            },
            Case {
                name: "an unknown profile",
                ns: "team",
                profile: Some("nope"),
                policy_error: None,
                entry: entry(Kind::Module, Some(GOOD)),
                want: Err((
                    Rule::ProfileUnknown,
                    Some("nope"),
                    "warden refused to run the container: profile 'nope' is not defined in \
                     /etc/warden/policy.toml (profile \"nope\", rule profile.unknown)",
                )),
            },
            Case {
                name: "a profile the namespace may not use",
                ns: "team",
                profile: Some("elsewhere"),
                policy_error: None,
                entry: entry(Kind::Module, Some(GOOD)),
                want: Err((
                    Rule::ProfileNamespace,
                    Some("elsewhere"),
                    "warden refused to run the container: namespace 'team' may not use \
                     profile 'elsewhere' (its namespaces: [other]) (profile \"elsewhere\", \
                     rule profile.namespace)",
                )),
            },
            Case {
                name: "a module not in the digest list",
                ns: "team",
                profile: None,
                policy_error: None,
                entry: entry(Kind::Module, Some(OTHER)),
                want: Err((
                    Rule::Modules,
                    Some("team-app"),
                    "warden refused to run the container: module sha256:2222222222222222222222222222222222222222222222222222222222222222 \
                     is not in the modules list of profile 'team-app' (profile \"team-app\", \
                     rule modules)",
                )),
            },
            Case {
                name: "native code under a profile without native",
                ns: "team",
                profile: None,
                policy_error: None,
                entry: Ok(EntryFacts {
                    path: "/bin/app".into(),
                    kind: Kind::Elf,
                    digest: None,
                }),
                want: Err((
                    Rule::Native,
                    Some("team-app"),
                    "warden refused to run the container: /bin/app is a native ELF \
                     executable: the entrypoint is not WebAssembly and profile 'team-app' \
                     does not set native = true (profile \"team-app\", rule native)",
                )),
            },
            Case {
                name: "native code where granted",
                ns: "team",
                profile: Some("native-ok"),
                policy_error: None,
                entry: Ok(EntryFacts {
                    path: "/bin/app".into(),
                    kind: Kind::Script,
                    digest: None,
                }),
                want: Ok("native-ok"),
            },
            Case {
                name: "a listed module under the namespace default",
                ns: "team",
                profile: None,
                policy_error: None,
                entry: entry(Kind::Component, Some(GOOD)),
                want: Ok("team-app"),
            },
            Case {
                name: "anything else runs strict",
                ns: "default",
                profile: None,
                policy_error: None,
                entry: entry(Kind::Module, Some(OTHER)),
                want: Ok("strict"),
            },
        ];
        for c in cases {
            let f = facts(c.ns, c.profile);
            let got = admit(Gathered {
                facts: &f,
                policy: match c.policy_error {
                    Some(e) => Err(e.to_string()),
                    None => Ok(&policy),
                },
                entry: c.entry,
            });
            match (got, c.want) {
                (Ok(a), Ok(profile)) => assert_eq!(a.profile, profile, "{}", c.name),
                (Err(r), Err((rule, profile, message))) => {
                    assert_eq!(r.rule, rule, "{}", c.name);
                    assert_eq!(r.profile.as_deref(), profile, "{}", c.name);
                    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
                    assert_eq!(r.to_string(), message, "{}", c.name);
                }
                (got, want) => panic!("{}: got {got:?}, want {:?}", c.name, want.map(|_| ())),
            }
        }
    }

    /// Admits a pod sandbox's `/pause` with `facts`.
    fn admit_pause(facts: &Facts, policy: &Policy) -> Admitted {
        admit(Gathered {
            facts,
            policy: Ok(policy),
            entry: Ok(EntryFacts {
                path: "/pause".into(),
                kind: Kind::Elf,
                digest: None,
            }),
        })
        .unwrap()
    }

    #[test]
    fn only_granted_env_passes_and_a_pod_sandbox_is_native() {
        let policy = Policy::parse(POLICY, "p.toml").unwrap();
        let f = facts("team", None);
        let a = admit(Gathered {
            facts: &f,
            policy: Ok(&policy),
            entry: entry(Kind::Module, Some(GOOD)),
        })
        .unwrap();
        assert_eq!(a.grants.env, vec![("LOG_LEVEL".into(), "debug".into())]);
        let sandbox = Facts {
            sandbox: true,
            ..facts("team", None)
        };
        let a = admit_pause(&sandbox, &policy);
        assert!(a.grants.native);
        assert!(matches!(a.serve, Serve::Command));
    }

    #[test]
    fn a_wagi_pods_sandbox_runs_as_a_command() {
        // CRI passes the pod's `warden.dev/http=wagi` to its pause container as well.
        let policy = Policy::parse(POLICY, "p.toml").unwrap();
        let sandbox = Facts {
            sandbox: true,
            http_mode: Some("wagi".into()),
            ..facts("team", None)
        };
        let a = admit_pause(&sandbox, &policy);
        assert!(matches!(a.serve, Serve::Command));
        // The pod's module container is still served as WAGI.
        let workload = Facts {
            http_mode: Some("wagi".into()),
            ..facts("team", None)
        };
        let a = admit(Gathered {
            facts: &workload,
            policy: Ok(&policy),
            entry: entry(Kind::Module, Some(GOOD)),
        })
        .unwrap();
        assert!(matches!(a.serve, Serve::Wagi));
    }

    #[test]
    fn control_characters_in_a_refusal_are_escaped() {
        let r = Refusal {
            profile: Some("p\u{1b}[2J".into()),
            rule: Rule::Entrypoint,
            reason: "entrypoint \"/a\u{1b}[31m\" not found".into(),
        };
        let text = r.to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("\\x1b[31m"), "{text}");
    }

    #[test]
    fn serving_follows_the_annotation_and_the_profile() {
        let policy = Policy::parse(
            r#"version = 1
[profiles.no-wagi]
namespaces = ["*"]
env = ["*"]
[profiles.no-wagi.http]
wagi = false
"#,
            "/etc/warden/policy.toml",
        )
        .unwrap();
        let run = |profile: Option<&str>, mode: Option<&str>, kind: Kind, env: &[&str]| {
            let f = Facts {
                namespace: "team".into(),
                requested_profile: profile.map(str::to_owned),
                http_mode: mode.map(str::to_owned),
                env: env.iter().map(|e| e.to_string()).collect(),
                ..Facts::default()
            };
            admit(Gathered {
                facts: &f,
                policy: Ok(&policy),
                entry: entry(kind, Some(GOOD)),
            })
        };
        let a = run(None, None, Kind::Component, &[]).unwrap();
        assert_eq!(a.serve, Serve::Command);
        assert_eq!(a.http_addr, "0.0.0.0:8080".parse().unwrap());
        let a = run(None, Some("wagi"), Kind::Module, &[]).unwrap();
        assert_eq!(a.serve, Serve::Wagi);

        let r = run(Some("no-wagi"), Some("wagi"), Kind::Module, &[]).unwrap_err();
        assert_eq!(r.rule, Rule::HttpWagi);
        assert_eq!(r.profile.as_deref(), Some("no-wagi"));
        let r = run(None, Some("wagi"), Kind::Component, &[]).unwrap_err();
        assert_eq!(r.rule, Rule::Http);
        assert!(r.reason.contains("component"), "{}", r.reason);
        let r = run(None, Some("cgi"), Kind::Module, &[]).unwrap_err();
        assert_eq!(r.rule, Rule::Http);

        // The address variables choose the address and never reach the guest.
        let a = run(
            Some("no-wagi"),
            None,
            Kind::Component,
            &[
                "WARDEN_HTTP_ADDR=127.0.0.1:9090",
                "WASMTIME_HTTP_PROXY_SOCKET_ADDR=0.0.0.0:1",
                "A=b",
            ],
        )
        .unwrap();
        assert_eq!(a.http_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(a.grants.env, [("A".to_owned(), "b".to_owned())]);
        let a = run(
            None,
            None,
            Kind::Component,
            &["WASMTIME_HTTP_PROXY_SOCKET_ADDR=[::1]:81"],
        )
        .unwrap();
        assert_eq!(a.http_addr, "[::1]:81".parse().unwrap());
        let a = run(None, None, Kind::Component, &["WARDEN_HTTP_ADDR=:9000"]).unwrap();
        assert_eq!(a.http_addr, "0.0.0.0:9000".parse().unwrap());
        let r = run(
            None,
            None,
            Kind::Component,
            &["WARDEN_HTTP_ADDR=localhost:80"],
        )
        .unwrap_err();
        assert_eq!(r.rule, Rule::Http);
        assert!(r.reason.contains("WARDEN_HTTP_ADDR"), "{}", r.reason);
    }
}
