//! Helpers shared by the WASI 0.3 test programs in `src/bin/`.
//!
//! Every program is a `wasi:cli/command@0.3.0` component: it exports the async
//! `wasi:cli/run@0.3.0` (through [`wasip3::cli::command::export!`]) and does all its I/O
//! through the `wasi:*@0.3.0` imports of the [`wasip3`] crate. Nothing here uses Rust's
//! `std` I/O, environment or process functions: on `wasm32-wasip2` those go through
//! wasi-libc, which imports WASI 0.2 (see [`no_wasi_p2`] for how the rest of it is kept
//! out).
//!
//! Conventions, the same as the wasip1/wasip2 programs of `warden-guests`:
//! - success: prints what it got to stdout and exits 0;
//! - refused (any error from the operation it tries): prints `denied: <error>` to stderr and
//!   exits [`DENIED`] (3);
//! - bad command line: prints `usage: ...` to stderr and exits [`USAGE`] (2).
//!
//! `argv[0]` is the module's path, so the programs' own arguments start at index 1.

use std::fmt::Display;
use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::task::Poll;

use wasip3::cli::{environment, exit, stderr, stdout};

/// Exit code of a program whose operation was refused.
pub const DENIED: u8 = 3;
/// Exit code of a program called with a bad command line.
pub const USAGE: u8 = 2;

