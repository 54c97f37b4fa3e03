//! `p3-sleep MS`: sleeps MS milliseconds with `wasi:clocks/monotonic-clock@0.3.0`'s async
//! `wait-for`, then prints `slept`.
#![no_main]

use warden_p3_guests as guest;

struct Sleep;
wasip3::cli::command::export!(Sleep);

impl wasip3::exports::cli::run::Guest for Sleep {
    async fn run() -> Result<(), ()> {
        let ms: u64 = guest::parsed_arg(1, "MS").await;
        wasip3::clocks::monotonic_clock::wait_for(ms.saturating_mul(1_000_000)).await;
        guest::println("slept").await;
        Ok(())
    }
}
