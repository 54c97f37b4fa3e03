//! containerd's config, read and edited for `warden install`, `plan` and `uninstall`.
//!
//! This is the pure part of the installer: it reads files under a root prefix (`/` on a
//! node, a fake tree in tests) and returns what should change, never writing anything.
//!
//! - [`detect()`] finds the distribution, the config file, its version and imports, the
//!   cgroup driver, the unit to restart, and where warden's entry belongs (a drop-in where
//!   containerd 2.x merges one, else the main file).
//! - [`edit`] adds, updates or removes the `warden` runtime with `toml_edit`, keeping the
//!   user's comments and formatting.
//! - [`plan`] puts both together into a [`Plan`]: the files to create, modify or delete,
//!   with their exact contents before and after, a unified diff, and the restart needed.
//!
//! Every refusal is a [`ConfigError`] that names the file and what is wrong.

pub mod cgroup;
pub mod detect;
pub mod distribution;
pub mod edit;
pub mod error;
pub mod glob;
mod locate;
mod node;
pub mod plan;
pub mod preserve;
pub mod source;
mod style;
mod target;
pub mod version;

#[cfg(test)]
mod test_tree;

pub use cgroup::CgroupDriver;
pub use detect::{DetectOptions, NodeLayout, Target, detect};
pub use distribution::Distribution;
pub use edit::{
    EditOutcome, Edited, RUNTIME_NAME, RuntimeEntry, has_entry, remove_entry, render_drop_in,
    upsert_entry,
};
pub use error::ConfigError;
pub use plan::{ChangeKind, FileChange, Plan, plan_install, plan_remove};
pub use source::ConfigFile;
pub use version::ContainerdVersion;
