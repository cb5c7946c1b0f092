//! The Redis connection: bounded in time on every call, reconnecting by itself.
//!
//! A dead or hanging Redis must never hang a request or a probe, so every command is wrapped
//! in `REDIS_TIMEOUT_MS` and the connection is (re)established in the background instead of
//! on the request path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::RwLock;

#[derive(Debug, thiserror::Error)]
pub enum RedisLinkError {
    #[error("redis is not connected")]
    NotConnected,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Command(#[from] redis::RedisError),
}

#[derive(Clone)]
pub struct RedisLink {
    client: redis::Client,
    manager: Arc<RwLock<Option<ConnectionManager>>>,
    timeout: Duration,
}

impl RedisLink {
    /// Starts connecting in the background and returns at once.
    pub fn start(url: &str, timeout: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let link = RedisLink {
            client,
            manager: Arc::new(RwLock::new(None)),
            timeout,
        };
        let background = link.clone();
        tokio::spawn(async move { background.keep_connected().await });
        Ok(link)
    }

    async fn keep_connected(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.manager.read().await.is_some() {
                // The manager reconnects by itself once it exists.
                return;
            }
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(self.timeout.max(Duration::from_millis(100)))
                .set_response_timeout(self.timeout)
                .set_number_of_retries(2)
                .set_max_delay(1000);
            match ConnectionManager::new_with_config(self.client.clone(), config).await {
                Ok(manager) => {
                    *self.manager.write().await = Some(manager);
                    tracing::info!("redis connected");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "redis connect failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A connection handle, if one has been established.
    pub async fn connection(&self) -> Result<ConnectionManager, RedisLinkError> {
        self.manager
            .read()
            .await
            .clone()
            .ok_or(RedisLinkError::NotConnected)
    }

    /// Runs one command future with the configured time bound.
    pub async fn bounded<T, F>(&self, fut: F) -> Result<T, RedisLinkError>
    where
        F: std::future::Future<Output = Result<T, redis::RedisError>>,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(RedisLinkError::Timeout(self.timeout)),
        }
    }

    /// PING, returning the round-trip time.
    pub async fn ping(&self) -> Result<Duration, RedisLinkError> {
        let mut conn = self.connection().await?;
        let started = Instant::now();
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(started.elapsed())
    }
}
