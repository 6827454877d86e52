//! `switchboard:recipes/data-export`.

use crate::bindings::switchboard::recipes::data_export::{ExportPage, ExportRequest, Host};
use crate::bindings::types::Error;
use crate::state::RunState;
use switchboard_model::{self as model, Capability::DataExport};

fn page_to_wit(p: model::ExportPage) -> ExportPage {
    ExportPage {
        columns: p.columns,
        rows: p.rows,
        next: p.next,
    }
}

impl Host for RunState {
    async fn open(
        &mut self,
        connection: String,
        request: ExportRequest,
    ) -> Result<ExportPage, Error> {
        let (c, call) = self.connector(DataExport, "open", &connection)?;
        let request = model::ExportRequest {
            table: request.table,
            scope: request.scope,
            updated_after: request.updated_after,
            page_size: request.page_size,
            snapshot: request.snapshot,
        };
        Ok(page_to_wit(c.export_open(&call, &request).await?))
    }

    async fn next_page(&mut self, connection: String, cursor: String) -> Result<ExportPage, Error> {
        let (c, call) = self.connector(DataExport, "next-page", &connection)?;
        Ok(page_to_wit(c.export_next(&call, &cursor).await?))
    }
}