/// Runs two futures concurrently on the current task and returns both outputs.
pub async fn join<A: IntoFuture, B: IntoFuture>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a.into_future());
    let mut b = pin!(b.into_future());
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(move |cx| {
        if out_a.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            out_a = Some(v);
        }
        if out_b.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            out_b = Some(v);
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready((out_a.take().unwrap(), out_b.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Which standard stream [`write_std`] writes to.
#[derive(Clone, Copy)]
pub enum Std {
    Out,
    Err,
}

/// Writes `data` to stdout or stderr through `wasi:cli/std{out,err}@0.3.0`'s
/// `write-via-stream`, and waits until the host has taken all of it.
pub async fn write_std(to: Std, data: impl Into<Vec<u8>>) {
    let data = data.into();
    let (mut tx, rx) = wasip3::wit_stream::new::<u8>();
    let done = match to {
        Std::Out => stdout::write_via_stream(rx),
        Std::Err => stderr::write_via_stream(rx),
    };
    // The host reads the stream while `done` is pending; write concurrently with waiting.
    let _ = join(done, async move {
        tx.write_all(data).await;
        drop(tx);
    })
    .await;
}

/// Prints `text` to stdout (no newline is added).
pub async fn print(text: impl Into<Vec<u8>>) {
    write_std(Std::Out, text).await
}

/// Prints `text` and a newline to stdout.
pub async fn println(text: impl Display) {
    print(format!("{text}\n")).await
}

/// Prints `text` and a newline to stderr.
pub async fn eprintln(text: impl Display) {
    write_std(Std::Err, format!("{text}\n")).await
}

/// Exits the program with `code` through `wasi:cli/exit@0.3.0`'s `exit-with-code`.
pub fn exit(code: u8) -> ! {
    exit::exit_with_code(code);
    // `exit-with-code` does not return: the host unwinds the instance.
    unreachable_after_exit()
}

#[inline(never)]
fn unreachable_after_exit() -> ! {
    core::arch::wasm32::unreachable()
}

/// Prints `denied: <err>` to stderr and exits with [`DENIED`].
pub async fn deny(err: impl Display) -> ! {
    eprintln(format!("denied: {err}")).await;
    exit(DENIED)
}

/// Prints `usage: <program> <synopsis>` to stderr and exits with [`USAGE`].
pub async fn usage(synopsis: &str) -> ! {
    let program = args().into_iter().next().unwrap_or_default();
    eprintln(format!("usage: {program} {synopsis}")).await;
    exit(USAGE)
}

/// The command line (`wasi:cli/environment@0.3.0`'s `get-arguments`), `argv[0]` first.
pub fn args() -> Vec<String> {
    environment::get_arguments()
}

/// The program's `n`th own argument (`argv[n]`, so `n` starts at 1), or a usage error.
pub async fn arg(n: usize, synopsis: &str) -> String {
    match args().into_iter().nth(n) {
        Some(arg) => arg,
        None => usage(synopsis).await,
    }
}

/// The program's `n`th own argument parsed as `T`, or a usage error.
pub async fn parsed_arg<T: std::str::FromStr>(n: usize, synopsis: &str) -> T {
    match arg(n, synopsis).await.parse() {
        Ok(value) => value,
        Err(_) => usage(synopsis).await,
    }
}

/// Keeps WASI 0.2 out of the component.
///
/// On `wasm32-wasip2` the crt (`crt1-command.o`, which exports `wasi:cli/run@0.2.0#run`)
/// and the parts of wasi-libc that `std` can reach (the panic hook writes to stderr, for one)
/// import `wasi:cli/*@0.2`, `wasi:io/*@0.2` and `wasi:clocks/monotonic-clock@0.2` through
/// C symbols named `__wasm_import_*`. These programs never take those paths on purpose, but
/// the linker cannot know that. Defining the symbols here makes the linker resolve them to
/// these definitions instead of turning them into imports, so that the component imports
/// WASI 0.3 only. Each definition traps (in a function named `warden_p3_no_wasi_p2`), so a
/// path that would have used WASI 0.2 (a Rust panic message, for one) traps instead.
///
/// `__main_void` is wasi-libc's `main` caller, which `crt1-command.o`'s `_start` calls;
/// defining it keeps the argument and environment set-up of libc out. The
/// `wasi:cli/run@0.2.0` export of `_start` cannot be dropped at link time and stays in the
/// component; calling it traps here. Hosts must call `wasi:cli/run@0.3.0`.
pub mod no_wasi_p2 {
    /// Traps: the program reached a path that needs WASI 0.2.
    #[inline(never)]
    #[unsafe(no_mangle)]
    pub extern "C" fn warden_p3_no_wasi_p2() -> ! {
        core::arch::wasm32::unreachable()
    }

    macro_rules! trap_stubs {
        ($($name:ident($($arg:ty),*) $(-> $ret:ty)?;)*) => {$(
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            pub extern "C" fn $name($(_: $arg),*) $(-> $ret)? {
                warden_p3_no_wasi_p2()
            }
        )*};
    }

    trap_stubs! {
        __main_void() -> i32;
        // wasi:cli/environment@0.2
        __wasm_import_environment_get_environment(i32);
        __wasm_import_environment_get_arguments(i32);
        __wasm_import_environment_initial_cwd(i32);
        // wasi:cli/exit@0.2
        __wasm_import_exit_exit(i32);
        // wasi:cli/std{in,out,err}@0.2 and the terminal interfaces
        __wasm_import_stdin_get_stdin() -> i32;
        __wasm_import_stdout_get_stdout() -> i32;
        __wasm_import_stderr_get_stderr() -> i32;
        __wasm_import_terminal_input_terminal_input_drop(i32);
        __wasm_import_terminal_output_terminal_output_drop(i32);
        __wasm_import_terminal_stdin_get_terminal_stdin(i32);
        __wasm_import_terminal_stdout_get_terminal_stdout(i32);
        __wasm_import_terminal_stderr_get_terminal_stderr(i32);
        // wasi:io/*@0.2
        __wasm_import_io_error_error_drop(i32);
        __wasm_import_poll_pollable_drop(i32);
        __wasm_import_poll_method_pollable_block(i32);
        __wasm_import_poll_poll(i32, i32, i32);
        __wasm_import_streams_input_stream_drop(i32);
        __wasm_import_streams_output_stream_drop(i32);
        __wasm_import_streams_method_output_stream_check_write(i32, i32);
        __wasm_import_streams_method_output_stream_write(i32, i32, i32, i32);
        __wasm_import_streams_method_output_stream_blocking_flush(i32, i32);
        __wasm_import_streams_method_output_stream_subscribe(i32) -> i32;
        // wasi:clocks/monotonic-clock@0.2
        __wasm_import_monotonic_clock_subscribe_duration(i64) -> i32;
    }
}

/// The preopened directory (`wasi:filesystem/preopens@0.3.0`) whose guest path is the
/// longest prefix of `path`, component by component, and `path` relative to it.
///
/// An absolute `path` matches absolute preopens (`/` matches everything); a relative one
/// matches relative preopens (`.` matches everything). No preopen matches: an error.
pub fn preopen_for(path: &str) -> Result<(wasip3::filesystem::types::Descriptor, String), String> {
    fn components(p: &str) -> Vec<&str> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect()
    }
    let wanted = components(path);
    let absolute = path.starts_with('/');
    let mut best: Option<(usize, wasip3::filesystem::types::Descriptor)> = None;
    for (dir, guest_path) in wasip3::filesystem::preopens::get_directories() {
        if guest_path.starts_with('/') != absolute {
            continue;
        }
        let prefix = components(&guest_path);
        if wanted.starts_with(&prefix) && best.as_ref().is_none_or(|(len, _)| prefix.len() > *len) {
            best = Some((prefix.len(), dir));
        }
    }
    match best {
        Some((len, dir)) => {
            let rest = wanted[len..].join("/");
            Ok((
                dir,
                if rest.is_empty() {
                    ".".to_string()
                } else {
                    rest
                },
            ))
        }
        None => Err("no preopened directory contains it".to_string()),
    }
}

/// The `wasi:sockets` address family of `addr`.
pub fn family(addr: &std::net::SocketAddr) -> wasip3::sockets::types::IpAddressFamily {
    use wasip3::sockets::types::IpAddressFamily;
    match addr {
        std::net::SocketAddr::V4(_) => IpAddressFamily::Ipv4,
        std::net::SocketAddr::V6(_) => IpAddressFamily::Ipv6,
    }
}

/// `addr` as a `wasi:sockets` address.
pub fn ip_socket_address(addr: &std::net::SocketAddr) -> wasip3::sockets::types::IpSocketAddress {
    use wasip3::sockets::types::{IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress};
    match addr {
        std::net::SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: v4.port(),
                address: (a, b, c, d),
            })
        }
        std::net::SocketAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: v6.port(),
                flow_info: v6.flowinfo(),
                address: (a, b, c, d, e, f, g, h),
                scope_id: v6.scope_id(),
            })
        }
    }
}

