//! `p3-read-file PATH`: prints the contents of PATH, read through `wasi:filesystem@0.3.0`
//! (opened relative to the preopen whose guest path is the longest prefix of PATH).
//! Any error is refused: `denied: read PATH: ...`, exit 3.
#![no_main]

use warden_p3_guests as guest;
use wasip3::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};

struct ReadFile;
wasip3::cli::command::export!(ReadFile);

impl wasip3::exports::cli::run::Guest for ReadFile {
    async fn run() -> Result<(), ()> {
        let path = guest::arg(1, "PATH").await;
        match read(&path).await {
            Ok(bytes) => guest::print(bytes).await,
            Err(e) => guest::deny(format!("read {path}: {e}")).await,
        }
        Ok(())
    }
}

async fn read(path: &str) -> Result<Vec<u8>, String> {
    let (dir, rel) = guest::preopen_for(path)?;
    let file = dir
        .open_at(
            PathFlags::empty(),
            rel,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .await
        .map_err(|e| e.to_string())?;
    let (data, result) = file.read_via_stream(0);
    let (bytes, result) = guest::join(data.collect(), result).await;
    result.map_err(|e| e.to_string())?;
    Ok(bytes)
}
