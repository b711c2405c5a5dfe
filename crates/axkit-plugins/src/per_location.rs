//! [`PerLocation`]: what a plugin works out from a `<Location>`'s merged
//! config (its directives read, paired, turned into what a request uses),
//! once per Location and worker rather than once per request. A request
//! then finds it with one look-up by the address of its config, which is
//! frozen for the worker's life, where reading each directive would cost
//! a look-up of its own.

use std::cell::RefCell;

use axkit::config::LocationConfig;
use axkit::plugin::TrustedMap;

/// Values of type `T` (cheap to clone: an `Rc`) by Location. Keyed by the
/// address of a config, which the configuration gives, not a request: a
/// trusted map.
pub(crate) struct PerLocation<T>(RefCell<TrustedMap<usize, T>>);

impl<T> Default for PerLocation<T> {
    fn default() -> Self {
        PerLocation(RefCell::default())
    }
}

impl<T: Clone> PerLocation<T> {
    /// The value for `config`, made by `make` the first time.
    pub(crate) fn get(
        &self,
        config: &LocationConfig,
        make: impl FnOnce(&LocationConfig) -> T,
    ) -> T {
        let key = config as *const LocationConfig as usize;
        if let Some(value) = self.0.borrow().get(&key) {
            return value.clone();
        }
        let value = make(config);
        self.0.borrow_mut().insert(key, value.clone());
        value
    }
}
