//! Serving a BFF: hyper-util's server, so every connection-level limit is real: a header-read
//! timeout, an idle timeout, HTTP/2 stream and header-list limits, and a cap on open connections.
//! On the shutdown signal it marks itself draining (`/readyz` answers 503), keeps serving for the
//! drain delay, stops accepting, lets in-flight requests finish for up to the grace period, then
//! stops.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

pub mod config;
pub mod tls;

pub use self::config::{ServerConfig, TlsConfig};

/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Set once the shutdown signal arrives: the replica is going away, so it is not ready, and
/// long-lived connections (subscriptions) are told to reconnect elsewhere.
#[derive(Debug, Clone)]
pub struct Draining(Arc<watch::Sender<bool>>);

impl Default for Draining {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl Draining {
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once draining has started.
    pub async fn started(&self) {
        let _ = self.0.subscribe().wait_for(|draining| *draining).await;
    }

    fn start(&self) {
        self.0.send_replace(true);
    }
}

/// The address of the peer a request's connection came from (a proxy, if there is one).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Serves `router` on `listener` under `config`'s connection limits until `shutdown` completes,
/// then drains for at most `config.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let draining = Draining::default();
    let router = router.layer(Extension(draining.clone()));
    let tls = config.tls.as_ref().map(tls::acceptor).transpose().map_err(io::Error::other)?;
    let handshake_timeout = config.header_read_timeout;
    let builder = connection_builder(config);
    let idle_timeout = config.idle_timeout;
    let open = Arc::new(Semaphore::new(config.max_connections));
    let (close, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    // On the signal the replica first reports itself draining and keeps serving for
    // `drain_delay`, so load balancers see `/readyz` fail and stop sending before it stops
    // accepting; then it stops.
    let stop_accepting = {
        let (draining, delay) = (draining.clone(), config.drain_delay);
        async move {
            shutdown.await;
            draining.start();
            tokio::time::sleep(delay).await;
        }
    };
    tokio::pin!(stop_accepting);
    loop {
        // At the cap, stop accepting: new clients wait in the kernel's queue, not in our memory.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.map_err(io::Error::other)?,
            () = &mut stop_accepting => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = &mut stop_accepting => break,
        };
        let _ = stream.set_nodelay(true);
        let (builder, closing, tls) = (builder.clone(), closing.clone(), tls.clone());
        let router = router.clone();
        connections.spawn(async move {
            let activity = Arc::new(Activity::new());
            let tracked = Tracked { inner: stream, activity: activity.clone() };
            match tls {
                None => serve_connection(&builder, tracked, peer, activity, router, idle_timeout, closing).await,
                Some(acceptor) => {
                    // The handshake is bounded like a request head: a client that never finishes
                    // it holds a connection slot for no longer than that.
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tracked)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(&builder, stream, peer, activity, router, idle_timeout, closing).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
        // Reap finished connections so the set holds only live ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = close.send(true);
    let grace = config.shutdown_grace;
    let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; abandoning in-flight requests");
        connections.abort_all();
    }
    Ok(())
}

fn connection_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(config.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// One connection until it ends, is idle for `idle_timeout` (no request in flight, no bytes
/// moving), or the server drains; the last two close it gracefully.
async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    stream: I,
    peer: std::net::SocketAddr,
    activity: Arc<Activity>,
    router: Router,
    idle_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let tracked = activity.clone();
    let service = router
        .map_request(move |request: Request<hyper::body::Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            // Every request knows the address it came from; the client-address stage decides
            // whether to believe what the request says beyond that.
            request.extensions_mut().insert(PeerAddr(peer));
            request
        })
        .map_future(move |response| {
            // Held by the response future, so a request hyper abandons (a reset stream) is
            // counted out as surely as one that is answered.
            let in_flight = InFlight::enter(tracked.clone());
            async move {
                let response = response.await;
                drop(in_flight);
                response
            }
        });
    let connection = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        // With requests in flight the connection is busy whatever its bytes say: look again a
        // whole idle period later rather than at a deadline already past.
        let next_check = if activity.in_flight.load(Ordering::Relaxed) > 0 {
            Instant::now() + idle_timeout
        } else {
            activity.idle_deadline(idle_timeout)
        };
        let idle_check = tokio::time::sleep_until(next_check.into());
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                return;
            }
            changed = closing.changed(), if !shutting_down => {
                if changed.is_err() || *closing.borrow() {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = idle_check, if !shutting_down => {
                if activity.is_idle(idle_timeout) {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// When a connection last moved bytes, and how many of its requests are in flight.
struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self { origin: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        self.last_ms.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_deadline(&self, idle_timeout: Duration) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle_timeout
    }

    fn is_idle(&self, idle_timeout: Duration) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && Instant::now() >= self.idle_deadline(idle_timeout)
    }
}

/// One request of a connection between the service taking it and answering (or dropping) it.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A socket that notes when bytes last moved.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining");
}
