//! The set of loaded plugins.

use crate::plugin::{LoadError, Plugin};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The loaded plugins, by recipe name.
#[derive(Debug, Default, Clone)]
pub struct Plugins {
    by_name: BTreeMap<String, Arc<Plugin>>,
}

impl Plugins {
    /// Add a plugin; refuses a second recipe with the same name.
    pub fn insert(&mut self, plugin: Plugin) -> Result<(), LoadError> {
        if let Some(other) = self.by_name.get(&*plugin.name) {
            return Err(LoadError::Duplicate {
                path: plugin.path.clone(),
                name: plugin.name.to_string(),
                other: other.path.clone(),
            });
        }
        self.by_name
            .insert(plugin.name.to_string(), Arc::new(plugin));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.by_name.get(name)
    }

    /// Add or replace the plugin of that name (a new version of a recipe).
    pub fn upsert(&mut self, plugin: Arc<Plugin>) {
        self.by_name.insert(plugin.name.to_string(), plugin);
    }

    /// Remove the plugin of that name; returns it.
    pub fn remove(&mut self, name: &str) -> Option<Arc<Plugin>> {
        self.by_name.remove(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
