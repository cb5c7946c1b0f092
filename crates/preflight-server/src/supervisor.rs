//! Background tasks that must outlive their own bugs: each runs in a spawned task, and a
//! panic is logged and the task started again after a pause, for the life of the process.
//! The tasks keep their progress in the database, so a restart loses nothing.

use std::future::Future;
use std::time::Duration;

use crate::state::AppState;

const RESTART_BACKOFF: Duration = Duration::from_secs(2);

/// Runs `task` for the life of the process, restarting it when it panics.
pub async fn supervise<F, Fut>(name: &'static str, state: AppState, task: F)
where
    F: Fn(AppState) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        if let Err(e) = tokio::spawn(task(state.clone())).await {
            tracing::error!(task = name, error = %e, "background task stopped; restarting");
            tokio::time::sleep(RESTART_BACKOFF).await;
        }
    }
}
