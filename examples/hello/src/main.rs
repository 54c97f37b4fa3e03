//! `hello`: prints one line and exits 0. It needs nothing the built-in `strict` profile does
//! not give every module (its args, stdout, clocks, random), so it runs under `strict`.

fn main() {
    println!("Hello from WebAssembly: warden-example-hello ran under the strict profile");
}
