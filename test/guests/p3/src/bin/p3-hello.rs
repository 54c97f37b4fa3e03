//! `p3-hello`: prints `hello from wasip3` and exits 0.
#![no_main]

use warden_p3_guests as guest;

struct Hello;
wasip3::cli::command::export!(Hello);

impl wasip3::exports::cli::run::Guest for Hello {
    async fn run() -> Result<(), ()> {
        guest::println("hello from wasip3").await;
        Ok(())
    }
}
