//! How every demo service is served: one accept loop per service, REST and gRPC alike, that can
//! take the service off the network and bring it back ([`Faults::down`](crate::Faults)).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::ServiceControl;

/// How long to keep trying to take a port back after an outage, should it have been lost.
const REBIND_ATTEMPTS: u32 = 500;
const REBIND_PAUSE: Duration = Duration::from_millis(20);
const BACKLOG: u32 = 1024;

/// Serves `router` on `listener` until `stop`. While `control` says the service is down, the
/// port is closed (connections are refused) and every open connection is cut.
pub(crate) fn spawn(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    control: Option<Arc<ServiceControl>>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(error) => return tracing::error!(service = name, %error, "demo server has no address"),
        };
        // A service without a control (the control API itself) is never down.
        let (_always_up, never_down) = watch::channel(false);
        let mut down = control.as_ref().map_or(never_down, |c| c.watch_down());
        let confirm = |is_down| {
            if let Some(control) = &control {
                control.confirm_down(is_down);
            }
        };
        let mut listener = Some(listener);
        // Dropping the set cuts every connection: what an outage does to them.
        let mut connections = JoinSet::new();
        loop {
            if *down.borrow_and_update() {
                drop(listener.take());
                connections = JoinSet::new();
                // Bound but not listening: connections are refused, and the port stays ours, so
                // no other process picks it up (as an OS-chosen port) while we are down.
                let reserved = reserve(addr);
                confirm(true);
                tokio::select! {
                    _ = down.wait_for(|down| !*down) => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                listener = match reserved.and_then(|socket| socket.listen(BACKLOG).ok()) {
                    Some(back) => Some(back),
                    None => rebind(addr).await,
                };
                if listener.is_none() {
                    return tracing::error!(service = name, %addr, "could not take the port back");
                }
                confirm(false);
                continue;
            }
            let Some(current) = &listener else { return };
            tokio::select! {
                accepted = current.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(router.clone());
                    connections.spawn(async move {
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    });
                    while connections.try_join_next().is_some() {}
                }
                _ = down.changed() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    })
}

/// A socket bound to `addr` that does not listen.
fn reserve(addr: SocketAddr) -> Option<TcpSocket> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.ok()?;
    socket.set_reuseaddr(true).ok()?;
    socket.bind(addr).ok()?;
    Some(socket)
}

async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..REBIND_ATTEMPTS {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return Some(listener);
        }
        tokio::time::sleep(REBIND_PAUSE).await;
    }
    None
}
