//! `switchboard:recipes/kv`: the recipe's own space in the store.

use crate::bindings::switchboard::recipes::kv::Host;
use crate::bindings::types::Error;
use crate::state::RunState;
use crate::store::KvSpace;
use std::sync::Arc;
use switchboard_model::{Capability, RecipeError};

impl RunState {
    fn kv_space(&mut self) -> Result<Arc<dyn KvSpace>, RecipeError> {
        self.check_grant(Capability::Kv, None)?;
        self.kv.clone().ok_or_else(|| RecipeError::Other {
            message: "kv is not available in this context".into(),
        })
    }
}

impl Host for RunState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .kv_space()?
            .get(&key)
            .await
            .map_err(RecipeError::from)?)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        Ok(self
            .kv_space()?
            .set(&key, &value)
            .await
            .map_err(RecipeError::from)?)
    }

    async fn delete(&mut self, key: String) -> Result<bool, Error> {
        Ok(self
            .kv_space()?
            .delete(&key)
            .await
            .map_err(RecipeError::from)?)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        limit: Option<u32>,
    ) -> Result<Vec<String>, Error> {
        let limit = limit.map(|l| l as usize);
        Ok(self
            .kv_space()?
            .list_keys(&prefix, limit)
            .await
            .map_err(RecipeError::from)?)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, Error> {
        Ok(self
            .kv_space()?
            .compare_and_swap(&key, expected.as_deref(), new.as_deref())
            .await
            .map_err(RecipeError::from)?)
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, Error> {
        Ok(self
            .kv_space()?
            .increment(&key, delta)
            .await
            .map_err(RecipeError::from)?)
    }

    async fn set_if_absent(&mut self, key: String, value: Vec<u8>) -> Result<bool, Error> {
        Ok(self
            .kv_space()?
            .set_if_absent(&key, &value)
            .await
            .map_err(RecipeError::from)?)
    }
}
