//! Selecting a profile for a container and deciding whether it may run.
//!
//! This is a pure function of the policy and what the shim read from the bundle, so the
//! rules are tested as a table without containerd.

use std::fmt;

use serde::Serialize;

use crate::policy::{Policy, Profile};
use crate::{Grants, PolicyError, STRICT_PROFILE};

/// What the shim knows about a container when it decides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Kubernetes namespace of the pod; for `ctr`, the containerd namespace.
    pub namespace: String,
    /// Value of the `warden.dev/profile` annotation, if present.
    pub requested_profile: Option<String>,
    /// The container's env, as in the OCI spec. Only names the profile passes get through.
    pub env: Vec<(String, String)>,
    /// Container mount destinations from the OCI spec. Not consulted: profile mounts are
    /// granted as written (the shim checks that they exist), and nothing the pod mounts
    /// can add a grant. Kept so that the decision input is complete for the audit record.
    pub mounts: Vec<String>,
    /// `sha256:<hex>` of the module about to run, if it is Wasm and known.
    pub module_digest: Option<String>,
    /// The entrypoint is not Wasm (ELF, `#!` script).
    pub native: bool,
    /// The Kubernetes pod sandbox (pause) container, which always runs natively.
    pub sandbox: bool,
}

/// The stable name of the rule behind a refusal; shown to users and written to the audit
/// log, so scripts may match on it. Every refusal a user can see has one: the policy's own
/// (profile, modules, native) and the shim's about the entrypoint and granted paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Rule {
    /// The requested profile exists but this namespace may not use it.
    #[serde(rename = "profile.namespace")]
    ProfileNamespace,
    /// The requested profile is not defined.
    #[serde(rename = "profile.unknown")]
    ProfileUnknown,
    /// The module digest is not in the profile's `modules` list (or is unknown).
    #[serde(rename = "modules")]
    Modules,
    /// A non-Wasm entrypoint under a profile without `native = true`.
    #[serde(rename = "native")]
    Native,
    /// The policy file does not load; everything is refused until it is fixed.
    #[serde(rename = "policy.invalid")]
    PolicyInvalid,
    /// The entrypoint cannot be run at all: missing, not a regular file, too large.
    #[serde(rename = "entrypoint")]
    Entrypoint,
    /// The entrypoint is a wasmtime precompiled artifact: native code warden did not compile.
    #[serde(rename = "precompiled")]
    Precompiled,
    /// The entrypoint's bytes are neither a valid module or component nor a native executable.
    #[serde(rename = "module.invalid")]
    ModuleInvalid,
    /// A granted path cannot be granted as it is (a symlink, not a directory, a pseudo file
    /// system).
    #[serde(rename = "mounts")]
    Mounts,
    /// How the container asks to be served over HTTP is not understood: an unknown
    /// `warden.dev/http` value, WAGI for a component, a listen address that is not one.
    #[serde(rename = "http")]
    Http,
    /// WAGI asked for under a profile with `http.wagi = false`.
    #[serde(rename = "http.wagi")]
    HttpWagi,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::ProfileNamespace => "profile.namespace",
            Rule::ProfileUnknown => "profile.unknown",
            Rule::Modules => "modules",
            Rule::Native => "native",
            Rule::PolicyInvalid => "policy.invalid",
            Rule::Entrypoint => "entrypoint",
            Rule::Precompiled => "precompiled",
            Rule::ModuleInvalid => "module.invalid",
            Rule::Mounts => "mounts",
            Rule::Http => "http",
            Rule::HttpWagi => "http.wagi",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a profile was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectedBy {
    /// The pod's `warden.dev/profile` annotation.
    Annotation,
    /// The namespace's `default`.
    NamespaceDefault,
    /// Nothing chose one: the built-in `strict`.
    BuiltIn,
}

impl SelectedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectedBy::Annotation => "annotation",
            SelectedBy::NamespaceDefault => "namespace-default",
            SelectedBy::BuiltIn => "built-in",
        }
    }
}

/// A refusal, with the profile it concerns and the rule that refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Denial {
    pub profile: String,
    pub rule: Rule,
    pub reason: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "denied by warden policy: profile '{}', rule {}: {}",
            self.profile, self.rule, self.reason
        )
    }
}

impl std::error::Error for Denial {}

