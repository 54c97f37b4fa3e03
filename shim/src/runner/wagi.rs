//! WAGI: a WASI preview 1 module served over HTTP as a CGI script (`warden.dev/http=wagi`).
//!
//! Each request runs a fresh instance of the pre-instantiated module to its end: the request
//! body on stdin (at most [`MAX_BODY`] bytes, else 413), the CGI variables
//! ([`crate::cgi::variables`]) in its environment beside the env the grants pass, and its
//! stdout (at most [`MAX_OUTPUT`] bytes) parsed as a CGI response. Its stderr goes to the
//! container's, whole lines at a time. Grants, per-request limits and audit are those of
//! any module (see [`super::request`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use warden_policy::Limits;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, InstancePre, Linker, Module, Store};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use super::http_proxy::failure_response;
use super::request::{Failure, LimitRecords, arm, request_deadline};
use super::service::{Service, serve_with};
use super::{GuestState, RunEnv, RunError, Runner};
use crate::guest_output::{LineOutput, Target};
use crate::http_server::{Body, Handler, text_response};
use crate::run::{LimitHit, LimitKind, MemoryLimiter};
use crate::wasi_ctx::WasiMaker;
use crate::{cgi, dns};

/// The largest request body passed to a WAGI module.
pub const MAX_BODY: usize = 16 << 20;
/// The most output a WAGI module may write for one response.
pub const MAX_OUTPUT: usize = 64 << 20;

pub struct Wagi(pub Module);

type WagiState = GuestState<WasiP1Ctx>;

impl Runner for Wagi {
    fn describe(&self) -> &'static str {
        "WAGI module (WASI preview 1 served over HTTP)"
    }

    fn run(self: Box<Self>, wasi: Arc<WasiMaker>, env: RunEnv<'_>) -> Result<i32, RunError> {
        let engine = env.engine.clone();
        let module = self.0;
        serve_with(env, move |service: Service| {
            let mut linker: Linker<WagiState> = Linker::new(&engine);
            wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s| &mut s.wasi)
                .map_err(RunError::Setup)?;
            let pre = linker.instantiate_pre(&module).map_err(|e| {
                RunError::Setup(e.context(
                    "preparing the module: a WAGI module must be a WASI preview 1 command \
                     (export _start) importing only wasi_snapshot_preview1",
                ))
            })?;
            Ok(Arc::new(WagiHandler {
                engine,
                pre,
                wasi,
                dns: service.dns,
                limits: service.limits,
                records: service.records,
                server: service.env.addr,
            }) as Arc<dyn Handler>)
        })
    }
}

struct WagiHandler {
    engine: Engine,
    pre: InstancePre<WagiState>,
    wasi: Arc<WasiMaker>,
    dns: dns::NameLookup,
    limits: Limits,
    records: Arc<LimitRecords>,
    server: std::net::SocketAddr,
}

impl Handler for WagiHandler {
    fn handle(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = hyper::Response<Body>> + Send>> {
        Box::pin(async move { self.answer(request).await })
    }
}

impl WagiHandler {
    async fn answer(self: Arc<Self>, request: hyper::Request<Incoming>) -> hyper::Response<Body> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + request_deadline(&self.limits));
        let (parts, body) = request.into_parts();
        let body =
            match tokio::time::timeout_at(deadline, Limited::new(body, MAX_BODY).collect()).await {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(e)) => {
                    let too_big = e
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some();
                    return if too_big {
                        text_response(
                            http::StatusCode::PAYLOAD_TOO_LARGE,
                            format!("request bodies are limited to {MAX_BODY} bytes"),
                        )
                    } else {
                        text_response(http::StatusCode::BAD_REQUEST, "could not read the body")
                    };
                }
                Err(_) => {
                    return failure_response(&Failure::Limit(
                        LimitKind::RequestDeadline,
                        String::new(),
                    ));
                }
            };
        let vars = cgi::variables(&parts, self.server, body.len());
        let output = MemoryOutputPipe::new(MAX_OUTPUT);
        let hit = LimitHit::default();
        let mut store = match self.store(vars, body, output.clone(), &hit, started) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warden-http: cannot set up the request: {e:#}");
                return text_response(http::StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        };
        let this = self.clone();
        let run = async move {
            let instance = this.pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        };
        // In a task of its own, so that a guest stopped by the deadline is dropped with its
        // store wherever it is, a blocked host call included.
        let ran = tokio::spawn(tokio::time::timeout_at(deadline, run)).await;
        let failure = match ran {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => None,
                Some(I32Exit(code)) => {
                    eprintln!("warden-http: the WAGI module exited with status {code}");
                    return text_response(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        "internal server error",
                    );
                }
                None => Some(Failure::of(&e, &hit)),
            },
            Ok(Err(_)) => Some(Failure::Limit(
                LimitKind::RequestDeadline,
                format!(
                    "the request ran past its deadline of {}ms",
                    request_deadline(&self.limits).as_millis()
                ),
            )),
            Err(e) => Some(Failure::Trap(format!("the request task failed: {e}"))),
        };
        if let Some(f) = failure {
            if let Failure::Limit(kind, msg) = &f {
                self.records.hit(*kind, msg);
            }
            eprintln!("warden-http: request: {}", f.describe());
            return failure_response(&f);
        }
        match cgi::parse_response(output.contents()) {
            Ok(r) => {
                let body = Full::new(r.body)
                    .map_err(|never| match never {})
                    .boxed_unsync();
                let mut response = hyper::Response::new(body);
                *response.status_mut() = r.status;
                for (name, value) in r.headers {
                    response.headers_mut().append(name, value);
                }
                response
            }
            Err(e) => {
                eprintln!("warden-http: the WAGI module's response is not CGI: {e}");
                text_response(http::StatusCode::BAD_GATEWAY, "bad gateway")
            }
        }
    }

    fn store(
        &self,
        vars: Vec<(String, String)>,
        body: Bytes,
        output: MemoryOutputPipe,
        hit: &LimitHit,
        started: Instant,
    ) -> anyhow::Result<Store<WagiState>> {
        let mut wasi = self.wasi.make()?;
        for (k, v) in &vars {
            wasi.env(k, v);
        }
        wasi.stdin(MemoryInputPipe::new(body))
            .stdout(output)
            .stderr(LineOutput::new(Target::Stderr));
        let state = GuestState {
            wasi: wasi.build_p1(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(self.limits.memory, hit.clone()),
            dns: self.dns.clone(),
            extra: (),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        arm(&mut store, &self.limits, hit, started);
        Ok(store)
    }
}
