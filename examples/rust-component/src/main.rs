//! `rust-component [DIR]`: a WASI 0.2 component (built for `wasm32-wasip2`, its `main` is the
//! export `wasi:cli/run`) that reads every file of DIR (default `/config`) and prints, per
//! file, its size and first line; then it tries to create a file there, which a read-only
//! grant refuses, and says so.
//!
//! Exit statuses: 0 read, 1 DIR could not be read (not granted). A WASI 0.2 command has only
//! success or failure as its exit status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/config".to_string());
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("rust-component: cannot read {dir}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        // ConfigMap volumes hold `..data` links and dot directories: regular files only.
        if path.is_file() && !entry.file_name().to_string_lossy().starts_with('.') {
            match std::fs::read(&path) {
                Ok(bytes) => files.push((entry.file_name().to_string_lossy().into_owned(), bytes)),
                Err(e) => eprintln!("rust-component: cannot read {}: {e}", path.display()),
            }
        }
    }
    files.sort();
    println!("rust-component: {} files in {dir}", files.len());
    for (name, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        let first = text.lines().next().unwrap_or("");
        println!("{name}: {} bytes: {first}", bytes.len());
    }
    // The grant is read-only: creating a file must fail.
    let probe = format!("{dir}/.rust-component-probe");
    match std::fs::write(&probe, b"x") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            println!("rust-component: {dir} is writable");
        }
        Err(e) => println!("rust-component: {dir} is read-only ({e})"),
    }
    ExitCode::SUCCESS
}
