//! The node CLI's logic, kept apart from `main.rs` so that it is unit-tested without root.

pub mod audit_cmd;
pub mod binary;
pub mod containerd_check;
pub mod containerd_config;
pub mod crash_hook;
pub mod daemon;
pub mod digest;
pub mod host_checks;
pub mod install;
pub mod install_audit;
pub mod node_labels;
pub mod paths;
pub mod policy_cmd;
pub mod policy_source;
pub mod restart;
pub mod state;
pub mod systemd_dbus;
