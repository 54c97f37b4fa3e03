//! Native baseline: the same job as the `hello` guest, as a static Linux binary.
//!
//! `native-hello` prints `hello from native` and exits 0; then, optionally,
//! `native-hello exit CODE` exits with CODE and `native-hello sleep SECONDS` sleeps first
//! (a long-running container for tests of cleanup and timeouts).

use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!("usage: native-hello [exit CODE | sleep SECONDS]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    println!("hello from native");
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => ExitCode::SUCCESS,
        [action, code] if action == "exit" => match code.parse::<u8>() {
            Ok(code) => ExitCode::from(code),
            Err(_) => usage(),
        },
        [action, seconds] if action == "sleep" => match seconds.parse::<u64>() {
            Ok(seconds) => {
                std::thread::sleep(Duration::from_secs(seconds));
                ExitCode::SUCCESS
            }
            Err(_) => usage(),
        },
        _ => usage(),
    }
}
