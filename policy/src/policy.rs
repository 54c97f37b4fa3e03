//! The node policy file: parsing, validation, and the in-memory model.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;
use warden_common::input_file::{InputError, Links, POLICY_CAP, read_capped};

use crate::error::{DottedPath, PolicyError, Seg, table_name};
use crate::locate::{Doc, line_of};
use crate::values::{
    glob_match, parse_digest, parse_duration, parse_env_pattern, parse_mount_path, parse_origin,
    parse_size, parse_socket_rule,
};
use crate::{Access, Grants, HttpGrant, Limits, MountGrant, NetworkGrant, STRICT_PROFILE};

/// The only policy format version this build understands.
pub const POLICY_VERSION: i64 = 1;

/// A validated node policy.
///
/// Everything in it has been checked at load time, so that a decision never meets a
/// malformed rule: a policy either loads completely or not at all (the shim then refuses
/// workloads, fail closed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    source: String,
    namespaces: BTreeMap<String, Namespace>,
    profiles: BTreeMap<String, Profile>,
}

/// Per-namespace settings (`[namespaces.NAME]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// Profile for pods that name none; `None` means the built-in `strict`.
    ///
    /// Naming a profile here also lets the namespace use it, even if the profile's own
    /// `namespaces` list does not include it: the admin said so explicitly.
    pub default: Option<String>,
}

/// A named set of grants (`[profiles.NAME]`), before a container's env is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Namespaces that may request this profile; `"*"` means every namespace. Empty (or
    /// absent) means only namespaces whose `default` names it.
    pub namespaces: Vec<String>,
    /// Env names or globs (`*` wildcard) passed through from the container.
    pub env: Vec<String>,
    /// Container paths preopened for the module, normalized (`/data`, no trailing `/`).
    pub mounts: Vec<MountGrant>,
    /// If set, only these module digests (`sha256:<hex>`, lower case) may run.
    pub modules: Option<Vec<String>>,
    /// Whether a non-Wasm entrypoint may run under this profile.
    pub native: bool,
    pub network: NetworkGrant,
    /// Outgoing `wasi:http` origins and WAGI.
    pub http: HttpGrant,
    pub limits: Limits,
}

impl Profile {
    /// The built-in `strict` profile: usable by every namespace, grants nothing.
    pub fn strict() -> Self {
        Profile {
            namespaces: vec!["*".into()],
            ..Profile::default()
        }
    }

    /// Whether pods in `namespace` may request this profile by annotation.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }

    /// Whether the env variable `name` is passed through.
    pub fn passes_env(&self, name: &str) -> bool {
        self.env.iter().any(|p| glob_match(p, name))
    }

    /// Whether a module with this digest may run (`sha256:<hex>`, any case).
    pub fn allows_module(&self, digest: Option<&str>) -> bool {
        match (&self.modules, digest) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(list), Some(d)) => {
                let d = d.to_ascii_lowercase();
                list.contains(&d)
            }
        }
    }

    /// The grants a container gets under this profile, given the container's env.
    ///
    /// Only env values are taken from the container, and only for names the profile
    /// passes; everything else comes from the profile. So nothing a pod sets can widen
    /// what it gets.
    pub fn grants(&self, container_env: &[(String, String)]) -> Grants {
        Grants {
            env: container_env
                .iter()
                .filter(|(k, _)| self.passes_env(k))
                .cloned()
                .collect(),
            mounts: self.mounts.clone(),
            network: self.network.clone(),
            http: self.http.clone(),
            limits: self.limits.clone(),
            native: self.native,
        }
    }
}

