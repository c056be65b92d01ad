//! Metric handles kept for reuse, used by every layer that counts per request (authentication,
//! authorization, rate limiting, the gateway's request metrics).
//!
//! `metrics::counter!(name, labels…)` asks the recorder for a handle on every call, and the
//! Prometheus recorder copies the labels into an owned key each time (two or three allocations
//! and a registry lookup per call). A layer keeps a [`Handles`] instead: the first request with
//! a given label set registers the handle, later ones clone it (a reference count). Each cache
//! belongs to one layer instance, filled lazily, so it holds handles of the recorder installed
//! before the layer's first request — install the recorder before serving (the gateway does it
//! before building its pipeline). A cache holds at most [`MAX_ENTRIES`] label sets; beyond
//! that, handles are registered per call as before (label sets come from configuration and
//! closed vocabularies, so this is only a bound, not a working size).

use std::hash::Hash;
use std::sync::RwLock;

/// The most label sets one cache keeps.
pub const MAX_ENTRIES: usize = 4096;

/// Handles (`metrics::Counter`, `Histogram`, …) by label set `K`.
pub struct Handles<K, H> {
    map: RwLock<foldhash::HashMap<K, H>>,
}

impl<K, H> Default for Handles<K, H> {
    fn default() -> Self {
        Handles {
            map: RwLock::new(foldhash::HashMap::default()),
        }
    }
}

impl<K, H> std::fmt::Debug for Handles<K, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.map.read().map_or(0, |map| map.len());
        f.debug_struct("Handles").field("label_sets", &len).finish()
    }
}

impl<K: Eq + Hash, H: Clone> Handles<K, H> {
    /// The handle for `key`, registered with `register` the first time.
    pub fn get(&self, key: K, register: impl FnOnce() -> H) -> H {
        if let Some(handle) = self.map.read().ok().and_then(|map| map.get(&key).cloned()) {
            return handle;
        }
        let handle = register();
        if let Ok(mut map) = self.map.write()
            && map.len() < MAX_ENTRIES
        {
            map.entry(key).or_insert_with(|| handle.clone());
        }
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_label_set_is_registered_once_and_the_cache_is_bounded() {
        let handles: Handles<u32, u32> = Handles::default();
        let registered = Cell::new(0);
        let register = |value| {
            registered.set(registered.get() + 1);
            value
        };
        assert_eq!(handles.get(1, || register(10)), 10);
        assert_eq!(
            handles.get(1, || register(11)),
            10,
            "the first handle is kept"
        );
        assert_eq!(registered.get(), 1);
        for key in 0..(MAX_ENTRIES as u32 + 10) {
            handles.get(key, || register(key));
        }
        let before = registered.get();
        // Past the bound, a new label set is registered on every call and not kept.
        handles.get(u32::MAX, || register(0));
        handles.get(u32::MAX, || register(0));
        assert_eq!(registered.get(), before + 2);
    }
}
