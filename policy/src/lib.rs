//! The node policy model shared by the shim and the node CLI.
//!
//! [`Policy`] is the parsed and validated `/etc/warden/policy.toml`; [`Policy::decide`]
//! turns it and what the shim read from a container's bundle ([`Request`]) into a
//! [`Decision`]. [`Grants`] is what a single container ends up with after the decision:
//! concrete env pairs, preopened paths, socket rules and limits. The shim builds the WASI
//! context from it and nothing else, so a grant that is not in here does not exist for the
//! guest.
//!
//! # File format
//!
//! The form in `docs/policy.md` is the contract. Every key is optional except
//! `version = 1`; unknown keys anywhere are errors. Value forms, and what is accepted
//! beyond the contract:
//!
//! - `[namespaces.NAME] default = "PROFILE"`: `PROFILE` must be defined, or `"strict"`.
//!   Naming a profile as a namespace's default also lets that namespace request it by
//!   annotation, even if the profile's `namespaces` list does not include it. A namespace
//!   table cannot use wildcards.
//! - `[profiles.NAME]`: `strict` is reserved (built in, grants nothing).
//!   `namespaces` lists names or `"*"`; absent means only namespaces whose default it is.
//! - `env`: names or globs with `*` as the only wildcard (`LOG_LEVEL`, `APP_*`, `*`);
//!   characters `A-Z a-z 0-9 _ - .`.
//! - `mounts`: `{ path = "/data", access = "rw", guest = "/" }` (`access` is `ro` by
//!   default, `guest` the same as `path`), or the shorthand `"/config"` for read-only. Paths
//!   are absolute, without `..`, normalized (`/data/` is `/data`), each listed once; nested
//!   grants with different access and two grants at one guest path are refused.
//! - `modules`: `sha256:<64 hex>` (case-insensitive).
//! - `network.connect` / `network.listen`: `ADDR[/PREFIX]:PORTS`, IPv6 in brackets
//!   (`10.0.0.0/8:5432`, `127.0.0.1:8080-8089`, `0.0.0.0:8080`, `[::1]:80`,
//!   `[fd00::/8]:443`). `PORTS` is required: a port, `LO-HI`, or `*` for all (0-65535).
//!   Host names and addresses with bits set past the prefix are refused.
//! - `http.outbound`: `http(s)://HOST[:PORTS]` where `PORTS` is a port, `LO-HI` or `*`
//!   (1-65535), the scheme's default port when absent; no path (a lone trailing `/` is
//!   tolerated), no user info, no wildcard host; stored lower-case.
//! - `http.wagi`: `false` forbids serving a WASI preview 1 module as WAGI (default `true`).
//! - `limits.memory`: an integer number of bytes, or `"64Mi"`, `"64MiB"`, `"1Gi"`,
//!   `"500M"`, `"512k"` (binary `Ki Mi Gi Ti`, decimal `k M G T`, optional `B`).
//! - `limits.cpu_time`, `limits.deadline` (both may be given): `"2s"`, `"500ms"`, `"1m"`,
//!   `"1h"`, `"250us"`, or sums such as `"1m30s"`; a bare number is refused.
//! - `limits.fuel`: a positive integer (instruction budget).
//! - `limits.request_deadline`: a duration; each request an HTTP service handles must be
//!   answered within it (the server's default, 30 s, when absent).

mod decide;
mod error;
mod grants;
mod http;
mod locate;
mod policy;
pub mod values;

pub use decide::{Decision, Denial, Effective, Request, Rule, SelectedBy};
pub use error::PolicyError;
pub use grants::{Access, Grants, Limits, MountGrant, NetworkGrant, STRICT_PROFILE, SocketRule};
pub use http::{HttpGrant, HttpScheme, OriginRule};
pub use policy::{Namespace, POLICY_VERSION, Policy, Profile};
