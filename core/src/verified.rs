//! What a successful verification returns.

use std::any::Any;
use std::ffi::{CStr, CString};
use std::sync::{Arc, OnceLock};

use once_cell::race::OnceBox;

use serde_json::{Map, Value};

use crate::entry::{EntryState, Marks};
use crate::facts::Facts;
use crate::token::Alg;

/// The verified facts about a token. Shared between cache hits of the same
/// token, so cloning a [`Verified`] is cheap.
///
/// Compact while cached: the token itself (its payload *is* the claims), the
/// few facts a cache hit re-checks, and the cache's bookkeeping, in one
/// allocation besides the token's and the facts' bytes. The claims are
/// decoded into a map only when a caller first asks for them.
pub struct VerifiedToken {
    /// The token as verified.
    token: Box<[u8]>,
    /// The claims map and converted forms, built on first use and shared by
    /// every cache hit of this result (hits return this same `Arc`), so a
    /// front end converts a hot token's claims once, not once per hit.
    lazy: OnceBox<Lazy>,
    /// The configured issuer the token was verified for.
    pub issuer: Arc<str>,
    /// The `kid` of the key that verified it: the token's, or for a
    /// tenant's token without one, the key's own `kid` if it has one (so a
    /// cache hit sees a kid revocation). The key's own string, shared, not
    /// a copy per result.
    pub kid: Option<Arc<str>>,
    /// The signature algorithm.
    pub alg: Alg,
    /// When the signature was checked, ms since the epoch. For a cache hit,
    /// this is the time of the original verification.
    pub verified_at_ms: u64,
    /// When this process first saw the verifying key in its issuer's set
    /// ([`crate::Key::first_seen_ms`]), ms since the epoch; `None`
    /// for a local HMAC secret. The key's age at verification is
    /// `verified_at_ms - key_first_seen_ms`.
    pub key_first_seen_ms: Option<u64>,
    /// The token's `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// What a cache hit re-checks against revocations.
    pub(crate) facts: Facts,
    /// The cache's bookkeeping while this result is cached.
    pub(crate) entry: EntryState,
    /// The cache's marks (fresh ones on every copy).
    pub(crate) marks: Marks,
}

/// What a [`VerifiedToken`] builds on first use.
#[derive(Clone)]
struct Lazy {
    /// The verified claims.
    claims: Map<String, Value>,
    /// The claims as compact JSON, NUL-terminated (C borrows it as is).
    claims_json: OnceLock<CString>,
    /// Front ends' own converted forms (C strings, a Python mapping, the
    /// HTTP decision's claim headers), one type per slot, first come first
    /// served. Several slots because one process can use two forms of the
    /// same result: the C ABI's HTTP decision stores its claim headers and
    /// then hands the same result to the caller, who reads C strings.
    front_ends: [OnceLock<Arc<dyn Any + Send + Sync>>; FRONT_END_SLOTS],
}

/// How many converted forms one result keeps. A process uses one or two
/// (a binding's form and the HTTP decision's); a type beyond these is built
/// per call (`memo`) or not at all (`memo_ref`), never taken from another.
const FRONT_END_SLOTS: usize = 3;

/// What the verifier knows about a token it just verified.
pub(crate) struct Fresh<'a> {
    pub token: &'a [u8],
    pub issuer: Arc<str>,
    pub kid: Option<Arc<str>>,
    pub alg: Alg,
    pub verified_at_ms: u64,
    pub key_first_seen_ms: Option<u64>,
    pub expires_at: u64,
}

impl Clone for VerifiedToken {
    fn clone(&self) -> VerifiedToken {
        VerifiedToken {
            token: self.token.clone(),
            lazy: once(self.lazy.get().cloned()),
            issuer: self.issuer.clone(),
            kid: self.kid.clone(),
            alg: self.alg,
            verified_at_ms: self.verified_at_ms,
            key_first_seen_ms: self.key_first_seen_ms,
            expires_at: self.expires_at,
            facts: self.facts.clone(),
            entry: self.entry.clone(),
            marks: Marks::default(),
        }
    }
}

impl std::fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("verified_at_ms", &self.verified_at_ms)
            .field("expires_at", &self.expires_at)
            .field("claims", self.claims())
            .finish()
    }
}

