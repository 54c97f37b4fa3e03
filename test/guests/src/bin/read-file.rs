//! `read-file PATH`: reads PATH and prints its first line.

fn main() {
    let path = warden_guests::arg(1, "PATH");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            println!("{}", text.lines().next().unwrap_or(""));
        }
        Err(e) => warden_guests::deny(format!("read {path}: {e}")),
    }
}
