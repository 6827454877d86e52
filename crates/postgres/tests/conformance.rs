//! PostgreSQL under the backend conformance suite sled passes: the same checks, unchanged.

use async_trait::async_trait;
use std::sync::Arc;
use switchboard_pipeline::backend::NewEvent;
use switchboard_pipeline::conformance::{self, Harness};
use switchboard_postgres::{PgBackend, testing};

/// A schema per check in the test database.
struct Pg;

#[async_trait]
impl Harness for Pg {
    type Backend = PgBackend;

    async fn fresh(&self) -> Arc<PgBackend> {
        PgBackend::open(&testing::fresh_config("conformance"))
            .await
            .expect("open a fresh schema")
    }

    async fn crash(&self, backend: Arc<PgBackend>) -> Arc<PgBackend> {
        // The host is gone: its connections close with nothing more said.
        let config = backend.config().clone();
        drop(backend);
        PgBackend::open(&config).await.expect("open again")
    }

    async fn torn_accept(&self, backend: &PgBackend, event: NewEvent) {
        backend
            .accept_uncommitted(&event)
            .await
            .expect("an uncommitted accept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_backend_conformance_suite() {
    conformance::run_all(&Pg).await;
}
