//! Group commit: requests made while a writer is busy wait together, and the next free
//! writer takes them all (up to a batch's limit) in one go. A lone request is a batch of one
//! and waits for nothing. Accepts ([`crate::accept`]) and settles ([`crate::settle`]) are
//! written this way, each with its own writer.

use std::future::Future;
use std::sync::Arc;
use switchboard_pipeline::backend::{BackendError, BackendResult};
use tokio::sync::{Mutex, mpsc, oneshot};

/// A request and who waits for its answer.
pub(crate) struct Pending<T, A> {
    pub request: T,
    pub reply: oneshot::Sender<BackendResult<A>>,
}

impl<T, A> Pending<T, A> {
    /// Answer the waiter (gone: nobody to tell).
    pub fn answer(self, answer: BackendResult<A>) {
        let _ = self.reply.send(answer);
    }
}

/// Hands requests to the writer tasks.
pub(crate) struct Batches<T, A> {
    queue: mpsc::Sender<Pending<T, A>>,
}

impl<T: Send + 'static, A: Send + 'static> Batches<T, A> {
    /// Start `writers` tasks, each writing the batches (at most `max` requests, in the order
    /// made) it takes with `write`, which answers every request of its batch.
    pub fn start<W, F>(
        writers: usize,
        max: usize,
        write: W,
    ) -> (Batches<T, A>, Vec<tokio::task::JoinHandle<()>>)
    where
        W: Fn(Vec<Pending<T, A>>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send,
    {
        let (queue, incoming) = mpsc::channel::<Pending<T, A>>(max * 64);
        let incoming = Arc::new(Mutex::new(incoming));
        let write = Arc::new(write);
        let tasks = (0..writers)
            .map(|_| {
                let (incoming, write) = (incoming.clone(), write.clone());
                tokio::spawn(async move {
                    loop {
                        let mut batch = Vec::new();
                        if incoming.lock().await.recv_many(&mut batch, max).await == 0 {
                            return;
                        }
                        write(batch).await;
                    }
                })
            })
            .collect();
        (Batches { queue }, tasks)
    }

    /// `request`'s answer, written in the next batch.
    pub async fn ask(&self, request: T) -> BackendResult<A> {
        let (reply, answer) = oneshot::channel();
        let stopped = || BackendError::Io("the store is closing".into());
        self.queue
            .send(Pending { request, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}
