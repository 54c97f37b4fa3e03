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
/// The guest ran out of `limits.fuel`.
pub const FUEL: i32 = 153;

/// What an exit status means, for the audit record; `None` for 0.
pub fn describe(code: i32) -> Option<String> {
    let what = match code {
        0 => return None,
        SETUP_FAILED => "warden could not set up the runtime (or the guest exited 125)",
        TRAP => "wasm trap (or the guest exited 134)",
        MEMORY_LIMIT => "memory limit (or the guest exited 135)",
        DEADLINE => "deadline (or the guest exited 124)",
        CPU_TIME => "CPU time limit (or the guest exited 152)",
        FUEL => "fuel limit (or the guest exited 153)",
        c if c > 128 => return Some(format!("killed by signal {}", c - 128)),
        _ => "exited with an error",
    };
    Some(what.to_string())
}
