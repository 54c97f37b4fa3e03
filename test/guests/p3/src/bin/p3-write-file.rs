//! `p3-write-file PATH TEXT`: writes TEXT to PATH (created or truncated) through
//! `wasi:filesystem@0.3.0` and prints `wrote N bytes`. Any error is refused:
//! `denied: write PATH: ...`, exit 3.
#![no_main]

use warden_p3_guests as guest;
use wasip3::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};

struct WriteFile;
wasip3::cli::command::export!(WriteFile);

impl wasip3::exports::cli::run::Guest for WriteFile {
    async fn run() -> Result<(), ()> {
        let path = guest::arg(1, "PATH TEXT").await;
        let text = guest::arg(2, "PATH TEXT").await;
        match write(&path, text.into_bytes()).await {
            Ok(n) => guest::println(format!("wrote {n} bytes")).await,
            Err(e) => guest::deny(format!("write {path}: {e}")).await,
        }
        Ok(())
    }
}

async fn write(path: &str, bytes: Vec<u8>) -> Result<usize, String> {
    let (dir, rel) = guest::preopen_for(path)?;
    let file = dir
        .open_at(
            PathFlags::empty(),
            rel,
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::WRITE,
        )
        .await
        .map_err(|e| e.to_string())?;
    let len = bytes.len();
    let (mut tx, rx) = wasip3::wit_stream::new::<u8>();
    let done = file.write_via_stream(rx, 0);
    let (result, left) = guest::join(done, async move {
        let left = tx.write_all(bytes).await;
        drop(tx);
        left.len()
    })
    .await;
    result.map_err(|e| e.to_string())?;
    if left != 0 {
        return Err(format!("only {} of {len} bytes written", len - left));
    }
    Ok(len)
}
