//! `p3-env`: prints every environment variable as `K=V`, then `env-count=N`.
#![no_main]

use warden_p3_guests as guest;

struct Env;
wasip3::cli::command::export!(Env);

impl wasip3::exports::cli::run::Guest for Env {
    async fn run() -> Result<(), ()> {
        let vars = wasip3::cli::environment::get_environment();
        let mut out = String::new();
        for (key, value) in &vars {
            out.push_str(&format!("{key}={value}\n"));
        }
        out.push_str(&format!("env-count={}\n", vars.len()));
        guest::print(out).await;
        Ok(())
    }
}
