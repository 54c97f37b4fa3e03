//! `list-dir PATH`: prints the names in directory PATH, sorted, one a line, then
//! `entry-count=N`.

fn main() {
    let path = warden_guests::arg(1, "PATH");
    let entries = match std::fs::read_dir(&path) {
        Ok(entries) => entries,
        Err(e) => warden_guests::deny(format!("list {path}: {e}")),
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.push(entry.file_name().to_string_lossy().into_owned()),
            Err(e) => warden_guests::deny(format!("list {path}: {e}")),
        }
    }
    names.sort();
    for name in &names {
        println!("{name}");
    }
    println!("entry-count={}", names.len());
}
