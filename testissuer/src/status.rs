//! Token Status Lists (draft-ietf-oauth-status-list) published by the test
//! issuer: one per path, each a Status List Token (`typ: statuslist+jwt`)
//! signed with one of the issuer's keys, with its own `ttl`, cache headers,
//! ETag and fault, and statuses the test flips at runtime.

use std::io::Write;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::fault::Fault;

/// How one published list is served. Change it with
/// [`crate::TestIssuer::configure_status_list`]; every change re-signs the
/// token on the next request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusListOptions {
    /// The `ttl` claim (seconds); `None` leaves it out.
    pub ttl: Option<u64>,
    /// The `exp` claim (seconds since the epoch); `None` leaves it out.
    pub exp: Option<u64>,
    /// The `iat` claim; `None` is the time the token is signed.
    pub iat: Option<u64>,
    /// The `sub` claim; `None` is the list's own URI.
    pub sub: Option<String>,
    /// The `iss` claim; `None` is the issuer's URL.
    pub iss: Option<String>,
    /// The key that signs it; `None` is the first published key.
    pub kid: Option<String>,
    /// The header `typ`.
    pub typ: String,
    /// `Cache-Control` of the response.
    pub cache_control: Option<String>,
    /// Send `ETag` and answer a matching `If-None-Match` with `304`.
    pub etag: bool,
    /// A fault applied to this list's responses.
    pub fault: Fault,
    /// Serve exactly this body instead of the signed list.
    pub body_override: Option<String>,
    /// Serve exactly this `lst` instead of the statuses (e.g. a zlib bomb).
    pub lst_override: Option<String>,
}

impl Default for StatusListOptions {
    fn default() -> Self {
        StatusListOptions {
            ttl: None,
            exp: None,
            iat: None,
            sub: None,
            iss: None,
            kid: None,
            typ: "statuslist+jwt".into(),
            cache_control: None,
            etag: false,
            fault: Fault::None,
            body_override: None,
            lst_override: None,
        }
    }
}

/// One published list.
pub(crate) struct Published {
    pub(crate) bits: u8,
    pub(crate) statuses: Vec<u8>,
    pub(crate) options: StatusListOptions,
    /// The signed token, until something changes.
    pub(crate) signed: Option<String>,
}

impl Published {
    pub(crate) fn new(bits: u8, len: usize) -> Published {
        assert!([1, 2, 4, 8].contains(&bits), "testissuer: bits must be 1, 2, 4 or 8");
        Published {
            bits,
            statuses: vec![0; len],
            options: StatusListOptions::default(),
            signed: None,
        }
    }

    /// The payload's `status_list` object.
    pub(crate) fn status_list(&self) -> Value {
        let lst = match &self.options.lst_override {
            Some(l) => l.clone(),
            None => encode_lst(self.bits, &self.statuses),
        };
        json!({ "bits": self.bits, "lst": lst })
    }
}

/// Pack `statuses` at `bits` each, least significant bits first
/// (draft §4.1), ZLIB-compress and base64url-encode them.
pub fn encode_lst(bits: u8, statuses: &[u8]) -> String {
    let per_byte = 8 / usize::from(bits);
    let mut bytes = vec![0u8; statuses.len().div_ceil(per_byte)];
    for (i, s) in statuses.iter().enumerate() {
        let bit = i * usize::from(bits);
        bytes[bit / 8] |= (s & ((1u16 << bits) - 1) as u8) << (bit % 8);
    }
    zlib_b64(&bytes)
}

/// ZLIB-compress and base64url-encode `bytes` (a zlib bomb is a large run
/// of zeros through this).
pub fn zlib_b64(bytes: &[u8]) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(bytes).expect("writing to a Vec");
    URL_SAFE_NO_PAD.encode(z.finish().expect("writing to a Vec"))
}
