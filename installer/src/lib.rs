//! The node CLI's logic, kept apart from `main.rs` so that it is unit-tested without root.

pub mod audit_cmd;
pub mod containerd_config;
pub mod policy_cmd;
