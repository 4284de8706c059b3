//! GraphQL subscriptions over WebSocket, on the GraphQL path itself (an upgrade request), with
//! the graphql-transport-ws protocol.
//!
//! - **Authentication** is the `connection_init` payload's `{"authorization": "Bearer ..."}`
//!   (browsers cannot set headers on a WebSocket), verified like any request's credentials and
//!   counted against the same failure lockout. A refusal closes with 4403.
//! - **Expiry**: the subscription ends when the token does, with 4403 `token expired`; the
//!   client reconnects with a fresh one.
//! - **Bounds**: subscriptions per connection (the rest get `TOO_MANY_SUBSCRIPTIONS`),
//!   connections per principal (4429 past it), and a deadline for `connection_init` (4408).
//! - **No request deadline**: each stream lives as long as its subscriber. When the client goes,
//!   the streams drop, and with them the backend streams they read (a gRPC stream is cancelled).
//! - **Shutdown**: when the replica starts draining, every socket closes with 1001 (going away),
//!   so clients reconnect to a replica that stays.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use async_graphql::http::{WebSocket as GraphQlWebSocket, WsMessage};
use async_graphql::{Data, Executor, ObjectType, SubscriptionType};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures::stream::{BoxStream, StreamExt};
use futures::{FutureExt, SinkExt};
use http::HeaderMap;
use serde::Deserialize;

use super::{Endpoint, Prepare};
use crate::ErrorCode;
use crate::config::{Problems, Validate, join};
use crate::server::Draining;
use crate::{Authenticator, RequestContext};

pub const PROTOCOL: &str = "graphql-transport-ws";
pub const DEFAULT_MAX_PER_CONNECTION: usize = 10;
pub const DEFAULT_MAX_CONNECTIONS_PER_PRINCIPAL: usize = 5;
pub const DEFAULT_CONNECTION_INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// graphql-transport-ws close codes.
const FORBIDDEN: u16 = 4403;
const INIT_TIMEOUT: u16 = 4408;
const TOO_MANY_CONNECTIONS: u16 = 4429;
/// RFC 6455's "going away": the server is shutting down.
const GOING_AWAY: u16 = 1001;

/// `[graphql.subscriptions]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriptionLimits {
    pub max_per_connection: usize,
    pub max_connections_per_principal: usize,
    #[serde(with = "humantime_serde")]
    pub connection_init_timeout: Duration,
}

impl Default for SubscriptionLimits {
    fn default() -> Self {
        Self {
            max_per_connection: DEFAULT_MAX_PER_CONNECTION,
            max_connections_per_principal: DEFAULT_MAX_CONNECTIONS_PER_PRINCIPAL,
            connection_init_timeout: DEFAULT_CONNECTION_INIT_TIMEOUT,
        }
    }
}

impl Validate for SubscriptionLimits {
    fn validate(&self, path: &str, problems: &mut Problems) {
        if self.max_per_connection == 0 {
            problems.push(join(path, "max_per_connection"), "must be at least 1");
        }
        if self.max_connections_per_principal == 0 {
            problems.push(join(path, "max_connections_per_principal"), "must be at least 1");
        }
        if self.connection_init_timeout.is_zero() {
            problems.push(join(path, "connection_init_timeout"), "must be more than 0");
        }
    }
}

/// What every subscription socket of one BFF shares: how to authenticate, and the open
/// connections per principal.
#[derive(Clone)]
pub struct Subscriptions {
    authenticator: Arc<Authenticator>,
    limits: SubscriptionLimits,
    connections: Arc<Mutex<HashMap<String, usize>>>,
}

impl Subscriptions {
    pub fn new(authenticator: Arc<Authenticator>, limits: &SubscriptionLimits) -> Self {
        Self { authenticator, limits: limits.clone(), connections: Arc::default() }
    }

    /// A place for one more connection of `principal`, given back on drop; `None` at the limit.
    fn enter(&self, principal: String) -> Option<ConnectionSlot> {
        let mut connections = self.connections.lock().unwrap_or_else(PoisonError::into_inner);
        let open = connections.entry(principal.clone()).or_default();
        if *open >= self.limits.max_connections_per_principal {
            return None;
        }
        *open += 1;
        Some(ConnectionSlot { connections: self.connections.clone(), principal })
    }
}

