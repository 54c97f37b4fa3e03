//! `p3-memory MiB`: allocates MiB mebibytes and writes every page of it, then prints
//! `allocated MiB MiB`. An allocation that fails is refused:
//! `denied: allocation of MiB MiB failed: ...`, exit 3.
#![no_main]

use warden_p3_guests as guest;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

struct Memory;
wasip3::cli::command::export!(Memory);

impl wasip3::exports::cli::run::Guest for Memory {
    async fn run() -> Result<(), ()> {
        let mib: usize = guest::parsed_arg(1, "MiB").await;
        let Some(bytes) = mib.checked_mul(MIB) else {
            guest::deny(format!("allocation of {mib} MiB failed: too large")).await
        };
        let mut block: Vec<u8> = Vec::new();
        if let Err(e) = block.try_reserve_exact(bytes) {
            guest::deny(format!("allocation of {mib} MiB failed: {e}")).await;
        }
        // SAFETY: the capacity is reserved above; every byte is written below before
        // anything reads it (u8 has no invalid values anyway).
        unsafe { block.set_len(bytes) };
        for (i, page) in block.chunks_mut(PAGE).enumerate() {
            page[0] = (i % 251) as u8 + 1;
        }
        std::hint::black_box(&block);
        guest::println(format!("allocated {mib} MiB")).await;
        Ok(())
    }
}