impl VerifiedToken {
    /// A compact result for `fresh` with its hit-time `facts` and the cache
    /// bookkeeping `entry` (the claims are decoded from the token when a
    /// caller first asks for them).
    pub(crate) fn new(fresh: Fresh<'_>, facts: Facts, entry: EntryState) -> VerifiedToken {
        VerifiedToken {
            token: fresh.token.into(),
            lazy: OnceBox::new(),
            issuer: fresh.issuer,
            kid: fresh.kid,
            alg: fresh.alg,
            verified_at_ms: fresh.verified_at_ms,
            key_first_seen_ms: fresh.key_first_seen_ms,
            expires_at: fresh.expires_at,
            facts,
            entry,
            marks: Marks::default(),
        }
    }

    /// A copy holding `claims`, already decoded (what the verifying caller
    /// gets, while the cache keeps the compact original).
    pub(crate) fn with_claims(&self, claims: Map<String, Value>) -> VerifiedToken {
        let lazy = OnceBox::new();
        let _ = lazy.set(Box::new(Lazy::new(claims)));
        VerifiedToken { lazy, ..self.clone() }
    }

    /// The token, byte for byte as verified.
    pub(crate) fn token_bytes(&self) -> &[u8] {
        &self.token
    }

    fn lazy(&self) -> &Lazy {
        // Two threads may race to decode; one result is kept, the same either
        // way.
        self.lazy.get_or_init(|| {
            // The token passed `token::parse` when it was verified; the same
            // bytes decode the same way.
            let claims = crate::token::payload_claims(&self.token).expect("a verified token's payload decodes");
            Box::new(Lazy::new(claims))
        })
    }

    /// The token's claims (the payload), verified. Decoded on first use and
    /// shared by every cache hit of this result.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.lazy().claims
    }

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
        let lazy = self.lazy();
        lazy.claims_json.get_or_init(|| {
            let json = serde_json::to_vec(&lazy.claims).expect("a JSON map serializes");
            // JSON text never holds a raw NUL: control characters are escaped.
            CString::new(json).expect("JSON has no NUL byte")
        })
    }

    /// A front end's converted form of this result, built by `init` on first
    /// use and shared by every later hit. Each type has its own slot (a few
    /// per result); a caller whose type finds every slot taken by others
    /// gets a fresh, unshared value (never someone else's).
    pub fn memo<T: Any + Send + Sync>(&self, init: impl FnOnce(&VerifiedToken) -> T) -> Arc<T> {
        let mut init = Some(init);
        match self.memo_slot::<T>(&mut init) {
            Some(stored) => stored.clone().downcast::<T>().expect("the slot holds a T"),
            None => Arc::new(init.take().expect("not called: every slot was taken")(self)),
        }
    }

    /// Like [`memo`](Self::memo), borrowed: the stored value, built by
    /// `init` on first use, or `None` if every slot holds another type
    /// (other front ends' forms). No reference count is touched, so a front
    /// end can hand out pointers into it for as long as it holds the token.
    pub fn memo_ref<T: Any + Send + Sync>(&self, init: impl FnOnce(&VerifiedToken) -> T) -> Option<&T> {
        let mut init = Some(init);
        self.memo_slot::<T>(&mut init)
            .map(|stored| (**stored).downcast_ref::<T>().expect("the slot holds a T"))
    }

    /// The slot holding a `T`, filling the first free one with `init` if no
    /// slot holds one yet. Two threads racing for a free slot with different
    /// types: the loser (its `init` still unused) moves on to the next slot.
    fn memo_slot<T: Any + Send + Sync>(
        &self,
        init: &mut Option<impl FnOnce(&VerifiedToken) -> T>,
    ) -> Option<&Arc<dyn Any + Send + Sync>> {
        for slot in &self.lazy().front_ends {
            let stored = match slot.get() {
                Some(stored) => stored,
                None => slot.get_or_init(|| {
                    let init = init.take().expect("called at most once");
                    Arc::new(init(self)) as Arc<dyn Any + Send + Sync>
                }),
            };
            if (**stored).is::<T>() {
                return Some(stored);
            }
            debug_assert!(init.is_some(), "a slot this call filled holds a T");
        }
        None
    }
}

/// A lazy slot already holding `value`, if any.
fn once(value: Option<Lazy>) -> OnceBox<Lazy> {
    let slot = OnceBox::new();
    if let Some(v) = value {
        let _ = slot.set(Box::new(v));
    }
    slot
}