struct ConnectionSlot {
    connections: Arc<Mutex<HashMap<String, usize>>>,
    principal: String,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut connections = self.connections.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = connections.get_mut(&self.principal) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                connections.remove(&self.principal);
            }
        }
    }
}

/// Whether `headers` ask to upgrade to a WebSocket.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The state of one socket, shared by its executor and its `connection_init` handler.
struct Connection {
    /// Set once `connection_init` authenticated.
    context: OnceLock<RequestContext>,
    /// The close code of a refused `connection_init` (0 until one is refused): async-graphql
    /// closes every refusal with 1002, the protocol has its own codes.
    refused_with: AtomicU16,
    active: AtomicUsize,
    max_active: usize,
}

/// Runs each `subscribe` of one socket through the endpoint's checks, with the socket's identity.
struct SocketExecutor<Q, M, S> {
    endpoint: Endpoint<Q, M, S>,
    prepare: Prepare,
    connection: Arc<Connection>,
}

impl<Q, M, S> Clone for SocketExecutor<Q, M, S> {
    fn clone(&self) -> Self {
        Self { endpoint: self.endpoint.clone(), prepare: self.prepare.clone(), connection: self.connection.clone() }
    }
}

/// Gives back a subscription's place on its socket when its stream goes.
struct Active(Arc<Connection>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<Q, M, S> Executor for SocketExecutor<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        self.execute_stream(request, None).next().await.unwrap_or_default()
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        _session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        let refuse = |code: ErrorCode, message: &str, request_id: &str| {
            let refusal = super::limits::Refusal { code, message: message.to_owned() };
            futures::stream::once(std::future::ready(super::refused(refusal, request_id))).boxed()
        };
        let Some(cx) = self.connection.context.get().cloned() else {
            return refuse(ErrorCode::Unauthenticated, "send connection_init first", "-");
        };
        let connection = &self.connection;
        if connection.active.fetch_add(1, Ordering::Relaxed) >= connection.max_active {
            connection.active.fetch_sub(1, Ordering::Relaxed);
            let message = format!(
                "at most {} subscriptions per connection (graphql.subscriptions.max_per_connection)",
                connection.max_active
            );
            return refuse(ErrorCode::TooManySubscriptions, &message, &cx.request_id);
        }
        let active = Active(connection.clone());
        self.endpoint
            .execute_stream(cx, request, self.prepare.clone())
            .map(move |response| {
                let _held = &active;
                response
            })
            .boxed()
    }
}

/// What the upgrade request tells about the socket it opens.
pub struct Socket {
    pub request_id: Arc<str>,
    /// The address failed `connection_init`s are counted against.
    pub client: Option<IpAddr>,
    /// The server's shutdown: a socket outlives any request's grace period, so it is closed with
    /// 1001 (going away) when draining starts and the client reconnects to another replica.
    /// `None` when the router runs outside [`crate::server::serve`].
    pub draining: Option<Draining>,
}

/// Answers an upgrade request on the GraphQL path: the socket speaks graphql-transport-ws.
pub fn upgrade<Q, M, S>(
    upgrade: WebSocketUpgrade,
    endpoint: Endpoint<Q, M, S>,
    prepare: Prepare,
    subscriptions: Subscriptions,
    socket: Socket,
) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |websocket| serve(websocket, endpoint, prepare, subscriptions, socket))
}

