//! `args ...`: prints each argv entry on its own line as `arg[i]=...`.

fn main() {
    for (i, arg) in std::env::args_os().enumerate() {
        println!("arg[{i}]={}", arg.to_string_lossy());
    }
}
