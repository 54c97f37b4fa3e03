//! `sleep SECONDS`: prints `sleeping`, sleeps SECONDS, prints `slept`.

fn main() {
    let seconds: u64 = warden_guests::parsed_arg(1, "SECONDS");
    println!("sleeping");
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    println!("slept");
}
