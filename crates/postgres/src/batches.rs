//! Group commit: requests made while a writer is busy wait together, and the next free
//! writer takes them all (up to a batch's limit) in one go, with what is asked during a few
//! turns of the scheduler after. A lone request is a batch of one and waits for no timer.
//! Accepts ([`crate::accept`]) and settles ([`crate::settle`]) are written this way, each
//! with its own writer.

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

/// Turns of the scheduler a writer gives, once it has taken what waits, to the tasks ready
/// to run (webhooks being read, runs ending) before it writes: what they ask meanwhile goes
/// in the same batch. No timer: on an idle host a turn takes microseconds (on a busy one,
/// as long as the tasks ahead of the writer in its worker's queue run); in the hosts
/// bench it made a third fewer accept statements, and the database's CPU per event 8-17 %
/// lower, with one host and with three (docs/benchmarks.md, run 18).
const TURNS: usize = 3;

/// Take into `batch` (up to `max`) what is asked during [`TURNS`] turns of the scheduler.
async fn gather<T, A>(
    incoming: &Mutex<mpsc::Receiver<Pending<T, A>>>,
    batch: &mut Vec<Pending<T, A>>,
    max: usize,
) {
    for _ in 0..TURNS {
        if batch.len() >= max {
            return;
        }
        tokio::task::yield_now().await;
        // Another writer waiting for requests holds the receiver: it takes the rest (this
        // one must not wait for the next request with a batch in hand).
        let Ok(mut incoming) = incoming.try_lock() else {
            return;
        };
        while batch.len() < max {
            match incoming.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
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
                        gather(&incoming, &mut batch, max).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests asked while the writer takes its turns go in its batch.
    #[tokio::test(flavor = "current_thread")]
    async fn a_writer_takes_what_is_asked_during_its_turns() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (batches, _writer) = Batches::start(1, 10, {
            let sizes = sizes.clone();
            move |batch: Vec<Pending<u32, ()>>| {
                sizes.lock().unwrap().push(batch.len());
                for p in batch {
                    p.answer(Ok(()));
                }
                async {}
            }
        });
        let batches = Arc::new(batches);
        // One request wakes the writer; two more are asked by tasks that run once it has
        // taken the first (each yields to the scheduler first).
        let asks: Vec<_> = (0..3u32)
            .map(|n| {
                let batches = batches.clone();
                tokio::spawn(async move {
                    if n > 0 {
                        tokio::task::yield_now().await;
                    }
                    batches.ask(n).await
                })
            })
            .collect();
        for ask in asks {
            ask.await.unwrap().unwrap();
        }
        assert_eq!(*sizes.lock().unwrap(), vec![3], "one batch of the three");
    }
}
