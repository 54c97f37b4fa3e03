//! `p3-spin`: prints `spinning`, then spins forever inside an async task (a task spawned
//! with `wit_bindgen::spawn_local` busy-loops without ever yielding) while `run` itself
//! loops on `yield`. It never returns: only the host can stop it (epoch interruption,
//! fuel, or a deadline).
#![no_main]

use std::hint::black_box;
use warden_p3_guests as guest;

#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn warden_guest_spin_here() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

struct Spin;
wasip3::cli::command::export!(Spin);

impl wasip3::exports::cli::run::Guest for Spin {
    async fn run() -> Result<(), ()> {
        guest::println("spinning").await;
        wasip3::wit_bindgen::spawn_local(async { warden_guest_spin_here() });
        loop {
            // Lets the executor poll the spawned task, which never gives control back.
            wasip3::wit_bindgen::yield_async().await;
            black_box(());
        }
    }
}
