//! A `wasi:http` proxy component: a component exporting `wasi:http/incoming-handler`,
//! served over HTTP/1.1.
//!
//! The component is linked and pre-instantiated once; each request gets a fresh store (its
//! own WASI context from the grants, memory budget, fuel and deadline, see
//! [`super::request`]) and instance. The guest's stdout and stderr go to the container's,
//! whole lines at a time ([`crate::guest_output`]); its outgoing requests go through
//! [`crate::http_egress`]. Serving needs no grant; what the handler reaches out to does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use warden_policy::Limits;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::request::{Failure, LimitRecords, arm, request_deadline};
use super::service::{Service, serve_with};
use super::{GuestState, RunEnv, RunError, Runner};
use crate::dns;
use crate::guest_output::{LineOutput, Target};
use crate::http_egress::{Egress, EgressHooks};
use crate::http_server::{Body, Handler, text_response};
use crate::run::{LimitHit, LimitKind, MemoryLimiter};
use crate::wasi_ctx::WasiMaker;

pub struct HttpProxy(pub Component);

/// What a store holds besides WASI when its guest may use `wasi:http`: the context and
/// hooks (warden's egress).
pub struct HttpExtra {
    pub http: WasiHttpCtx,
    pub hooks: EgressHooks,
}

impl HttpExtra {
    pub fn new(egress: Arc<Egress>) -> Self {
        HttpExtra {
            http: WasiHttpCtx::new(),
            hooks: EgressHooks(egress),
        }
    }
}

/// The store state of a guest that may use `wasi:http` (0.2 or 0.3).
pub type ProxyState = GuestState<WasiCtx, HttpExtra>;

impl WasiHttpView for ProxyState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.extra.http,
            table: &mut self.table,
            hooks: &mut self.extra.hooks,
        }
    }
}

impl Runner for HttpProxy {
    fn describe(&self) -> &'static str {
        "wasi:http proxy component"
    }

    fn run(self: Box<Self>, wasi: Arc<WasiMaker>, env: RunEnv<'_>) -> Result<i32, RunError> {
        let engine = env.engine.clone();
        let component = self.0;
        serve_with(env, move |service: Service| {
            let mut linker: Linker<ProxyState> = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RunError::Setup)?;
            dns::add_to_linker(&mut linker).map_err(RunError::Setup)?;
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                .map_err(RunError::Setup)?;
            let pre = linker
                .instantiate_pre(&component)
                .and_then(ProxyPre::new)
                .map_err(|e| {
                    RunError::Setup(e.context(
                        "preparing the component: a wasi:http proxy must export \
                         wasi:http/incoming-handler and import only what warden provides \
                         (wasi:http, wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, \
                         wasi:random, wasi:sockets)",
                    ))
                })?;
            Ok(Arc::new(ProxyHandler {
                pre,
                kit: RequestKit::new(engine, wasi, service),
            }) as Arc<dyn Handler>)
        })
    }
}

struct ProxyHandler {
    pre: ProxyPre<ProxyState>,
    kit: RequestKit,
}

/// What the 0.2 and 0.3 `wasi:http` handlers share: how a request's store is made, and how
/// a request's end is reported and answered.
pub struct RequestKit {
    pub engine: Engine,
    pub wasi: Arc<WasiMaker>,
    pub dns: dns::NameLookup,
    pub limits: Limits,
    pub egress: Arc<Egress>,
    pub records: Arc<LimitRecords>,
}

impl RequestKit {
    pub fn new(engine: Engine, wasi: Arc<WasiMaker>, service: Service) -> Self {
        RequestKit {
            egress: service.env.egress(),
            engine,
            wasi,
            dns: service.dns,
            limits: service.limits,
            records: service.records,
        }
    }

    /// When a request that started at `started` must have ended.
    pub fn deadline(&self, started: Instant) -> tokio::time::Instant {
        tokio::time::Instant::from_std(started + request_deadline(&self.limits))
    }