/// The outcome for one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    Allow {
        profile: String,
        grants: Grants,
    },
    Deny {
        profile: String,
        rule: Rule,
        reason: String,
    },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// `"allow"` or `"deny"`, as written to the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
        }
    }

    pub fn profile(&self) -> &str {
        match self {
            Decision::Allow { profile, .. } | Decision::Deny { profile, .. } => profile,
        }
    }

    /// The refusal to give every container while the policy file does not load.
    pub fn policy_invalid(err: &PolicyError) -> Decision {
        Decision::Deny {
            profile: STRICT_PROFILE.to_owned(),
            rule: Rule::PolicyInvalid,
            reason: format!(
                "the node policy does not load, so nothing runs until it is fixed: {err}"
            ),
        }
    }
}

impl From<Denial> for Decision {
    fn from(d: Denial) -> Self {
        Decision::Deny {
            profile: d.profile,
            rule: d.rule,
            reason: d.reason,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow { profile, grants } => {
                write!(f, "allowed with profile '{profile}': {}", grants.summary())
            }
            Decision::Deny {
                profile,
                rule,
                reason,
            } => write!(
                f,
                "denied by warden policy: profile '{profile}', rule {rule}: {reason}"
            ),
        }
    }
}

/// What a namespace gets from the policy, before any container's env is applied: the
/// answer `warden policy check --namespace` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub profile: String,
    pub selected_by: SelectedBy,
    /// The profile itself (env globs, modules list, and all grants).
    pub grants: Profile,
}

impl Policy {
    /// Picks the profile for a pod in `namespace` that asks for `requested` (or nothing).
    ///
    /// Asking for a profile that does not exist, or that the namespace may not use, is a
    /// denial, never a fallback: a pod that asked for more than it may have must not run
    /// with something else silently. `strict` may always be asked for.
    pub fn effective(&self, namespace: &str, requested: Option<&str>) -> Result<Effective, Denial> {
        let ns_default = self
            .namespace(namespace)
            .and_then(|ns| ns.default.as_deref());
        let (name, selected_by) = match (requested, ns_default) {
            (Some(r), _) => (r, SelectedBy::Annotation),
            (None, Some(d)) => (d, SelectedBy::NamespaceDefault),
            (None, None) => (STRICT_PROFILE, SelectedBy::BuiltIn),
        };
        if name == STRICT_PROFILE {
            return Ok(Effective {
                profile: STRICT_PROFILE.to_owned(),
                selected_by,
                grants: Profile::strict(),
            });
        }
        let Some(profile) = self.profile(name) else {
            return Err(Denial {
                profile: name.to_owned(),
                rule: Rule::ProfileUnknown,
                reason: format!("profile '{name}' is not defined in {}", self.source()),
            });
        };
        let by_default = ns_default == Some(name);
        if !by_default && !profile.allows_namespace(namespace) {
            return Err(Denial {
                profile: name.to_owned(),
                rule: Rule::ProfileNamespace,
                reason: format!(
                    "namespace '{namespace}' may not use profile '{name}' (its namespaces: [{}])",
                    profile.namespaces.join(", ")
                ),
            });
        }
        Ok(Effective {
            profile: name.to_owned(),
            selected_by,
            grants: profile.clone(),
        })
    }

