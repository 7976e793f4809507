//! What a cached result is counted as against `cache.max_bytes`.

use serde_json::{Map, Value};

use crate::verified::VerifiedToken;

/// Per-entry bytes not proportional to the token or its claims: the
/// `VerifiedToken` with the cache's bookkeeping and its `Arc` header, its
/// share of the table slots and the CLOCK queue, allocator rounding.
/// Calibrated with `cargo bench -p jwtwarden-benches --bench memory`, which
/// prints the estimate next to the measured heap growth.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 256;

/// Bytes per JSON object member besides its key's and value's own heap: the
/// key `String` and the `Value` inline in the map's node, and a share of the
/// node's unused slots and allocator rounding.
const MEMBER_BYTES: usize = std::mem::size_of::<String>() + std::mem::size_of::<Value>() + 16;

/// Estimated heap bytes of a cached result whose verified claims are
/// `claims`. An estimate, not an accounting: it only has to be
/// proportional enough that `max_bytes` bounds memory. It counts the claims
/// map as if decoded (a cached result decodes it when a caller first asks),
/// so the bound holds however the results are used; it walks the claims
/// once at insert, never on a hit.
pub(crate) fn entry_bytes(e: &VerifiedToken, claims: &Map<String, Value>) -> usize {
    ENTRY_OVERHEAD_BYTES + e.token_bytes().len() + e.facts.heap_bytes() + map_bytes(claims)
}

fn map_bytes(m: &Map<String, Value>) -> usize {
    m.iter().map(|(k, v)| MEMBER_BYTES + k.len() + value_bytes(v)).sum()
}

/// What a JSON value owns on the heap (its inline size is counted by the
/// object member or array slot holding it).
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items
            .iter()
            .map(|v| std::mem::size_of::<Value>() + value_bytes(v))
            .sum(),
        Value::Object(m) => map_bytes(m),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}