    /// A request's store: its own WASI context from the grants (no stdin; stdout and stderr
    /// whole lines to the container's), its memory budget, fuel and deadline, and
    /// `wasi:http` through the egress.
    pub fn store(&self, hit: &LimitHit, started: Instant) -> anyhow::Result<Store<ProxyState>> {
        let mut wasi = self.wasi.make()?;
        wasi.stdin(tokio::io::empty())
            .stdout(LineOutput::new(Target::Stdout))
            .stderr(LineOutput::new(Target::Stderr));
        let state = GuestState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(self.limits.memory, hit.clone()),
            dns: self.dns.clone(),
            extra: HttpExtra::new(self.egress.clone()),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        arm(&mut store, &self.limits, hit, started);
        Ok(store)
    }

    /// How the guest's task for one request ended (`ran`: its result, or the deadline),
    /// recorded: a limit goes to the audit (at most once per kind per minute), every failure
    /// to the container's stderr.
    pub fn finish(
        &self,
        ran: Result<wasmtime::Result<()>, tokio::time::error::Elapsed>,
        hit: &LimitHit,
    ) -> Option<Failure> {
        let failure = match ran {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Failure::of(&e, hit)),
            Err(_) => Some(Failure::Limit(
                LimitKind::RequestDeadline,
                format!(
                    "the request ran past its deadline of {}ms",
                    request_deadline(&self.limits).as_millis()
                ),
            )),
        };
        if let Some(Failure::Limit(kind, msg)) = &failure {
            self.records.hit(*kind, msg);
        }
        if let Some(f) = &failure {
            eprintln!("warden-http: request: {}", f.describe());
        }
        failure
    }
}

/// The response for a request: the guest's head when it set one in time; else what its
/// task says went wrong; else the deadline's 504.
pub async fn respond<E: std::fmt::Debug>(
    head: Result<
        Result<Result<hyper::Response<Body>, E>, tokio::sync::oneshot::error::RecvError>,
        tokio::time::error::Elapsed,
    >,
    task: tokio::task::JoinHandle<Option<Failure>>,
) -> hyper::Response<Body> {
    match head {
        Ok(Ok(Ok(response))) => response,
        Ok(Ok(Err(code))) => {
            eprintln!("warden-http: the handler answered with an error: {code:?}");
            text_response(http::StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
        // The guest dropped the response without setting it: it ended, one way or another;
        // the task says how.
        Ok(Err(_)) => {
            let failure = match task.await {
                Ok(Some(f)) => f,
                Ok(None) => Failure::NoResponse,
                Err(e) => Failure::Trap(format!("the request task failed: {e}")),
            };
            failure_response(&failure)
        }
        Err(_) => failure_response(&Failure::Limit(LimitKind::RequestDeadline, String::new())),
    }
}

impl Handler for ProxyHandler {
    fn handle(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = hyper::Response<Body>> + Send>> {
        Box::pin(async move { self.answer(request).await })
    }
}

impl ProxyHandler {
    async fn answer(self: Arc<Self>, request: hyper::Request<Incoming>) -> hyper::Response<Body> {
        let started = Instant::now();
        let deadline = self.kit.deadline(started);
        let hit = LimitHit::default();
        let mut store = match self.kit.store(&hit, started) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warden-http: cannot set up the request: {e:#}");
                return text_response(http::StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let prepared = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .and_then(|req| {
                let out = store.data_mut().http().new_response_outparam(tx)?;
                Ok((req, out))
            });
        let (req, out) = match prepared {
            Ok(p) => p,
            Err(e) => {
                eprintln!("warden-http: cannot pass the request to the guest: {e:#}");
                return text_response(http::StatusCode::BAD_REQUEST, "bad request");
            }
        };
        // The guest runs in a task of its own, bounded by the deadline as a whole: it may go
        // on streaming the body after the response head was sent.
        let this = self.clone();
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = this.pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let ran = tokio::time::timeout_at(deadline, run).await;
            drop(store);
            this.kit.finish(ran, &hit)
        });
        respond(tokio::time::timeout_at(deadline, rx).await, task).await
    }
}

/// The response for a request whose guest failed.
pub fn failure_response(failure: &Failure) -> hyper::Response<Body> {
    let status = failure.status();
    let text = match failure {
        super::request::Failure::Limit(kind, _) => format!("stopped by {}", kind.rule()),
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    text_response(status, text)
}
