//! `spin SECONDS`: busy-loops for SECONDS of wall-clock time (forever when 0), printing
//! `spinning` first and `done` at the end.

use std::hint::black_box;
use std::time::{Duration, Instant};

fn main() {
    let seconds: u64 = warden_guests::parsed_arg(1, "SECONDS");
    let limit = Duration::from_secs(seconds);
    println!("spinning");
    let start = Instant::now();
    let mut counter = 0u64;
    loop {
        for _ in 0..100_000 {
            counter = black_box(counter.wrapping_add(1));
        }
        if seconds != 0 && start.elapsed() >= limit {
            break;
        }
    }
    black_box(counter);
    println!("done");
}
