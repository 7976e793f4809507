//! What a successful verification returns.

use std::any::Any;
use std::ffi::{CStr, CString};
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::token::Alg;

/// The verified facts about a token. Shared between cache hits of the same
/// token, so cloning a [`Verified`] is cheap.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    /// The token's claims (the payload), verified.
    pub claims: Map<String, Value>,
    /// The configured issuer the token was verified for.
    pub issuer: Arc<str>,
    /// The `kid` of the key that verified it, if the token had one.
    pub kid: Option<String>,
    /// The signature algorithm.
    pub alg: Alg,
    /// When the signature was checked, ms since the epoch. For a cache hit,
    /// this is the time of the original verification.
    pub verified_at_ms: u64,
    /// The token's `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// Converted forms of this result, built on first use and shared by
    /// every cache hit of it (hits return this same `Arc`), so a front end
    /// converts a hot token's claims once, not once per hit.
    pub(crate) memo: Memo,
}

/// Write-once slots for converted forms of a [`VerifiedToken`].
#[derive(Clone, Default)]
pub(crate) struct Memo {
    /// The claims as compact JSON, NUL-terminated (C borrows it as is).
    claims_json: OnceLock<CString>,
    /// One front end's own converted form (C strings, a Python mapping).
    front_end: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

impl VerifiedToken {
    /// The claims as compact JSON, serialized once per result.
    pub fn claims_json(&self) -> &str {
        // JSON text is UTF-8 by construction.
        std::str::from_utf8(self.claims_json_cstring().as_bytes()).expect("JSON is UTF-8")
    }

    /// The claims as compact JSON, NUL-terminated, serialized once per result.
    pub fn claims_json_c(&self) -> &CStr {
        self.claims_json_cstring()
    }

    /// The length in bytes of [`claims_json`](Self::claims_json) (without
    /// the NUL), known without scanning for the NUL.
    pub fn claims_json_len(&self) -> usize {
        self.claims_json_cstring().as_bytes().len()
    }

    fn claims_json_cstring(&self) -> &CString {
        self.memo.claims_json.get_or_init(|| {
            let json = serde_json::to_vec(&self.claims).expect("a JSON map serializes");
            // JSON text never holds a raw NUL: control characters are escaped.
            CString::new(json).expect("JSON has no NUL byte")
        })
    }

    /// A front end's converted form of this result, built by `init` on first
    /// use and shared by every later hit. One type per result: a caller
    /// asking for another type than the one stored gets a fresh, unshared
    /// value (never someone else's).
    pub fn memo<T: Any + Send + Sync>(&self, init: impl FnOnce(&VerifiedToken) -> T) -> Arc<T> {
        let mut init = Some(init);
        let stored = self.memo.front_end.get_or_init(|| {
            let init = init.take().expect("called once");
            Arc::new(init(self)) as Arc<dyn Any + Send + Sync>
        });
        match stored.clone().downcast::<T>() {
            Ok(value) => value,
            Err(_) => {
                let init = init.take().expect("not called: the slot was already set");
                Arc::new(init(self))
            }
        }
    }
}

impl VerifiedToken {
    /// Like [`memo`](Self::memo), borrowed: the stored value, built by
    /// `init` on first use, or `None` if the slot holds another type (another
    /// front end's form). No reference count is touched, so a front end can
    /// hand out pointers into it for as long as it holds the token.
    pub fn memo_ref<T: Any + Send + Sync>(&self, init: impl FnOnce(&VerifiedToken) -> T) -> Option<&T> {
        let stored = self
            .memo
            .front_end
            .get_or_init(|| Arc::new(init(self)) as Arc<dyn Any + Send + Sync>);
        (**stored).downcast_ref::<T>()
    }
}

/// A successful verification: the verified token and where it came from.
#[derive(Clone, Debug)]
pub struct Verified {
    token: Arc<VerifiedToken>,
    cached: bool,
}

impl Verified {
    pub(crate) fn new(token: Arc<VerifiedToken>, cached: bool) -> Verified {
        Verified { token, cached }
    }

    /// The verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.token.claims
    }

    /// The issuer the token was verified for.
    pub fn issuer(&self) -> &str {
        &self.token.issuer
    }

    /// The `kid` of the verifying key, if any.
    pub fn kid(&self) -> Option<&str> {
        self.token.kid.as_deref()
    }

    /// The signature algorithm.
    pub fn alg(&self) -> Alg {
        self.token.alg
    }

    /// True if this result was served from the cache (trust reused), false if
    /// the signature was checked during this call (trust fresh).
    pub fn cached(&self) -> bool {
        self.cached
    }

    /// When the signature was checked, ms since the epoch.
    pub fn verified_at_ms(&self) -> u64 {
        self.token.verified_at_ms
    }

    /// The token's `exp`, seconds since the epoch.
    pub fn expires_at(&self) -> u64 {
        self.token.expires_at
    }

    /// The shared verified token.
    pub fn token(&self) -> &Arc<VerifiedToken> {
        &self.token
    }

    /// The shared verified token and whether it came from the cache, taken
    /// apart (what the C ABI hands out as one pointer).
    pub fn into_parts(self) -> (Arc<VerifiedToken>, bool) {
        (self.token, self.cached)
    }

    /// The claims as compact JSON, serialized once per result and shared by
    /// its cache hits.
    pub fn claims_json(&self) -> &str {
        self.token.claims_json()
    }
}
