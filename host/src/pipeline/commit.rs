//! Group commit: callers that need their writes on disk wait for one shared flush.
//!
//! Each waiter joins the next batch; one task flushes sled for the whole batch on a
//! blocking thread, while the waiters that arrive meanwhile gather for the next flush. So
//! under load one `fsync` acknowledges many webhooks, and alone a webhook waits for one.

use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

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
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let db = db.clone();
                let result = match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = &result {
                    tracing::error!("flushing the store failed: {e}");
                }
                for waiter in batch.drain(..) {
                    let _ = waiter.send(result.clone());
                }
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
