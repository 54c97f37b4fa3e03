//! A WASI preview 2 command: a component exporting `wasi:cli/run`.

use wasmtime::component::{Component, Linker};
use wasmtime_wasi::WasiCtx;

use super::{GuestState, RunEnv, RunError, Runner, make_wasi};
use crate::dns;
use std::sync::Arc;

use crate::wasi_ctx::WasiMaker;

pub struct P2Command(pub Component);

impl Runner for P2Command {
    fn describe(&self) -> &'static str {
        "WASI preview 2 command"
    }

    fn run(self: Box<Self>, wasi: Arc<WasiMaker>, env: RunEnv<'_>) -> Result<i32, RunError> {
        let mut wasi = make_wasi(&wasi)?;
        let mut linker: Linker<GuestState<WasiCtx>> = Linker::new(env.engine);
        // `wasi:cli/exit.exit` carries only ok/err (status 0 or 1); components that call
        // `exit-with-code` (WASI 0.2.12) get their exact status through as `I32Exit`.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(RunError::Setup)?;
        // Replaces wasmtime-wasi's name lookup (getaddrinfo in the image's root).
        dns::add_to_linker(&mut linker).map_err(RunError::Setup)?;
        let mut store = env.store(wasi.build());
        let command =
            wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &self.0, &linker)
                .map_err(|e| {
                RunError::Setup(e.context(
                    "instantiating the component: it must be a WASI command (export \
                         wasi:cli/run) and import only what warden provides (wasi:cli, \
                         wasi:clocks, wasi:filesystem, wasi:io, wasi:random, wasi:sockets)",
                ))
            })?;
        match command.wasi_cli_run().call_run(&mut store) {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => Err(RunError::Guest(e)),
        }
    }
}