    /// Decides whether a container may run, and with which grants.
    pub fn decide(&self, req: &Request) -> Decision {
        if req.sandbox {
            // The pause container holds the pod's namespaces and runs no user code; it gets
            // nothing but the right to be native. Refusing it would hide the real reason
            // (the workload container's denial) behind a sandbox failure.
            return Decision::Allow {
                profile: STRICT_PROFILE.to_owned(),
                grants: Grants {
                    native: true,
                    ..Grants::strict()
                },
            };
        }
        let eff = match self.effective(&req.namespace, req.requested_profile.as_deref()) {
            Ok(e) => e,
            Err(d) => return d.into(),
        };
        let profile = eff.profile;
        if req.native {
            if !eff.grants.native {
                return Decision::Deny {
                    reason: format!(
                        "the entrypoint is not WebAssembly and profile '{profile}' does not set native = true"
                    ),
                    profile,
                    rule: Rule::Native,
                };
            }
        } else if !eff.grants.allows_module(req.module_digest.as_deref()) {
            let reason = match &req.module_digest {
                Some(d) => format!("module {d} is not in the modules list of profile '{profile}'"),
                None => format!(
                    "profile '{profile}' allows only listed modules and this module's digest is unknown"
                ),
            };
            return Decision::Deny {
                profile,
                rule: Rule::Modules,
                reason,
            };
        }
        Decision::Allow {
            grants: eff.grants.grants(&req.env),
            profile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Access, MountGrant};

    const POLICY: &str = r#"
version = 1

[namespaces.payments]
default = "payments-api"

[namespaces.batch]
default = "batch-only"

[namespaces.plain]

[profiles.payments-api]
namespaces = ["payments"]
env = ["LOG_LEVEL", "APP_*"]
mounts = [{ path = "/config" }, { path = "/data", access = "rw" }]
[profiles.payments-api.network]
connect = ["10.0.0.0/8:5432"]
dns = true
[profiles.payments-api.http]
outbound = ["https://api.example.com"]
[profiles.payments-api.limits]
memory = "64Mi"
cpu_time = "2s"

[profiles.shared]
namespaces = ["*"]
env = ["*"]

[profiles.pinned]
namespaces = ["*"]
modules = ["sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]

[profiles.native-ok]
namespaces = ["tools"]
native = true

[profiles.batch-only]
"#;

    const DIGEST_A: &str =
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DIGEST_B: &str =
        "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn policy() -> Policy {
        Policy::parse(POLICY, "test.toml").unwrap()
    }

    fn req(ns: &str, profile: Option<&str>) -> Request {
        Request {
            namespace: ns.into(),
            requested_profile: profile.map(Into::into),
            env: vec![
                ("LOG_LEVEL".into(), "debug".into()),
                ("APP_MODE".into(), "x".into()),
                ("SECRET".into(), "s".into()),
            ],
            mounts: vec!["/config".into(), "/etc/hosts".into()],
            module_digest: Some(DIGEST_B.into()),
            native: false,
            sandbox: false,
        }
    }

    /// Expected outcome: `Ok(profile)` for allow, `Err((profile, rule))` for deny.
    type Want = Result<&'static str, (&'static str, Rule)>;

    #[test]
    fn selection_and_rules() {
        let p = policy();
        let cases: Vec<(&str, Request, Want)> = vec![
            (
                "namespace default",
                req("payments", None),
                Ok("payments-api"),
            ),
            (
                "annotation picks a listed profile",
                req("payments", Some("payments-api")),
                Ok("payments-api"),
            ),
            (
                "no namespace table: strict",
                req("elsewhere", None),
                Ok("strict"),
            ),
            (
                "namespace table without default: strict",
                req("plain", None),
                Ok("strict"),
            ),
            (
                "strict may always be requested",
                req("payments", Some("strict")),
                Ok("strict"),
            ),
            (
                "* profile from any namespace",
                req("elsewhere", Some("shared")),
                Ok("shared"),
            ),
            (
                "profile not listing the namespace",
                req("elsewhere", Some("payments-api")),
                Err(("payments-api", Rule::ProfileNamespace)),
            ),
            (
                "unknown profile",
                req("payments", Some("nope")),
                Err(("nope", Rule::ProfileUnknown)),
            ),
            (
                "empty annotation",
                req("payments", Some("")),
                Err(("", Rule::ProfileUnknown)),
            ),
            (
                "namespace default authorizes an unlisted profile",
                req("batch", None),
                Ok("batch-only"),
            ),
            (
                "and may be requested there by name",
                req("batch", Some("batch-only")),
                Ok("batch-only"),
            ),
            (
                "but not from another namespace",
                req("payments", Some("batch-only")),
                Err(("batch-only", Rule::ProfileNamespace)),
            ),
            (
                "modules list rejects other digests",
                req("x", Some("pinned")),
                Err(("pinned", Rule::Modules)),
            ),
            (
                "modules list accepts its digest (any case)",
                Request {
                    module_digest: Some(DIGEST_A.to_uppercase().replace("SHA256", "sha256")),
                    ..req("x", Some("pinned"))
                },
                Ok("pinned"),
            ),
            (
                "modules list with unknown digest",
                Request {
                    module_digest: None,
                    ..req("x", Some("pinned"))
                },
                Err(("pinned", Rule::Modules)),
            ),
            (
                "native denied without native = true",
                Request {
                    native: true,
                    ..req("payments", None)
                },
                Err(("payments-api", Rule::Native)),
            ),
            (
                "native denied under strict",
                Request {
                    native: true,
                    ..req("elsewhere", None)
                },
                Err(("strict", Rule::Native)),
            ),
            (
                "native allowed with native = true",
                Request {
                    native: true,
                    ..req("tools", Some("native-ok"))
                },
                Ok("native-ok"),
            ),
            (
                "sandbox always runs",
                Request {
                    native: true,
                    sandbox: true,
                    ..req("elsewhere", Some("nope"))
                },
                Ok("strict"),
            ),
        ];
        for (name, r, want) in cases {
            let got = p.decide(&r);
            match (&got, want) {
                (Decision::Allow { profile, .. }, Ok(w)) => assert_eq!(profile, w, "{name}"),
                (Decision::Deny { profile, rule, .. }, Err((wp, wr))) => {
                    assert_eq!((profile.as_str(), *rule), (wp, wr), "{name}: {got}")
                }
                _ => panic!("{name}: got {got}, want {want:?}"),
            }
        }
    }

