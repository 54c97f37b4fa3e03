//! `write-file PATH TEXT`: writes TEXT to PATH and prints `wrote`.

fn main() {
    let path = warden_guests::arg(1, "PATH TEXT");
    let text = warden_guests::arg(2, "PATH TEXT");
    match std::fs::write(&path, text) {
        Ok(()) => println!("wrote"),
        Err(e) => warden_guests::deny(format!("write {path}: {e}")),
    }
}