impl Lazy {
    fn new(claims: Map<String, Value>) -> Lazy {
        Lazy {
            claims,
            claims_json: OnceLock::new(),
            front_ends: Default::default(),
        }
    }
}

/// How a [`Verified`] holds its result.
pub(crate) enum Held {
    /// Its own reference: a fresh result, or a thread's private copy from
    /// the cache's front.
    Owned(Arc<VerifiedToken>),
    /// A cache shard's result, borrowed through `arc-swap`'s per-thread debt
    /// slot instead of a reference count: a shard hit writes nothing other
    /// cores read, so threads hitting the same results in turn do not bounce
    /// the result's count between them. The borrow keeps the result alive
    /// as an `Arc` would (a writer replacing the slot pays the debt with a
    /// real count). Each thread has a few such slots; past them `arc-swap`
    /// takes a real count, so holding many results costs speed, never
    /// safety. Always `Some` (a hit).
    Borrowed(arc_swap::Guard<Option<Arc<VerifiedToken>>>),
}

impl Held {
    #[inline]
    pub(crate) fn arc(&self) -> &Arc<VerifiedToken> {
        match self {
            Held::Owned(t) => t,
            Held::Borrowed(g) => match &**g {
                Some(t) => t,
                None => unreachable!("a borrowed hit holds a result"),
            },
        }
    }
}

impl std::ops::Deref for Held {
    type Target = VerifiedToken;

    #[inline]
    fn deref(&self) -> &VerifiedToken {
        self.arc()
    }
}

/// A successful verification: the verified token and where it came from.
///
/// A cache hit borrows the cached result rather than counting a reference
/// to it (see the cache's module notes); a `Verified` is meant to be used
/// and dropped while handling one request. To keep a result longer, keep
/// [`Verified::token`]'s `Arc` (a clone) or [`Verified::into_parts`].
pub struct Verified {
    token: Held,
    cached: bool,
}

impl Clone for Verified {
    /// A clone holds its own reference.
    fn clone(&self) -> Verified {
        Verified {
            token: Held::Owned(self.token.arc().clone()),
            cached: self.cached,
        }
    }
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("token", self.token.arc())
            .field("cached", &self.cached)
            .finish()
    }
}

impl Verified {
    pub(crate) fn new(token: Held, cached: bool) -> Verified {
        Verified { token, cached }
    }

    /// The verified claims.
    #[inline]
    pub fn claims(&self) -> &Map<String, Value> {
        self.token.claims()
    }

    /// The issuer the token was verified for.
    #[inline]
    pub fn issuer(&self) -> &str {
        &self.token.issuer
    }

    /// The `kid` of the verifying key, if any.
    #[inline]
    pub fn kid(&self) -> Option<&str> {
        self.token.kid.as_deref()
    }

    /// The signature algorithm.
    #[inline]
    pub fn alg(&self) -> Alg {
        self.token.alg
    }

    /// True if this result was served from the cache (trust reused), false if
    /// the signature was checked during this call (trust fresh).
    #[inline]
    pub fn cached(&self) -> bool {
        self.cached
    }

    /// When the signature was checked, ms since the epoch.
    #[inline]
    pub fn verified_at_ms(&self) -> u64 {
        self.token.verified_at_ms
    }

    /// The token's `exp`, seconds since the epoch.
    #[inline]
    pub fn expires_at(&self) -> u64 {
        self.token.expires_at
    }

    /// The shared verified token.
    #[inline]
    pub fn token(&self) -> &Arc<VerifiedToken> {
        self.token.arc()
    }

    /// The shared verified token and whether it came from the cache, taken
    /// apart (what the C ABI hands out as one pointer).
    #[inline]
    pub fn into_parts(self) -> (Arc<VerifiedToken>, bool) {
        let token = match self.token {
            Held::Owned(t) => t,
            Held::Borrowed(g) => arc_swap::Guard::into_inner(g).expect("a borrowed hit holds a result"),
        };
        (token, self.cached)
    }

    /// The claims as compact JSON, serialized once per result and shared by
    /// its cache hits.
    #[inline]
    pub fn claims_json(&self) -> &str {
        self.token.claims_json()
    }
}