    #[test]
    fn grants_come_from_the_profile_and_env_only_narrows() {
        let p = policy();
        let Decision::Allow { grants, .. } = p.decide(&req("payments", None)) else {
            panic!("denied")
        };
        assert_eq!(
            grants.env,
            [
                ("LOG_LEVEL".to_string(), "debug".to_string()),
                ("APP_MODE".into(), "x".into())
            ]
        );
        assert_eq!(
            grants.mounts,
            [
                MountGrant::new("/config", Access::Ro),
                MountGrant::new("/data", Access::Rw),
            ]
        );
        assert!(grants.network.dns);
        assert!(grants.network.may_connect("10.2.3.4:5432".parse().unwrap()));
        assert!(!grants.network.may_connect("10.2.3.4:5433".parse().unwrap()));
        let outbound: Vec<String> = grants
            .http
            .outbound
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(outbound, ["https://api.example.com"]);
        assert_eq!(grants.limits.memory, Some(64 << 20));
        assert!(!grants.native);

        // Strict gets nothing, whatever the container carries.
        let Decision::Allow { grants, .. } = p.decide(&req("elsewhere", None)) else {
            panic!("denied")
        };
        assert_eq!(grants, Grants::strict());

        // The sandbox gets native and nothing else.
        let Decision::Allow { grants, .. } = p.decide(&Request {
            sandbox: true,
            native: true,
            ..req("payments", None)
        }) else {
            panic!("denied")
        };
        assert_eq!(
            grants,
            Grants {
                native: true,
                ..Grants::strict()
            }
        );
    }

    #[test]
    fn strict_only_policy_and_invalid_policy() {
        let p = Policy::strict_only();
        assert_eq!(p.decide(&req("payments", None)).profile(), "strict");
        assert!(p.decide(&req("payments", None)).is_allow());
        let d = p.decide(&req("payments", Some("payments-api")));
        assert!(
            matches!(
                d,
                Decision::Deny {
                    rule: Rule::ProfileUnknown,
                    ..
                }
            ),
            "{d}"
        );

        let err = Policy::parse("version = 3", "bad.toml").unwrap_err();
        let d = Decision::policy_invalid(&err);
        assert!(matches!(
            d,
            Decision::Deny {
                rule: Rule::PolicyInvalid,
                ..
            }
        ));
        assert!(d.to_string().contains("bad.toml:1"), "{d}");
        assert!(d.to_string().contains("policy.invalid"), "{d}");
    }

    #[test]
    fn effective_reports_selection() {
        let p = policy();
        let e = p.effective("payments", None).unwrap();
        assert_eq!(
            (e.profile.as_str(), e.selected_by),
            ("payments-api", SelectedBy::NamespaceDefault)
        );
        assert_eq!(e.grants.env, ["LOG_LEVEL", "APP_*"]);
        let e = p.effective("x", None).unwrap();
        assert_eq!(
            (e.profile.as_str(), e.selected_by),
            ("strict", SelectedBy::BuiltIn)
        );
        let e = p.effective("x", Some("shared")).unwrap();
        assert_eq!(e.selected_by, SelectedBy::Annotation);
        let d = p.effective("x", Some("payments-api")).unwrap_err();
        assert_eq!(d.rule, Rule::ProfileNamespace);
        assert!(
            d.to_string()
                .contains("profile 'payments-api', rule profile.namespace"),
            "{d}"
        );
    }

    #[test]
    fn decision_serializes_with_stable_names() {
        let d = Decision::Deny {
            profile: "p".into(),
            rule: Rule::ProfileNamespace,
            reason: "r".into(),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            r#"{"decision":"deny","profile":"p","rule":"profile.namespace","reason":"r"}"#
        );
        for rule in [
            Rule::ProfileNamespace,
            Rule::ProfileUnknown,
            Rule::Modules,
            Rule::Native,
            Rule::PolicyInvalid,
        ] {
            assert_eq!(serde_json::to_value(rule).unwrap(), rule.as_str());
        }
    }
}
