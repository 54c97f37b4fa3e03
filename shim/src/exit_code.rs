//! Exit statuses warden gives a task when the guest did not choose one itself.
//!
//! A guest's own exit code (`proc_exit`, `wasi:cli/exit`, `wasi:cli/run` returning an error,
//! which is 1) is passed through unchanged. The rest follow shell conventions where one exists,
//! so that a failure is never folded into one code.

/// Warden could not set up the runtime for the module (artifact, preopen, linking).
pub const SETUP_FAILED: i32 = 125;
/// The guest trapped (`unreachable`, out-of-bounds access, stack overflow, ...): 128 + SIGABRT.
pub const TRAP: i32 = 134;
/// The guest tried to grow memory past the profile's `limits.memory`.
pub const MEMORY_LIMIT: i32 = 135;
/// The wall-clock `limits.deadline` passed, as `timeout(1)` reports it.
pub const DEADLINE: i32 = 124;
/// The `limits.cpu_time` bound was used up: 128 + SIGXCPU.
pub const CPU_TIME: i32 = 152;
