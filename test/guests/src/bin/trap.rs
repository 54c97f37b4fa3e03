//! `trap`: traps (`unreachable`) inside a function named `warden_guest_trap_here`.

#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn warden_guest_trap_here() {
    #[cfg(target_family = "wasm")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_family = "wasm"))]
    std::process::abort();
}

fn main() {
    println!("about to trap");
    warden_guest_trap_here();
}
