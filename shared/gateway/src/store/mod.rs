//! Redis, where replicas of one BFF keep the state they share (idempotency records, automatic
//! persisted queries). Connected on first use, so a BFF starts and serves without it; what needs
//! it answers 503 while it is unreachable, and nothing else waits on it.

use std::time::Duration;

use tokio::sync::OnceCell;

use crate::GatewayError;

/// How long connecting, or one command, may take before the caller is told Redis is unavailable.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// One Redis, for one purpose (`store` names it in errors and logs).
pub struct Redis {
    store: &'static str,
    client: redis::Client,
    connection: OnceCell<redis::aio::ConnectionManager>,
}

impl Redis {
    pub fn new(store: &'static str, url: &str) -> Result<Self, GatewayError> {
        let client = redis::Client::open(url).map_err(|e| GatewayError::Internal(format!("{store}: {e}")))?;
        Ok(Self { store, client, connection: OnceCell::new() })
    }

    /// Whether `url` is one [`Redis::new`] takes; the reason when not.
    pub fn check_url(url: &str) -> Result<(), String> {
        redis::Client::open(url).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Runs `command` on the shared multiplexed connection (re-established by its manager).
    pub async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, GatewayError> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(REDIS_TIMEOUT)
                    .set_response_timeout(REDIS_TIMEOUT)
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| self.unavailable(e.to_string()))
            })
            .await?;
        command.query_async(&mut connection.clone()).await.map_err(|e| self.unavailable(e.to_string()))
    }

    pub fn unavailable(&self, detail: String) -> GatewayError {
        GatewayError::StoreUnavailable { store: self.store, detail }
    }
}
