//! `p3-trap`: prints `about to trap`, then traps (`unreachable`) inside a function named
//! `warden_guest_trap_here` (kept in the component's core module `name` section).
#![no_main]

use warden_p3_guests as guest;

#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn warden_guest_trap_here() {
    core::arch::wasm32::unreachable();
}

struct Trap;
wasip3::cli::command::export!(Trap);

impl wasip3::exports::cli::run::Guest for Trap {
    async fn run() -> Result<(), ()> {
        guest::println("about to trap").await;
        warden_guest_trap_here();
        Ok(())
    }
}
