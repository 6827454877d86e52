//! Group commit: callers that need their writes on disk wait for a shared flush.
//!
//! Waiters gather into batches; each batch gets one `Db::flush` on a blocking thread. Up to
//! [`MAX_FLUSHES`] flushes run at once, so a batch never waits for the previous flush to
//! finish first (a flush started after a write makes that write durable, whatever other
//! flushes are doing). Under load one `fsync` acknowledges many webhooks; alone, a webhook
//! waits for one.

use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

/// Flushes in flight at once.
pub const MAX_FLUSHES: usize = 4;

/// Handle to the flushing task.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Waiter>,
}

/// A flush failed, or the committer is gone.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not write to disk: {0}")]
pub struct CommitError(pub String);

impl Committer {
    /// Start the flushing task for `db`.
    pub fn start(db: sled::Db) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let slots = Arc::new(Semaphore::new(MAX_FLUSHES));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Wait for a free flush slot first: the batch keeps growing meanwhile.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let db = db.clone();
                tokio::spawn(async move {
                    let result = match tokio::task::spawn_blocking(move || db.flush()).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    drop(slot);
                    if let Err(e) = &result {
                        tracing::error!("flushing the store failed: {e}");
                    }
                    for waiter in batch {
                        let _ = waiter.send(result.clone());
                    }
                });
            }
        });
        Committer { tx }
    }

    /// Wait until everything written before this call is on disk.
    pub async fn commit(&self) -> Result<(), CommitError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .map_err(|_| CommitError("the committer has stopped".into()))?;
        rx.await
            .map_err(|_| CommitError("the committer has stopped".into()))?
            .map_err(CommitError)
    }
}
