//! The door every trust change passes: a lock, and the proof of holding it
//! ([`Inside`]) that writers of trust state demand. It sits below the trust
//! state so the stores behind the door (keys, revocation lists, status
//! lists) can demand the proof without naming [`Trust`](crate::trust::Trust);
//! see `trust.rs` for what passes it.

use std::sync::{Mutex, MutexGuard};

/// The lock every trust change takes.
#[derive(Default)]
pub(crate) struct Door(Mutex<()>);

/// Proof that the caller holds the door; writers of trust state take one.
pub(crate) struct Inside<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl Door {
    /// Wait for the door and hold it until the returned proof is dropped.
    pub(crate) fn enter(&self) -> Inside<'_> {
        Inside(self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
