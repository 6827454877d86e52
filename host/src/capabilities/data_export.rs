//! `switchboard:recipes/data-export`.

use crate::model::Capability::DataExport;
use crate::runtime::bindings::switchboard::recipes::data_export::{
    ExportPage, ExportRequest, Host,
};
use crate::runtime::bindings::types::Error;
use crate::runtime::state::RunState;

impl Host for RunState {
    async fn open(
        &mut self,
        connection: String,
        _request: ExportRequest,
    ) -> Result<ExportPage, Error> {
        self.not_served(DataExport, &connection, "data-export.open")
    }

    async fn next_page(
        &mut self,
        connection: String,
        _cursor: String,
    ) -> Result<ExportPage, Error> {
        self.not_served(DataExport, &connection, "data-export.next-page")
    }
}
