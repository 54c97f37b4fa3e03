//! `exit-code N`: exits with status N.

fn main() {
    let code: i32 = warden_guests::parsed_arg(1, "N");
    std::process::exit(code);
}
