//! `p3-exit-code N`: exits with status N (0..=255) through `wasi:cli/exit@0.3.0`'s
//! `exit-with-code`.
#![no_main]

use warden_p3_guests as guest;

struct ExitCode;
wasip3::cli::command::export!(ExitCode);

impl wasip3::exports::cli::run::Guest for ExitCode {
    async fn run() -> Result<(), ()> {
        let code: u8 = guest::parsed_arg(1, "N (0..=255)").await;
        guest::exit(code)
    }
}
