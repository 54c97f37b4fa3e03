//! `warden install`, `uninstall`, `plan` and `verify`: the host side of putting the shim
//! on a node and registering it with containerd.
//!
//! - [`context`] looks at the node without writing (every refusal is made there);
//! - [`apply`] installs, moving the state through its phases ([`crate::state`]), and
//!   [`rollback`] puts back what a failed attempt wrote;
//! - [`uninstall`] removes what the state proves warden made;
//! - [`plan`] prints what install would do; [`verify`] checks disk and containerd against
//!   the state.

pub mod apply;
pub mod args;
pub mod context;
pub mod outcome;
pub mod plan;
mod rollback;
pub mod uninstall;
pub mod verify;

pub use apply::{Failed, install};
pub use args::{Format, InstallArgs, NodeArgs, PlanArgs, UninstallArgs, VerifyArgs};
pub use context::Refusal;
pub use outcome::Outcome;
pub use plan::plan;
pub use uninstall::uninstall;
pub use verify::verify;
