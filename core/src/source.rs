//! Where an issuer's keys come from: decided once from its configuration
//! (exactly one source, checked by `Config::validate`), then matched on by
//! the issuer, the refresher and key descriptions alike.

use std::path::PathBuf;

use crate::config::IssuerConfig;

/// An issuer's key source.
pub(crate) enum KeySource {
    /// A JWKS fetched over HTTP(S) from a configured URL.
    Url(String),
    /// A JWKS fetched from the `jwks_uri` of the issuer's OIDC discovery
    /// document.
    Discovery,
    /// A static JWKS from the configuration (air-gapped use); never refreshed.
    Inline(Vec<u8>),
    /// A static JWKS file, reloaded when it changes.
    File(PathBuf),
    /// Only locally configured HMAC secrets; nothing to load.
    LocalOnly,
}

impl KeySource {
    /// The source `cfg` names.
    pub(crate) fn from_config(cfg: &IssuerConfig) -> KeySource {
        if let Some(uri) = &cfg.jwks_uri {
            KeySource::Url(uri.clone())
        } else if cfg.discovery {
            KeySource::Discovery
        } else if let Some(jwks) = &cfg.jwks {
            KeySource::Inline(serde_json::to_vec(jwks).expect("a JSON value serializes"))
        } else if let Some(path) = &cfg.jwks_file {
            KeySource::File(path.clone())
        } else {
            KeySource::LocalOnly
        }
    }

    /// Whether keys are fetched over the network (and so can go stale).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, KeySource::Url(_) | KeySource::Discovery)
    }
}