impl Policy {
    /// Reads and validates the policy at `path`.
    ///
    /// An absent file is an error here ([`PolicyError::is_not_found`]); what that means is
    /// the caller's decision (the shim uses [`Policy::strict_only`], `warden policy check`
    /// reports it).
    ///
    /// Only a regular file of at most [`POLICY_CAP`] bytes is read: a FIFO there would block
    /// every create, `/dev/zero` would be read until the shim ran out of memory.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        use std::io::{Error, ErrorKind};
        let path = path.as_ref();
        let file = path.display().to_string();
        let read = |error| PolicyError::Read {
            file: file.clone(),
            error,
        };
        let bytes = match read_capped("policy", path, POLICY_CAP, Links::Follow) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(read(Error::from(ErrorKind::NotFound))),
            Err(InputError::Io { source, .. }) => return Err(read(source)),
            Err(InputError::NotRegular { kind, .. }) => {
                return Err(read(Error::other(format!(
                    "it is {kind}, not a regular file; warden reads only a regular file here"
                ))));
            }
            Err(InputError::TooLarge { size, cap, .. }) => {
                return Err(read(Error::other(format!(
                    "{size} bytes is more than the {cap} bytes warden reads for a policy"
                ))));
            }
            Err(e @ InputError::Symlink { .. }) => return Err(read(Error::other(e.to_string()))),
        };
        let text = String::from_utf8(bytes)
            .map_err(|e| read(Error::new(ErrorKind::InvalidData, e.utf8_error())))?;
        Policy::parse(&text, file)
    }

    /// Like [`Policy::load`], but an absent file gives [`Policy::strict_only`].
    pub fn load_or_strict(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        match Policy::load(path.as_ref()) {
            Err(e) if e.is_not_found() => Ok(Policy {
                source: path.as_ref().display().to_string(),
                ..Policy::strict_only()
            }),
            other => other,
        }
    }

    /// Parses and validates policy text; `source` names it in errors (usually the path).
    pub fn parse(text: &str, source: impl Into<String>) -> Result<Policy, PolicyError> {
        let source = source.into();
        let doc = Doc::parse(text).map_err(|e| syntax_error(&e, text, &source))?;
        let raw: RawPolicy = toml::from_str(text).map_err(|e| serde_error(&e, &doc, &source))?;
        let ctx = Ctx {
            doc: &doc,
            file: &source,
        };
        raw.validate(&ctx, source.clone())
    }

    /// The policy in force when there is no policy file: no profiles, no namespaces, so
    /// every container gets the built-in `strict` profile.
    pub fn strict_only() -> Policy {
        Policy {
            source: "(no policy file: built-in strict only)".into(),
            namespaces: BTreeMap::new(),
            profiles: BTreeMap::new(),
        }
    }

    /// The file (or source name) the policy came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A defined profile by name; `strict` is built in and not listed here.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// Defined profiles, by name.
    pub fn profiles(&self) -> impl Iterator<Item = (&str, &Profile)> {
        self.profiles.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Namespaces with a `[namespaces.NAME]` table, by name.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &Namespace)> {
        self.namespaces.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The `[namespaces.NAME]` table of a namespace, if the policy has one.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }

    /// The profile a namespace gets when a pod names none.
    pub fn namespace_default(&self, namespace: &str) -> &str {
        self.namespaces
            .get(namespace)
            .and_then(|n| n.default.as_deref())
            .unwrap_or(STRICT_PROFILE)
    }
}

impl fmt::Display for Policy {
    /// One line: where it came from and what it defines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
        write!(
            f,
            "{}: {} profile(s) [{}], {} namespace(s)",
            self.source,
            self.profiles.len(),
            names.join(", "),
            self.namespaces.len()
        )
    }
}

// ---------------------------------------------------------------------------------------
// Raw form, as serde reads it. Strings that need checking keep their span so that errors
// point at the exact element, not at the array holding it.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Spanned<i64>,
    #[serde(default)]
    namespaces: BTreeMap<String, RawNamespace>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    #[serde(default)]
    default: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default)]
    namespaces: Vec<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    #[serde(default)]
    mounts: Vec<Spanned<RawMount>>,
    #[serde(default)]
    modules: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    native: bool,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    limits: RawLimits,
}

