//! A WASI 0.3 command: a component exporting `wasi:cli/run@0.3.x`, run on an async store.
//!
//! The same grants as every other runner (the WASI context is shared by preview 2 and 0.3:
//! env, preopens, the socket address check), the same store limits (memory limiter, fuel,
//! epoch deadline; the epoch hook traps a guest that spins inside any of its async tasks),
//! the same outcomes. Name lookup, 0.2 and 0.3 alike, is warden's own ([`crate::dns`]):
//! never the image's resolver files, refused without the `dns` grant. Outgoing
//! `wasi:http@0.3` requests go through warden's egress ([`crate::http_egress`]), allowed
//! only to the origins `http.outbound` names.

use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime_wasi::p3::bindings::Command;

use super::http_proxy::{HttpExtra, ProxyState};
use super::{RunEnv, RunError, Runner, make_wasi};
use crate::dns;
use crate::wasi_ctx::WasiMaker;

pub struct P3Command(pub Component);

impl Runner for P3Command {
    fn describe(&self) -> &'static str {
        "WASI 0.3 command"
    }

    fn run(self: Box<Self>, wasi: Arc<WasiMaker>, env: RunEnv<'_>) -> Result<i32, RunError> {
        let mut wasi = make_wasi(&wasi)?;
        let mut linker: Linker<ProxyState> = Linker::new(env.engine);
        // Components built with today's toolchains may import preview 2 interfaces beside
        // 0.3 ones (std's adapter); both are linked, with warden's name lookup for 0.2.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RunError::Setup)?;
        dns::add_to_linker(&mut linker).map_err(RunError::Setup)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(RunError::Setup)?;
        dns::add_p3_to_linker(&mut linker).map_err(RunError::Setup)?;
        // Outgoing `wasi:http@0.3` requests, through warden's egress (`http.outbound`).
        wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(RunError::Setup)?;
        let egress = env.service.egress();
        let mut store = env.store_with(wasi.build(), HttpExtra::new(egress));
        let component = self.0;
        wasmtime_wasi::runtime::in_tokio(async move {
            let command = Command::instantiate_async(&mut store, &component, &linker)
                .await
                .map_err(|e| {
                    RunError::Setup(e.context(
                        "instantiating the component: a WASI 0.3 command exports \
                         wasi:cli/run@0.3 and imports only what warden provides (wasi:cli, \
                         wasi:clocks, wasi:filesystem, wasi:random, wasi:sockets)",
                    ))
                })?;
            let ran = store
                .run_concurrent(async move |store| command.wasi_cli_run().call_run(store).await)
                .await;
            match ran {
                Ok(Ok(Ok(()))) => Ok(0),
                Ok(Ok(Err(()))) => Ok(1),
                Ok(Err(e)) | Err(e) => Err(RunError::Guest(e)),
            }
        })
    }
}
