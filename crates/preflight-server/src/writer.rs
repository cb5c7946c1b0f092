//! Group commit for evaluations: concurrent requests are written in one transaction, and
//! each is answered only once its transaction is durable.
//!
//! One writer task per process takes whatever is queued (up to [`MAX_BATCH`]) while earlier
//! commits were in flight (up to the backend's `max_concurrent_commits`), so batches grow
//! with load and a lone request pays a single commit. The queue is bounded; when it is full, or the database does not confirm
//! within [`WRITE_TIMEOUT`], the request gets a quick 503 instead of hanging.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::storage::evaluations::{EvaluationWrite, WriteOutcome};
use crate::storage::{Store, StoreError};

pub const MAX_BATCH: usize = 256;
pub const QUEUE_CAPACITY: usize = 8192;
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

struct Job {
    write: EvaluationWrite,
    reply: oneshot::Sender<Result<WriteOutcome, String>>,
}

#[derive(Clone)]
pub struct EvaluationWriter {
    queue: mpsc::Sender<Job>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the database did not confirm the write in time")]
    Timeout,
    #[error("the write queue is full")]
    Overloaded,
    #[error("database error: {0}")]
    Store(String),
}

impl EvaluationWriter {
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(store, rx));
        EvaluationWriter { queue }
    }

    /// Queues writes and waits until they are committed (or fail).
    pub async fn write_all(
        &self,
        writes: Vec<EvaluationWrite>,
    ) -> Vec<Result<WriteOutcome, WriteError>> {
        let mut waiting = Vec::with_capacity(writes.len());
        for write in writes {
            let (reply, rx) = oneshot::channel();
            match self.queue.try_send(Job { write, reply }) {
                Ok(()) => waiting.push(Some(rx)),
                Err(_) => waiting.push(None),
            }
        }
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            out.push(match rx {
                None => Err(WriteError::Overloaded),
                Some(rx) => match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(Ok(outcome))) => Ok(outcome),
                    Ok(Ok(Err(e))) => Err(WriteError::Store(e)),
                    Ok(Err(_)) => Err(WriteError::Store("writer stopped".into())),
                    Err(_) => Err(WriteError::Timeout),
                },
            });
        }
        out
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job>) {
    // Batches commit concurrently up to the backend's limit; while they are in flight the
    // queue fills up and the next batch grows.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        store.max_concurrent_commits().max(1),
    ));
    while let Some(first) = rx.recv().await {
        let permit = match in_flight.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            commit_batch(store.as_ref(), jobs).await;
            drop(permit);
        });
    }
}

async fn commit_batch(store: &dyn Store, mut jobs: Vec<Job>) {
    // A request that already answered 503 must not be stored behind the client's back.
    jobs.retain(|j| !j.reply.is_closed());
    if jobs.is_empty() {
        return;
    }
    let (writes, replies): (Vec<EvaluationWrite>, Vec<_>) =
        jobs.into_iter().map(|j| (j.write, j.reply)).unzip();
    let started = std::time::Instant::now();
    let result: Result<Vec<WriteOutcome>, StoreError> = store.commit_evaluations(&writes).await;
    tracing::debug!(
        batch = writes.len(),
        commit_ms = started.elapsed().as_secs_f64() * 1000.0,
        "evaluation batch committed"
    );
    metrics::histogram!("evaluation_batch_size").record(writes.len() as f64);
    match result {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, batch = writes.len(), "evaluation batch not committed");
            let message = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(message.clone()));
            }
        }
    }
}