/// A `wasi:sockets` address as a Rust one (for printing).
pub fn socket_addr(addr: &wasip3::sockets::types::IpSocketAddress) -> std::net::SocketAddr {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use wasip3::sockets::types::IpSocketAddress;
    match addr {
        IpSocketAddress::Ipv4(v4) => {
            let (a, b, c, d) = v4.address;
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), v4.port))
        }
        IpSocketAddress::Ipv6(v6) => {
            let (a, b, c, d, e, f, g, h) = v6.address;
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::new(a, b, c, d, e, f, g, h),
                v6.port,
                v6.flow_info,
                v6.scope_id,
            ))
        }
    }
}

/// An outgoing HTTP `GET` through `wasi:http/client@0.3.0`'s `send`.
pub mod http {
    use wasip3::http::client;
    use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
    use wasip3::wit_future;

    /// Why [`get`] failed.
    #[derive(Debug)]
    pub enum GetError {
        /// The URL is not `scheme://authority[/path][?query]`, or the host refused a part of it.
        BadUrl(String),
        /// The host's `wasi:http` error code (from `send`, or from reading the body).
        Http(ErrorCode),
    }

    /// `url` split into scheme, authority and path-with-query (`/` when empty).
    pub fn split_url(url: &str) -> Result<(Scheme, String, String), String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("not an absolute URL: {url}"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => Scheme::Other(other.to_string()),
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() {
            return Err(format!("no host in URL: {url}"));
        }
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok((scheme, authority.to_string(), path))
    }

    /// Sends `GET url` (no body, no extra headers) and returns the response's status code and
    /// whole body.
    pub async fn get(url: &str) -> Result<(u16, Vec<u8>), GetError> {
        let (scheme, authority, path) = split_url(url).map_err(GetError::BadUrl)?;
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        drop(trailers_tx);
        let (request, _sent) = Request::new(Fields::new(), None, trailers_rx, None);
        request
            .set_method(&Method::Get)
            .map_err(|()| GetError::BadUrl("method refused".to_string()))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| GetError::BadUrl(format!("scheme refused: {scheme:?}")))?;
        request
            .set_authority(Some(&authority))
            .map_err(|()| GetError::BadUrl(format!("authority refused: {authority}")))?;
        request
            .set_path_with_query(Some(&path))
            .map_err(|()| GetError::BadUrl(format!("path refused: {path}")))?;
        let response = client::send(request).await.map_err(GetError::Http)?;
        let status = response.get_status_code();
        let body = read_body(response).await.map_err(GetError::Http)?;
        Ok((status, body))
    }

    /// The whole body of `response`; an error if the host reports one when the body ends.
    pub async fn read_body(response: Response) -> Result<Vec<u8>, ErrorCode> {
        let (res_tx, res_rx) = wit_future::new(|| Ok(()));
        drop(res_tx);
        let (body, trailers) = Response::consume_body(response, res_rx);
        let body = body.collect().await;
        trailers.await?;
        Ok(body)
    }
}
