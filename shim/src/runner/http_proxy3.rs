//! A WASI 0.3 HTTP service: a component exporting `wasi:http/handler@0.3.x`, served by the
//! same server as 0.2 proxies ([`super::service`], [`crate::http_server`]).
//!
//! As for 0.2: linked and pre-instantiated once, a fresh store and instance per request with
//! the request's limits, the guest's output whole lines at a time, outgoing requests through
//! warden's egress. What differs is 0.3's concurrency model: the handler returns a response
//! whose body the guest may go on producing, and that only happens while the store's event
//! loop runs. So each request's task keeps `run_concurrent` going until the response body
//! has been sent (or dropped by the client) and the request body consumed, all within the
//! request's deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p3::Request;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use super::http_proxy::{ProxyState, RequestKit, respond};
use super::service::{Service, serve_with};
use super::{RunEnv, RunError, Runner};
use crate::dns;
use crate::http_server::{Body, Handler, text_response};
use crate::run::LimitHit;
use crate::wasi_ctx::WasiMaker;

pub struct HttpProxy3(pub Component);

impl Runner for HttpProxy3 {
    fn describe(&self) -> &'static str {
        "WASI 0.3 HTTP service component"
    }

    fn run(self: Box<Self>, wasi: Arc<WasiMaker>, env: RunEnv<'_>) -> Result<i32, RunError> {
        let engine = env.engine.clone();
        let component = self.0;
        serve_with(env, move |service: Service| {
            let mut linker: Linker<ProxyState> = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RunError::Setup)?;
            dns::add_to_linker(&mut linker).map_err(RunError::Setup)?;
            wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(RunError::Setup)?;
            dns::add_p3_to_linker(&mut linker).map_err(RunError::Setup)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(RunError::Setup)?;
            let pre = linker
                .instantiate_pre(&component)
                .and_then(ServicePre::new)
                .map_err(|e| {
                    RunError::Setup(e.context(
                        "preparing the component: a WASI 0.3 HTTP service must export \
                         wasi:http/handler@0.3 and import only what warden provides",
                    ))
                })?;
            Ok(Arc::new(Handler3 {
                pre,
                kit: RequestKit::new(engine, wasi, service),
            }) as Arc<dyn Handler>)
        })
    }
}

struct Handler3 {
    pre: ServicePre<ProxyState>,
    kit: RequestKit,
}

impl Handler for Handler3 {
    fn handle(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = hyper::Response<Body>> + Send>> {
        Box::pin(async move { self.answer(request).await })
    }
}

/// What the guest answered: a response head (its body still streaming), or an error code.
type Head = Result<hyper::Response<Body>, String>;

impl Handler3 {
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
        let (req, request_io) = Request::from_http(&mut store.data_mut().extra.hooks, request);
        let (head_tx, head_rx) = tokio::sync::oneshot::channel::<Head>();
        let this = self.clone();
        let task = tokio::spawn(async move {
            let run = async {
                let service = this.pre.instantiate_async(&mut store).await?;
                store
                    .run_concurrent(async move |access| {
                        let answered = service.handle(access, req).await?;
                        let response = match answered {
                            Ok(r) => r,
                            Err(code) => {
                                let _ = head_tx.send(Err(format!("{code:?}")));
                                return Ok(());
                            }
                        };
                        let response =
                            access.with(|store| response.into_http(store, async { Ok(()) }))?;
                        // The body is produced by this event loop: keep it running until
                        // the body has been sent or dropped, and the request body consumed.
                        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                        let response = response.map(|b| Tracked::new(b, done_tx).boxed_unsync());
                        let _ = head_tx.send(Ok(response));
                        let (_, consumed) = tokio::join!(done_rx, request_io);
                        if let Err(e) = consumed {
                            log::debug!("request body: {e:?}");
                        }
                        wasmtime::Result::Ok(())
                    })
                    .await?
            };
            let ran = tokio::time::timeout_at(deadline, run).await;
            this.kit.finish(ran, &hit)
        });
        respond(tokio::time::timeout_at(deadline, head_rx).await, task).await
    }
}

/// A response body that says when it has been read to its end or dropped.
struct Tracked {
    inner: Body,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Tracked {
    fn new(inner: Body, done: tokio::sync::oneshot::Sender<()>) -> Self {
        Tracked {
            inner,
            done: Some(done),
        }
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
