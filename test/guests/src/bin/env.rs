//! `env`: prints every environment variable as `K=V`, then `env-count=N`.

fn main() {
    let mut count = 0;
    for (key, value) in std::env::vars_os() {
        println!("{}={}", key.to_string_lossy(), value.to_string_lossy());
        count += 1;
    }
    println!("env-count={count}");
}