async fn serve<Q, M, S>(
    socket: WebSocket,
    endpoint: Endpoint<Q, M, S>,
    prepare: Prepare,
    subscriptions: Subscriptions,
    Socket { request_id, client, draining }: Socket,
) where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let connection = Arc::new(Connection {
        context: OnceLock::new(),
        refused_with: AtomicU16::new(0),
        active: AtomicUsize::new(0),
        max_active: subscriptions.limits.max_per_connection,
    });
    let executor = SocketExecutor { endpoint, prepare, connection: connection.clone() };
    let (mut sink, source) = socket.split();
    let input = source.take_while(|message| std::future::ready(message.is_ok())).filter_map(|message| {
        std::future::ready(match message {
            Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
            Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
            _ => None,
        })
    });

    // When an accepted `connection_init`'s credential expires (`None`: never).
    let (accepted, acceptance) = tokio::sync::oneshot::channel::<Option<SystemTime>>();
    let init_timeout = subscriptions.limits.connection_init_timeout;
    let on_init = {
        let connection = connection.clone();
        move |payload: serde_json::Value| async move {
            match authenticate(&subscriptions, &payload, client, request_id).await {
                Ok((context, slot)) => {
                    let _ = accepted.send(context.principal().ok().and_then(|identity| identity.expires_at));
                    let _ = connection.context.set(context);
                    let mut data = Data::default();
                    // The slot lives as long as the socket's session data: the whole connection.
                    data.insert(Arc::new(slot));
                    Ok(data)
                }
                Err((code, message)) => {
                    connection.refused_with.store(code, Ordering::Relaxed);
                    Err(async_graphql::Error::new(message))
                }
            }
        }
    };
    let mut messages = GraphQlWebSocket::new(executor, input, async_graphql::http::WebSocketProtocols::GraphQLWS)
        .on_connection_init(on_init)
        .boxed();

    let mut acceptance = acceptance.fuse();
    let mut deadline = Box::pin(tokio::time::sleep(init_timeout));
    let mut initialised = false;
    let shutdown = async move {
        match draining {
            Some(draining) => draining.started().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { break };
                let frame = match message {
                    WsMessage::Text(text) => Message::Text(text.into()),
                    WsMessage::Close(code, reason) => {
                        // async-graphql closes a refused init with 1002; the protocol says why.
                        let code = match connection.refused_with.load(Ordering::Relaxed) {
                            0 => code,
                            refused => refused,
                        };
                        let _ = sink.send(close(code, &reason)).await;
                        break;
                    }
                };
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
            expiry = &mut acceptance, if !initialised => {
                initialised = true;
                // A refusal drops the sender and closes the socket through the protocol stream.
                if let Ok(expiry) = expiry {
                    let left = expiry
                        .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default())
                        .unwrap_or(Duration::MAX);
                    let until = tokio::time::Instant::now().checked_add(left);
                    deadline = Box::pin(tokio::time::sleep_until(until.unwrap_or_else(far_future)));
                }
            }
            () = &mut shutdown => {
                let _ = sink.send(close(GOING_AWAY, "server shutting down")).await;
                break;
            }
            () = &mut deadline => {
                let (code, reason) = if initialised {
                    (FORBIDDEN, "token expired")
                } else {
                    (INIT_TIMEOUT, "Connection initialisation timeout")
                };
                let _ = sink.send(close(code, reason)).await;
                break;
            }
        }
    }
    // Dropping the protocol stream drops every subscription stream, and with them their
    // backend streams.
    drop(messages);
    let _ = sink.close().now_or_never();
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.chars().take(100).collect::<String>().into() }))
}

/// The `connection_init` payload's credentials, verified, and a place among the principal's
/// connections; or the close code and message of the refusal.
async fn authenticate(
    subscriptions: &Subscriptions,
    payload: &serde_json::Value,
    client: Option<IpAddr>,
    request_id: Arc<str>,
) -> Result<(RequestContext, ConnectionSlot), (u16, String)> {
    let authorization = payload
        .get("authorization")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| (FORBIDDEN, "connection_init needs {\"authorization\": \"Bearer <token>\"}".to_owned()))?;
    let value =
        authorization.parse().map_err(|_| (FORBIDDEN, "the authorization is not a valid header value".to_owned()))?;
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    let identity = subscriptions
        .authenticator
        .authenticate(&headers, client)
        .await
        .map_err(|error| (FORBIDDEN, error.public_message()))?;
    // Counted per caller: the user, or the client acting for itself. (The identity's display form
    // names only the client, so it would count every user of an app together.)
    let caller = identity.owner().unwrap_or_else(|| identity.to_string());
    let slot = subscriptions.enter(caller).ok_or_else(|| {
        let max = subscriptions.limits.max_connections_per_principal;
        (
            TOO_MANY_CONNECTIONS,
            format!("at most {max} subscription connections per caller (graphql.subscriptions.max_connections_per_principal)"),
        )
    })?;
    Ok((RequestContext::for_connection(request_id, Arc::new(identity)), slot))
}
