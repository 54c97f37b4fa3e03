//! A WASI preview 1 command: a core module exporting `_start`.

use wasmtime::{Linker, Module};

use super::{GuestState, RunEnv, RunError, Runner, make_wasi};
use std::sync::Arc;

use crate::wasi_ctx::WasiMaker;

pub struct P1Command(pub Module);

impl Runner for P1Command {
    fn describe(&self) -> &'static str {
        "WASI preview 1 command"
    }

    fn run(self: Box<Self>, wasi: Arc<WasiMaker>, env: RunEnv<'_>) -> Result<i32, RunError> {
        let mut wasi = make_wasi(&wasi)?;
        let mut linker: Linker<GuestState<wasmtime_wasi::p1::WasiP1Ctx>> = Linker::new(env.engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi)
            .map_err(RunError::Setup)?;
        let mut store = env.store(wasi.build_p1());
        let instance = linker
            .instantiate(&mut store, &self.0)
            .map_err(RunError::Guest)?;
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|e| {
                RunError::Setup(e.context("the module does not export a `_start` function"))
            })?;
        start.call(&mut store, ()).map_err(RunError::Guest)?;
        Ok(0)
    }
}
