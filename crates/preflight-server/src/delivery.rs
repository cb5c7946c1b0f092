//! The webhook delivery worker: one supervised task per process, sharing the queue with
//! every replica through the database.
//!
//! It claims due deliveries with a lease, sends them concurrently through the SSRF-guarded
//! client, and records each attempt with what the domain's retry policy makes of it. Nothing
//! it needs lives in memory: a process killed mid-delivery leaves leased rows that become
//! due again when the lease runs out, so every event is delivered at least once (the
//! `webhook-id` lets receivers drop the rare repeat of a delivery whose 2xx arrived just as
//! the process died). A panic restarts the loop; a database error backs it off.

use std::time::Duration;

use chrono::Utc;

use crate::domain::webhooks;
use crate::state::AppState;
use crate::storage::webhooks::{AttemptRecord, ClaimedDelivery, DeliveryStep};
use crate::storage::StoreError;

/// How often the queue is looked at when it was empty: bounds the commit-to-first-attempt
/// delay for deliveries queued by another replica (this one's commits wake the worker).
const POLL: Duration = Duration::from_millis(200);
const ERROR_BACKOFF: Duration = Duration::from_secs(2);
/// Deliveries claimed (and sent concurrently) at once.
const BATCH: i64 = 32;
/// How often the backlog gauges are refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

pub const ATTEMPTS_METRIC: &str = "webhook_delivery_attempts_total";
pub const LATENCY_METRIC: &str = "webhook_delivery_seconds";
pub const PENDING_METRIC: &str = "webhook_deliveries_pending";
pub const OLDEST_METRIC: &str = "webhook_delivery_oldest_pending_seconds";

/// Runs the worker for the life of the process, restarting it if it panics.
pub async fn supervise(state: AppState) {
    crate::supervisor::supervise("webhook delivery", state, run).await;
}

async fn run(state: AppState) {
    // Attempts are recorded as they finish, but no more at once than the backend commits
    // well: SQLite has one writer, and writers that collide there wait in its busy
    // handler's sleeps instead of queueing here.
    let recording = tokio::sync::Semaphore::new(state.store().max_concurrent_commits().max(1));
    let mut last_backlog = tokio::time::Instant::now() - BACKLOG_EVERY;
    loop {
        if last_backlog.elapsed() >= BACKLOG_EVERY {
            last_backlog = tokio::time::Instant::now();
            report_backlog(&state).await;
        }
        match step(&state, &recording).await {
            // Woken at once by a commit of this process; another replica's is seen at the
            // next poll.
            Ok(0) => {
                let _ = tokio::time::timeout(POLL, state.delivery_wakeup().notified()).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "webhook deliveries not claimed");
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// Claims and sends one batch; how many it claimed.
async fn step(state: &AppState, recording: &tokio::sync::Semaphore) -> Result<usize, StoreError> {
    let now = Utc::now();
    let lease = chrono::Duration::from_std(lease(state.config().webhooks.timeout))
        .unwrap_or(chrono::Duration::minutes(1));
    let claimed = state
        .store()
        .claim_deliveries(now, now + lease, BATCH, &webhooks::claimable)
        .await?;
    futures::future::join_all(claimed.iter().map(|c| deliver(state, c, recording))).await;
    Ok(claimed.len())
}

/// How long a claim holds a delivery: the attempt's timeout twice over and a margin for
/// recording it. A process killed mid-delivery holds its rows this long at most.
fn lease(timeout: Duration) -> Duration {
    timeout * 2 + Duration::from_secs(5)
}

async fn deliver(state: &AppState, c: &ClaimedDelivery, recording: &tokio::sync::Semaphore) {
    let at = Utc::now();
    let keys = webhooks::signing_keys(
        state,
        &c.secret_sealed,
        c.previous_secret_sealed.as_deref(),
        c.previous_secret_until,
        at,
    );
    let body = serde_json::to_vec(&c.payload.0).unwrap_or_default();
    let reply = if keys.is_empty() {
        crate::outbound::Reply::failed(
            "the endpoint's secret cannot be opened (was API_KEY_SALT changed?)".into(),
            Duration::ZERO,
        )
    } else {
        state
            .outbound()
            .send(&c.url, &c.event_id.to_string(), &body, &keys)
            .await
    };
    let attempts = usize::try_from(c.attempts).unwrap_or(usize::MAX);
    let step = webhooks::next_step(
        &reply,
        attempts,
        &state.config().webhooks.retry_schedule,
        Utc::now(),
        rand::random::<f64>(),
    );
    let outcome = match &step {
        DeliveryStep::Delivered => "delivered",
        DeliveryStep::Retry(_) => "retry",
        DeliveryStep::Failed => "failed",
        DeliveryStep::FailedAndDisable(_) => "disabled",
    };
    metrics::counter!(ATTEMPTS_METRIC, "outcome" => outcome).increment(1);
    metrics::histogram!(LATENCY_METRIC).record(reply.latency.as_secs_f64());
    let attempt = AttemptRecord {
        at,
        status_code: reply.status.map(i32::from),
        latency_ms: reply.latency.as_secs_f64() * 1000.0,
        error: reply.error.clone(),
        response_excerpt: reply.excerpt.clone(),
    };
    let webhooks_config = &state.config().webhooks;
    let judged = webhooks::Attempt {
        step,
        policy: webhooks::HealthPolicy {
            cooldown: webhooks_config.circuit_cooldown,
            disable_after: webhooks_config.disable_after,
        },
        tenant_id: c.tenant_id,
        endpoint_id: c.endpoint_id,
        url: c.url.clone(),
        at: attempt.at,
    };
    let _turn = recording.acquire().await;
    if let Err(e) = state.store().finish_attempt(c, &attempt, &judged).await {
        // The lease runs out and the delivery is attempted again: at least once.
        tracing::warn!(error = %e, delivery = %c.id, "webhook attempt not recorded");
    }
}

async fn report_backlog(state: &AppState) {
    if let Ok((pending, waited)) = webhooks::backlog(state, None).await {
        metrics::gauge!(PENDING_METRIC).set(pending as f64);
        metrics::gauge!(OLDEST_METRIC).set(waited.unwrap_or(0.0));
    }
}
