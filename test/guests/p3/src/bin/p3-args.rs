//! `p3-args ...`: prints each of its own arguments (after `argv[0]`) on its own line.
#![no_main]

use warden_p3_guests as guest;

struct Args;
wasip3::cli::command::export!(Args);

impl wasip3::exports::cli::run::Guest for Args {
    async fn run() -> Result<(), ()> {
        let mut out = String::new();
        for arg in guest::args().iter().skip(1) {
            out.push_str(arg);
            out.push('\n');
        }
        guest::print(out).await;
        Ok(())
    }
}
