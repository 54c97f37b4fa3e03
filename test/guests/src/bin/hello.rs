//! `hello`: prints `hello from wasm` and exits 0.

fn main() {
    println!("hello from wasm");
}