/// A mount: `{ path = "/data", access = "rw" }`, or just `"/config"` (read-only).
enum RawMount {
    Path(String),
    Table(RawMountTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMountTable {
    path: Spanned<String>,
    #[serde(default)]
    access: Option<Spanned<String>>,
    #[serde(default)]
    guest: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawMount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawMount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a mount such as { path = "/data", access = "rw" } or "/config""#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawMount, E> {
                Ok(RawMount::Path(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawMount, A::Error> {
                RawMountTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawMount::Table)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default)]
    connect: Vec<Spanned<String>>,
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    #[serde(default)]
    dns: bool,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    outbound: Vec<Spanned<String>>,
    #[serde(default)]
    wagi: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    memory: Option<Spanned<Scalar>>,
    #[serde(default)]
    cpu_time: Option<Spanned<Scalar>>,
    #[serde(default)]
    deadline: Option<Spanned<Scalar>>,
    #[serde(default)]
    fuel: Option<Spanned<i64>>,
    #[serde(default)]
    request_deadline: Option<Spanned<Scalar>>,
}

/// A value that may be written as an integer or a string (`memory = 1048576` or `"1Mi"`).
enum Scalar {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a string such as "64Mi" or "2s""#)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// Validation.

struct Ctx<'a> {
    doc: &'a Doc<'a>,
    file: &'a str,
}

impl Ctx<'_> {
    /// An error about the value at `span`, named by the key found there.
    fn at_span(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        let path = self.doc.path_at(&span);
        PolicyError::Invalid {
            file: self.file.to_owned(),
            line: self.doc.line_of(span.start),
            key: DottedPath(&path).to_string(),
            message: message.into(),
        }
    }

    /// An error about the key at `path`.
    fn at_path(&self, path: &[Seg], message: impl Into<String>) -> PolicyError {
        let line = self
            .doc
            .span_of(path)
            .map(|s| self.doc.line_of(s.start))
            .unwrap_or(1);
        PolicyError::Invalid {
            file: self.file.to_owned(),
            line,
            key: DottedPath(path).to_string(),
            message: message.into(),
        }
    }

    fn check<T>(
        &self,
        s: &Spanned<String>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, PolicyError> {
        parse(s.get_ref()).map_err(|m| self.at_span(s.span(), m))
    }
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

impl RawPolicy {
    fn validate(self, ctx: &Ctx<'_>, source: String) -> Result<Policy, PolicyError> {
        if *self.version.get_ref() != POLICY_VERSION {
            return Err(ctx.at_span(
                self.version.span(),
                format!(
                    "unsupported policy version {} (this warden understands version {POLICY_VERSION})",
                    self.version.get_ref()
                ),
            ));
        }
        let mut profiles = BTreeMap::new();
        for (name, raw) in self.profiles {
            let path = [key("profiles"), key(&name)];
            if name == STRICT_PROFILE {
                return Err(ctx.at_path(
                    &path,
                    "'strict' is the built-in profile that grants nothing; it cannot be redefined (pick another name)",
                ));
            }
            if name.is_empty() {
                return Err(ctx.at_path(&path, "a profile name must not be empty"));
            }
            let profile = raw.validate(ctx, &name)?;
            profiles.insert(name, profile);
        }
        let mut namespaces = BTreeMap::new();
        for (name, raw) in self.namespaces {
            if name.is_empty() || name.contains('*') {
                // A `*` table would look like a node-wide default but match no namespace.
                return Err(ctx.at_path(
                    &[key("namespaces"), key(&name)],
                    "a namespace table names one namespace (no wildcards, not empty); \"*\" belongs in a profile's namespaces list",
                ));
            }
            let default = match raw.default {
                None => None,
                Some(d) => {
                    let profile = d.get_ref();
                    if profile != STRICT_PROFILE && !profiles.contains_key(profile.as_str()) {
                        return Err(ctx.at_span(
                            d.span(),
                            format!("default profile '{profile}' is not defined (add [profiles.{}] or use \"strict\")", DottedPath(&[key(profile)])),
                        ));
                    }
                    Some(d.into_inner())
                }
            };
            namespaces.insert(name, Namespace { default });
        }
        Ok(Policy {
            source,
            namespaces,
            profiles,
        })
    }
}

impl RawProfile {
    fn validate(self, ctx: &Ctx<'_>, name: &str) -> Result<Profile, PolicyError> {
        let mut namespaces = Vec::new();
        for ns in &self.namespaces {
            let n = ctx.check(ns, |s| {
                if s.is_empty() || s.chars().any(char::is_whitespace) {
                    Err(format!("{s:?}: expected a namespace name or \"*\""))
                } else {
                    Ok(s.to_owned())
                }
            })?;
            namespaces.push(n);
        }
        let env = self
            .env
            .iter()
            .map(|e| ctx.check(e, parse_env_pattern))
            .collect::<Result<Vec<_>, _>>()?;

        let mut mounts: Vec<MountGrant> = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, m) in self.mounts.iter().enumerate() {
            let grant = match m.get_ref() {
                RawMount::Path(p) => MountGrant {
                    path: parse_mount_path(p).map_err(|e| ctx.at_span(m.span(), e))?,
                    access: Access::Ro,
                    guest: None,
                },
                RawMount::Table(t) => MountGrant {
                    path: ctx.check(&t.path, parse_mount_path)?,
                    guest: match &t.guest {
                        None => None,
                        Some(g) => Some(ctx.check(g, parse_mount_path)?),
                    },
                    access: match &t.access {
                        None => Access::Ro,
                        Some(a) => ctx.check(a, |s| match s {
                            "ro" => Ok(Access::Ro),
                            "rw" => Ok(Access::Rw),
                            other => Err(format!("access {other:?}: expected \"ro\" or \"rw\"")),
                        })?,
                    },
                },
            };
            let at = [key("profiles"), key(name), key("mounts"), Seg::Index(i)];
            if !seen.insert(grant.path.clone()) {
                return Err(ctx.at_path(&at, format!("{} is listed twice", grant.path)));
            }
            if let Some(problem) = mount_conflict(&mounts, &grant) {
                return Err(ctx.at_path(&at, problem));
            }
            mounts.push(grant);
        }

        let modules = match &self.modules {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|d| ctx.check(d, parse_digest))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let network = NetworkGrant {
            connect: self
                .network
                .connect
                .iter()
                .map(|r| ctx.check(r, parse_socket_rule))
                .collect::<Result<_, _>>()?,
            listen: self
                .network
                .listen
                .iter()
                .map(|r| ctx.check(r, parse_socket_rule))
                .collect::<Result<_, _>>()?,
            dns: self.network.dns,
        };
        let http = HttpGrant {
            outbound: self
                .http
                .outbound
                .iter()
                .map(|o| ctx.check(o, parse_origin))
                .collect::<Result<_, _>>()?,
            wagi: self.http.wagi.unwrap_or(true),
        };
        let limits = self.limits.validate(ctx)?;
        Ok(Profile {
            namespaces,
            env,
            mounts,
            modules,
            native: self.native,
            network,
            http,
            limits,
        })
    }
}

impl RawLimits {
    fn validate(&self, ctx: &Ctx<'_>) -> Result<Limits, PolicyError> {
        let memory = match &self.memory {
            None => None,
            Some(v) => Some(match v.get_ref() {
                Scalar::Int(n) if *n > 0 => *n as u64,
                Scalar::Int(n) => {
                    return Err(
                        ctx.at_span(v.span(), format!("{n}: a size must be greater than zero"))
                    );
                }
                Scalar::Str(s) => parse_size(s).map_err(|e| ctx.at_span(v.span(), e))?,
            }),
        };
        let duration = |v: &Option<Spanned<Scalar>>| -> Result<_, PolicyError> {
            match v {
                None => Ok(None),
                Some(v) => match v.get_ref() {
                    Scalar::Int(n) => Err(ctx.at_span(
                        v.span(),
                        format!("{n}: a duration needs a unit, e.g. \"{n}s\" or \"{n}ms\""),
                    )),
                    Scalar::Str(s) => parse_duration(s)
                        .map(Some)
                        .map_err(|e| ctx.at_span(v.span(), e)),
                },
            }
        };
        let cpu_time = duration(&self.cpu_time)?;
        let deadline = duration(&self.deadline)?;
        let request_deadline = duration(&self.request_deadline)?;
        let fuel = match &self.fuel {
            None => None,
            Some(f) if *f.get_ref() > 0 => Some(*f.get_ref() as u64),
            Some(f) => {
                return Err(ctx.at_span(
                    f.span(),
                    format!("{}: fuel must be greater than zero", f.get_ref()),
                ));
            }
        };
        Ok(Limits {
            memory,
            cpu_time,
            deadline,
            fuel,
            request_deadline,
        })
    }
}

fn syntax_error(err: &toml::de::Error, text: &str, file: &str) -> PolicyError {
    let line = err.span().map(|s| line_of(text, s.start)).unwrap_or(1);
    PolicyError::Syntax {
        file: file.to_owned(),
        line,
        message: err.message().trim().to_owned(),
    }
}

/// Turns serde's message and span into an error that names the key and its table.
fn serde_error(err: &toml::de::Error, doc: &Doc<'_>, file: &str) -> PolicyError {
    let span = err.span().unwrap_or(0..0);
    let line = doc.line_of(span.start);
    let message = err.message().trim();
    let mut path = doc.path_at(&span);
    let quoted = |prefix: &str| -> Option<String> {
        let rest = message.strip_prefix(prefix)?;
        let end = rest.find('`')?;
        Some(rest[..end].to_owned())
    };
    if let Some(k) = quoted("unknown field `") {
        // The span is the unknown key's own; the table is everything above it.
        if path.last() == Some(&Seg::Key(k.clone())) {
            path.pop();
        }
        return PolicyError::UnknownKey {
            file: file.to_owned(),
            line,
            key: k,
            table: table_name(&path),
        };
    }
    if let Some(k) = quoted("missing field `") {
        return PolicyError::MissingKey {
            file: file.to_owned(),
            line,
            key: k,
            table: table_name(&path),
        };
    }
    PolicyError::Invalid {
        file: file.to_owned(),
        line,
        key: if path.is_empty() {
            "(top level)".to_owned()
        } else {
            DottedPath(&path).to_string()
        },
        message: message.to_owned(),
    }
}

/// Why `new` cannot be granted beside the mounts already granted, if it cannot: two grants
/// the guest sees at the same path, or nested grants with different access (a read-only
/// path inside a read-write one, or the other way round, is not what it seems: the outer
/// grant decides what the inner path allows through it).
fn mount_conflict(granted: &[MountGrant], new: &MountGrant) -> Option<String> {
    for g in granted {
        if g.guest_path() == new.guest_path() {
            return Some(format!(
                "{} and {} are both seen by the module at {}",
                g.path,
                new.path,
                new.guest_path()
            ));
        }
        if g.access != new.access
            && (path_within(&new.path, &g.path) || path_within(&g.path, &new.path))
        {
            return Some(format!(
                "{} ({}) and {} ({}) are nested with different access; grant them with the \
                 same access or grant only the one you mean",
                g.path,
                g.access.as_str(),
                new.path,
                new.access.as_str()
            ));
        }
    }
    None
}

/// Whether `inner` is `outer` or lies below it (both normalised absolute paths).
pub(crate) fn path_within(inner: &str, outer: &str) -> bool {
    outer == "/"
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}
