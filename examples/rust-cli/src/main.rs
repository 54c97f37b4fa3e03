//! `rust-cli NAME...`: greets each NAME, appending one line per name to
//! `/out/greetings.txt`, then prints what it wrote.
//!
//! - The greeting is the env var `GREETING` when the module is given it (the profile's `env`
//!   grant), else `Hello`, and it says so on stderr.
//! - `/out` exists for the module only if the profile grants it (`mounts`, `access = "rw"`);
//!   without it the open fails and the program exits 1 with the error.
//!
//! Exit statuses: 0 done, 1 the file could not be written, 2 no NAME given.

use std::fs::OpenOptions;
use std::io::Write;
use std::process::ExitCode;

/// Where the greetings go: a directory the profile must grant read-write.
const OUT_FILE: &str = "/out/greetings.txt";

fn main() -> ExitCode {
    let names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        eprintln!("usage: rust-cli NAME...");
        return ExitCode::from(2);
    }
    let greeting = match std::env::var("GREETING") {
        Ok(greeting) if !greeting.is_empty() => greeting,
        _ => {
            eprintln!("rust-cli: GREETING is not set (is it granted?): using \"Hello\"");
            "Hello".to_string()
        }
    };
    let lines: String = names
        .iter()
        .map(|name| format!("{greeting}, {name}!\n"))
        .collect();
    let written = OpenOptions::new()
        .create(true)
        .append(true)
        .open(OUT_FILE)
        .and_then(|mut file| file.write_all(lines.as_bytes()));
    match written {
        Ok(()) => {
            print!("{lines}");
            println!("rust-cli: wrote {} greetings to {OUT_FILE}", names.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rust-cli: cannot write {OUT_FILE}: {e}");
            ExitCode::FAILURE
        }
    }
}
