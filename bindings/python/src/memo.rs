//! Python claims kept per cached result, so a cache hit costs a `dict` copy
//! instead of a full conversion from JSON.
//!
//! The engine hands out the same `Arc<VerifiedToken>` for every hit on an
//! entry (per thread), so that pointer identifies "the claims of this cached
//! result". The memo is direct-mapped and bounded; a collision only costs a
//! conversion. Each slot holds a `Weak` to the token, which keeps the
//! allocation (not the claims) alive, so a pointer can never be reused by
//! another token while its slot exists.
//!
//! The lock is never held while Python code could run (which could release
//! the GIL and let another thread wait on this lock while holding it): under
//! the lock only reference counts change.

use std::sync::{Arc, Mutex, Weak};

use jwtwarden::VerifiedToken;
use pyo3::prelude::*;
use pyo3::types::PyDict;

const SLOTS: usize = 1024;

/// The token, its claims as a template `dict`, and whether any claim is a
/// container (so a copy must go deeper than the top level).
type Slot = Option<(Weak<VerifiedToken>, Py<PyDict>, bool)>;

pub(crate) struct ClaimsMemo {
    slots: Mutex<Vec<Slot>>,
}

impl ClaimsMemo {
    pub(crate) fn new() -> ClaimsMemo {
        ClaimsMemo {
            slots: Mutex::new(Vec::new()),
        }
    }

    fn index(token: &Arc<VerifiedToken>) -> usize {
        let p = Arc::as_ptr(token) as usize;
        (p >> 4 ^ p >> 14) % SLOTS
    }

    /// The memoized claims of `token`, if any (a reference to the template:
    /// copy it before handing it out).
    pub(crate) fn get(&self, py: Python<'_>, token: &Arc<VerifiedToken>) -> Option<(Py<PyDict>, bool)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get(Self::index(token)) {
            Some(Some((weak, dict, nested))) if std::ptr::eq(weak.as_ptr(), Arc::as_ptr(token)) => {
                Some((dict.clone_ref(py), *nested))
            }
            _ => None,
        }
    }

    /// Remember `dict` as the claims of `token`.
    pub(crate) fn put(&self, token: &Arc<VerifiedToken>, dict: Py<PyDict>) {
        let nested = token.claims.values().any(|v| v.is_array() || v.is_object());
        let old = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if slots.is_empty() {
                slots.resize_with(SLOTS, || None);
            }
            slots[Self::index(token)].replace((Arc::downgrade(token), dict, nested))
        };
        drop(old); // outside the lock: a decref may free Python objects
    }

    /// Forget everything (the caller holds the GIL).
    pub(crate) fn clear(&self) {
        let old = std::mem::take(&mut *self.slots.lock().unwrap_or_else(|p| p.into_inner()));
        drop(old);
    }
}
