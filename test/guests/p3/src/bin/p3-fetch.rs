//! `p3-fetch URL`: sends `GET URL` through `wasi:http/client@0.3.0`'s `send` and prints
//! `status N`, a newline and the response body. An error code from the host is refused:
//! `denied: ErrorCode::...` (its `Debug` form, e.g. `denied: ErrorCode::HttpRequestDenied`),
//! exit 3. A URL that is not `scheme://authority[/path][?query]` is a usage error (exit 2).
#![no_main]

use warden_p3_guests::{self as guest, http};

struct Fetch;
wasip3::cli::command::export!(Fetch);

impl wasip3::exports::cli::run::Guest for Fetch {
    async fn run() -> Result<(), ()> {
        let url = guest::arg(1, "URL").await;
        match http::get(&url).await {
            Ok((status, body)) => {
                let mut out = format!("status {status}\n").into_bytes();
                out.extend_from_slice(&body);
                guest::print(out).await;
            }
            Err(http::GetError::Http(e)) => guest::deny(format!("{e:?}")).await,
            Err(http::GetError::BadUrl(why)) => {
                guest::eprintln(why).await;
                guest::usage("URL").await
            }
        }
        Ok(())
    }
}
