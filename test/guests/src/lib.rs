//! Helpers shared by the test programs in `src/bin/`.
//!
//! Conventions every program follows, so that tests can assert on them:
//! - success: prints what it got to stdout and exits 0;
//! - refused (any error from the operation it tries): prints `denied: <error>` to stderr and
//!   exits [`DENIED`] (3);
//! - bad command line: prints `usage: ...` to stderr and exits [`USAGE`] (2).
//!
//! `argv[0]` is the module's path (containerd's `ctr run` replaces the whole argv), so the
//! programs' own arguments start at index 1.

use std::fmt::Display;

/// Exit code of a program whose operation was refused.
pub const DENIED: i32 = 3;
/// Exit code of a program called with a bad command line.
pub const USAGE: i32 = 2;

/// Prints `denied: <err>` to stderr and exits with [`DENIED`].
pub fn deny(err: impl Display) -> ! {
    eprintln!("denied: {err}");
    std::process::exit(DENIED)
}

/// Prints `usage: <program> <synopsis>` to stderr and exits with [`USAGE`].
pub fn usage(synopsis: &str) -> ! {
    let program = std::env::args().next().unwrap_or_default();
    eprintln!("usage: {program} {synopsis}");
    std::process::exit(USAGE)
}

/// The program's `n`th own argument (`argv[n]`, so `n` starts at 1), or a usage error.
pub fn arg(n: usize, synopsis: &str) -> String {
    std::env::args().nth(n).unwrap_or_else(|| usage(synopsis))
}

/// The program's `n`th own argument parsed as `T`, or a usage error.
pub fn parsed_arg<T: std::str::FromStr>(n: usize, synopsis: &str) -> T {
    arg(n, synopsis).parse().unwrap_or_else(|_| usage(synopsis))
}

/// True when built for a target without sockets (`wasm32-wasip1`).
pub const NO_SOCKETS: bool = cfg!(all(target_os = "wasi", target_env = "p1"));

/// Refuses a socket operation on `wasm32-wasip1`, which has no sockets.
pub fn deny_without_sockets() {
    if NO_SOCKETS {
        deny("no sockets in wasip1");
    }
}
