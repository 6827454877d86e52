//! `switchboard:recipes/kv`: the recipe's own sled tree.

use crate::model::{Capability, RecipeError};
use crate::runtime::bindings::switchboard::recipes::kv::Host;
use crate::runtime::bindings::types::Error;
use crate::runtime::state::RunState;
use crate::store::Kv;

impl RunState {
    fn kv_space(&mut self) -> Result<Kv, RecipeError> {
        self.check_grant(Capability::Kv, None)?;
        self.kv.clone().ok_or_else(|| RecipeError::Other {
            message: "kv is not available in this context".into(),
        })
    }
}

impl Host for RunState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.kv_space()?.get(&key).map_err(RecipeError::from)?)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        Ok(self
            .kv_space()?
            .set(&key, &value)
            .map_err(RecipeError::from)?)
    }

    fn delete(&mut self, key: String) -> Result<bool, Error> {
        Ok(self.kv_space()?.delete(&key).map_err(RecipeError::from)?)
    }

    fn list_keys(&mut self, prefix: String, limit: Option<u32>) -> Result<Vec<String>, Error> {
        let limit = limit.map(|l| l as usize);
        Ok(self
            .kv_space()?
            .list_keys(&prefix, limit)
            .map_err(RecipeError::from)?)
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, Error> {
        Ok(self
            .kv_space()?
            .compare_and_swap(&key, expected.as_deref(), new.as_deref())
            .map_err(RecipeError::from)?)
    }

    fn set_if_absent(&mut self, key: String, value: Vec<u8>) -> Result<bool, Error> {
        Ok(self
            .kv_space()?
            .set_if_absent(&key, &value)
            .map_err(RecipeError::from)?)
    }
}
