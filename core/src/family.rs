//! Issuer families: the members (tenants) of one issuer template,
//! materialised on their first token.
//!
//! * A member is an ordinary [`Issuer`] built from an [`IssuerConfig`] the
//!   template fills in (the same type a runtime `add_issuer` will take), so
//!   it has its own keys, fetch gate, cooldowns, health and unknown-kid
//!   memory. With a shared `jwks_uri` (Entra ID style) the members share one
//!   key holder, fetched once; each still has its own claim policy (its own
//!   `iss`).
//! * Members are held in a bounded map, least recently verified first out,
//!   with a second chance for members whose cached results were served
//!   since they last came up for eviction (a "used" bit, set by a cache
//!   hit only when clear: a tenant served from the cache is not idle); an
//!   evicted member's keys go with it, and results cached for it are no
//!   longer current (their stamp names a member id that is never reused).
//! * A cache hit finds its member without a lock, a map lookup or an
//!   `ArcSwap` load: the ids of held members sit in a flat table of
//!   atomics (`Live`) indexed by the id's low bits; finding the id there
//!   means the member is held. An id not found there (displaced, or the
//!   table full) is looked up in the members-by-id map, which decides.
//! * A new member costs one token of a bucket of
//!   `new_tenant_fetches_per_minute`, refilled on the injected clock; a
//!   member whose first fetch failed is forgotten and refused
//!   (`tenant_unavailable`) for [`FAILED_TENANT_MS`]. Both refusals, and the
//!   pattern and allowlist ones, happen before any fetch.
//! * Concurrent first tokens of one member find the same entry (made under
//!   the map's lock, without fetching) and share its single fetch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use lru::LruCache;
use parking_lot::Mutex;

use crate::claims::ClaimPolicy;
use crate::config::{IssuerConfig, IssuerTemplateConfig, StatusListConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::issuer::{Env, Issuer};
use crate::keystore::HitSlot;
use crate::template::{Keys, Refusal, Template, TemplateStats};

/// Members' stamp ids start here, above every configured issuer's index
/// (stamps hold 32 bits), and are not reused before 2^31 further members
/// were materialised: long after any result cached for an evicted member
/// (`cache.max_ttl_secs`) is gone.
pub(crate) const FIRST_MEMBER_ID: usize = 1 << 31;

/// How long a member whose discovery or first key fetch failed is refused
/// without a fetch (`tenant_unavailable`): one minute.
pub(crate) const FAILED_TENANT_MS: u64 = 60_000;

/// Members whose failure is remembered at most, per template.
const MAX_FAILED_REMEMBERED: usize = 10_000;

/// Positions of the `Live` table probed for one id, from its home.
const PROBES: usize = 4;

/// The `Live` table's size bounds (entries, powers of two).
const LIVE_MIN: usize = 64;
const LIVE_MAX: usize = 1 << 20;

/// The members held, for the cache-hit path: one [`HitSlot`] per
/// position, its `held` word `id << 1 | used` (0 when free). An id is
/// written only while its member is held (after the member is in `by_id`;
/// taken out before it leaves `by_id`), so finding it proves the member is
/// held; not finding it proves nothing (the caller asks `by_id`). With keys
/// per member, the slot also holds the copy of the member's key epoch and
/// fail-closed time that its key store keeps there (written before the id
/// is published, `KeyStore::mirror_into`): a hit reads one slot and
/// nothing of the member itself. Those two are read between two reads of
/// the id word; an id that changed meanwhile (the member evicted, another
/// put there) sends the hit to `by_id`, and ids are never reused, so the
/// words read belong to the member whose id was read twice. Sized twice
/// `max_tenants` (bounded), so an id almost always sits at its home
/// position.
struct Live {
    slots: Arc<[HitSlot]>,
    mask: usize,
}

impl Live {
    fn new(max_tenants: usize) -> Live {
        let n = max_tenants
            .saturating_mul(2)
            .next_power_of_two()
            .clamp(LIVE_MIN, LIVE_MAX);
        Live {
            slots: (0..n).map(|_| HitSlot::default()).collect(),
            mask: n - 1,
        }
    }

    /// The position of `id`, if held there.
    #[inline]
    fn find(&self, id: usize) -> Option<usize> {
        let want = (id as u64) << 1;
        for probe in 0..PROBES {
            let at = id.wrapping_add(probe) & self.mask;
            let v = self.slots[at].held.load(Ordering::Relaxed);
            if v & !1 == want {
                return Some(at);
            }
            if v >> 1 == 0 {
                return None;
            }
        }
        None
    }

    /// Where `id` is held, marked used (a write only when the bit is
    /// clear, so steady hits write nothing shared).
    #[inline]
    fn hit(&self, id: usize) -> Option<usize> {
        let want = (id as u64) << 1;
        for probe in 0..PROBES {
            let at = id.wrapping_add(probe) & self.mask;
            let slot = &self.slots[at].held;
            let v = slot.load(Ordering::Acquire);
            if v & !1 == want {
                if v & 1 == 0 {
                    // Lost to a concurrent change of the slot: that change
                    // decides, and nothing else is written.
                    let _ = slot.compare_exchange(v, v | 1, Ordering::Relaxed, Ordering::Relaxed);
                }
                return Some(at);
            }
            if v >> 1 == 0 {
                return None;
            }
        }
        None
    }

    /// For a hit of `id` found at `at` (keys per member): whether results
    /// stamped `key_epoch` are current at `now_ms`, from the slot's copy;
    /// `None` if the slot no longer holds `id` (the caller asks `by_id`).
    #[inline]
    fn keys_current(&self, at: usize, id: usize, key_epoch: u64, now_ms: u64) -> Option<bool> {
        let slot = &self.slots[at];
        let current =
            slot.epoch.load(Ordering::Acquire) == key_epoch && now_ms < slot.fail_closed_at_ms.load(Ordering::Acquire);
        (slot.held.load(Ordering::Acquire) >> 1 == id as u64).then_some(current)
    }

    /// A free position for `id`, if any of its positions is (under the
    /// family's lock).
    fn free_for(&self, id: usize) -> Option<usize> {
        (0..PROBES)
            .map(|probe| id.wrapping_add(probe) & self.mask)
            .find(|&at| self.slots[at].held.load(Ordering::Relaxed) >> 1 == 0)
    }

    /// Put `id` in (under the family's lock), with `own` keys' epoch and
    /// fail-closed time copied beside it from now on; nothing when its
    /// positions are taken (its hits then take the `by_id` path).
    fn insert(&self, id: usize, own: Option<&Issuer>) {
        let Some(at) = self.free_for(id) else {
            return;
        };
        let held = (id as u64) << 1;
        match own {
            Some(keys) => keys.keystore().mirror_into(&self.slots, at, held),
            None => self.slots[at].held.store(held, Ordering::Release),
        }
    }

    /// Take `id` out (under the family's lock), its key store no longer
    /// copying into the table.
    fn remove(&self, id: usize, own: Option<&Issuer>) {
        if let Some(own) = own {
            own.keystore().unmirror();
        } else if let Some(at) = self.find(id) {
            self.slots[at].held.store(0, Ordering::Release);
        }
    }

    /// Read and clear `id`'s used bit (under the family's lock).
    fn take_used(&self, id: usize) -> bool {
        self.find(id)
            .is_some_and(|at| self.slots[at].held.fetch_and(!1, Ordering::AcqRel) & 1 == 1)
    }
}

type ById = HashMap<usize, Arc<Member>, foldhash::fast::RandomState>;

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// One materialised member of a family.
pub(crate) struct Member {
    /// The id cached results are stamped with.
    pub id: usize,
    /// The member's issuer (the token's `iss`).
    pub name: Arc<str>,
    /// The tenant the issuer names.
    pub tenant: Arc<str>,
    /// The claim checks, for this member's `iss`.
    pub policy: MemberPolicy,
    /// Who holds the keys: the member's own issuer, or the family's shared one.
    pub keys: Arc<Issuer>,
    /// Whether `keys` is the member's own (so its failure is the member's).
    own_keys: bool,
    /// The member's Token Status Lists, made on its first token with a
    /// `status` claim (the template's `status_list` with `{tenant}` put
    /// in); never shared with another member.
    pub status: std::sync::OnceLock<Arc<crate::status::Store>>,
    /// Served from the cache since it last came up for eviction, when its
    /// id is not in the `Live` table.
    used: AtomicBool,
}

impl Member {
    /// The member's own key holder, if it has one (not the family's
    /// shared one).
    fn own(&self) -> Option<&Issuer> {
        self.own_keys.then_some(&*self.keys)
    }
}

/// A member's claim checks: its own key holder's (an issuer built from the
/// member's own entry, so the same checks: held once, not twice), or, with
/// shared keys, its own.
pub(crate) enum MemberPolicy {
    Own(Box<ClaimPolicy>),
    OfKeys(Arc<Issuer>),
}

impl std::ops::Deref for MemberPolicy {
    type Target = ClaimPolicy;

    fn deref(&self) -> &ClaimPolicy {
        match self {
            MemberPolicy::Own(p) => p,
            MemberPolicy::OfKeys(issuer) => &issuer.policy,
        }
    }
}

#[derive(Default)]
struct Counters {
    materialised: AtomicU64,
    evicted: AtomicU64,
    refused_budget: AtomicU64,
    refused_pattern: AtomicU64,
    refused_allowlist: AtomicU64,
    refused_unavailable: AtomicU64,
}

struct State {
    /// Members by tenant, least recently verified last.
    members: LruCache<Arc<str>, Arc<Member>>,
    /// Tenants whose first fetch failed, and until when they are refused.
    failed: LruCache<Box<str>, u64>,
    /// Tokens in the new-member bucket, and when it was last refilled.
    tokens: f64,
    refilled_ms: u64,
}

/// One issuer template and its members.
pub(crate) struct Family {
    pub template: Template,
    cfg: IssuerTemplateConfig,
    /// The one key holder of a shared `jwks_uri`.
    shared_keys: Option<Arc<Issuer>>,
    state: Mutex<State>,
    /// Members by id, for cache hits: read without any lock; replaced
    /// whole (copy on write) under the `state` lock, at most at the rate
    /// new members are allowed in.
    by_id: ArcSwap<ById>,
    /// The ids of the members held, for cache hits.
    live: Live,
    counters: Counters,
    /// The one client the members' status lists are fetched with, made on
    /// the first member's first list.
    pub status_client: std::sync::OnceLock<crate::fetch::HttpClient>,
}

impl Family {
    /// The family of `cfg` (validated), with no member yet.
    pub(crate) fn new(cfg: &IssuerTemplateConfig, allow_http: bool) -> Result<Family> {
        let template = Template::new(&cfg.spec(), allow_http)?;
        let shared_keys = match &template.keys {
            Keys::Shared(_) => Some(Arc::new(Issuer::new(member_config(cfg, &template, None))?)),
            _ => None,
        };
        Ok(Family {
            template,
            cfg: cfg.clone(),
            shared_keys,
            state: Mutex::new(State {
                members: LruCache::unbounded(),
                failed: LruCache::unbounded(),
                tokens: f64::from(cfg.new_tenant_fetches_per_minute),
                refilled_ms: 0,
            }),
            by_id: ArcSwap::from_pointee(ById::default()),
            live: Live::new(cfg.max_tenants),
            counters: Counters::default(),
            status_client: std::sync::OnceLock::new(),
        })
    }

    /// The member `iss` names, materialised if new. `None`: `iss` is not of
    /// this family at all. Never fetches.
    pub(crate) fn member(&self, iss: &str, now: u64) -> Option<Result<Arc<Member>>> {
        let tenant = match self.template.tenant_of(iss)? {
            Ok(t) => t,
            Err(Refusal::Pattern) => {
                self.counters.refused_pattern.fetch_add(1, Ordering::Relaxed);
                return Some(Err(Error::new(
                    ErrorKind::UnknownIssuer,
                    format!(
                        "issuer {:?} fits template {} but its tenant does not match tenant_pattern",
                        crate::token::truncate(iss),
                        self.template.name()
                    ),
                )));
            }
            Err(Refusal::NotAllowed) => {
                self.counters.refused_allowlist.fetch_add(1, Ordering::Relaxed);
                return Some(Err(Error::new(
                    ErrorKind::TenantNotAllowed,
                    format!(
                        "issuer {:?}: its tenant is not in the tenants allowlist of template {}",
                        crate::token::truncate(iss),
                        self.template.name()
                    ),
                )));
            }
        };
        Some(self.materialise(tenant, now))
    }

    fn materialise(&self, tenant: &str, now: u64) -> Result<Arc<Member>> {
        let mut st = self.state.lock();
        if let Some(m) = st.members.get(tenant) {
            return Ok(m.clone());
        }
        if let Some(&until) = st.failed.peek(tenant) {
            if now < until {
                self.counters.refused_unavailable.fetch_add(1, Ordering::Relaxed);
                return Err(Error::new(
                    ErrorKind::TenantUnavailable,
                    format!(
                        "tenant {:?} of template {}: its keys could not be fetched recently; \
                         not asking again before {until} ms",
                        crate::token::truncate(tenant),
                        self.template.name()
                    ),
                ));
            }
            st.failed.pop(tenant);
        }
        if !take_token(&mut st, now, self.cfg.new_tenant_fetches_per_minute) {
            self.counters.refused_budget.fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(
                ErrorKind::TenantBudgetExhausted,
                format!(
                    "template {}: new_tenant_fetches_per_minute ({}) spent; tenant {:?} refused without a fetch",
                    self.template.name(),
                    self.cfg.new_tenant_fetches_per_minute,
                    crate::token::truncate(tenant)
                ),
            ));
        }
        let member = Arc::new(self.build(tenant)?);
        let mut evicted = Vec::new();
        // Room for the new member, which is never a candidate itself.
        // Second chance: a member served since it last came up goes to
        // the back, its bit cleared. Bounded: after a full turn every bit
        // met was cleared, and hits racing the turn cannot prolong it.
        let mut turns = 2 * st.members.len();
        while st.members.len() >= self.cfg.max_tenants {
            let Some((tenant, old)) = st.members.pop_lru() else {
                break;
            };
            if turns > 0 && self.take_used(&old) {
                turns -= 1;
                st.members.put(tenant, old);
                continue;
            }
            // Out of the `Live` table before it leaves `by_id`.
            self.live.remove(old.id, old.own());
            evicted.push(old);
        }
        st.members.put(member.tenant.clone(), member.clone());
        let mut by_id = ById::clone(&self.by_id.load());
        by_id.insert(member.id, member.clone());
        for old in &evicted {
            by_id.remove(&old.id);
        }
        self.by_id.store(Arc::new(by_id));
        // Into the `Live` table once it is in `by_id`.
        self.live.insert(member.id, member.own());
        for old in &evicted {
            log::info!(
                "template {}: tenant {} evicted (idle)",
                self.template.name(),
                old.tenant
            );
        }
        drop(st);
        self.counters.materialised.fetch_add(1, Ordering::Relaxed);
        self.counters.evicted.fetch_add(evicted.len() as u64, Ordering::Relaxed);
        log::info!(
            "template {}: tenant {} materialised",
            self.template.name(),
            member.tenant
        );
        Ok(member)
    }

    fn build(&self, tenant: &str) -> Result<Member> {
        let cfg = member_config(&self.cfg, &self.template, Some(tenant));
        // With keys of its own, the member's issuer holds its name and
        // claim checks: shared, not copied.
        let (keys, own_keys, name, policy) = match &self.shared_keys {
            Some(shared) => (
                shared.clone(),
                false,
                Arc::from(cfg.issuer.as_str()),
                MemberPolicy::Own(Box::new(ClaimPolicy::from_config(&cfg))),
            ),
            None => {
                let own = Arc::new(Issuer::new(cfg)?);
                (own.clone(), true, own.name.clone(), MemberPolicy::OfKeys(own))
            }
        };
        Ok(Member {
            id: FIRST_MEMBER_ID + NEXT_ID.fetch_add(1, Ordering::Relaxed) % FIRST_MEMBER_ID,
            name,
            tenant: Arc::from(tenant),
            policy,
            keys,
            own_keys,
            status: std::sync::OnceLock::new(),
            used: AtomicBool::new(false),
        })
    }

    /// The template's configuration.
    pub(crate) fn config(&self) -> &IssuerTemplateConfig {
        &self.cfg
    }

    /// Read and clear whether `m` was served from the cache since it last
    /// came up for eviction.
    fn take_used(&self, m: &Member) -> bool {
        let in_table = self.live.take_used(m.id);
        m.used.swap(false, Ordering::Relaxed) || in_table
    }

    /// A member whose own first fetch failed: forgotten, and refused without
    /// a fetch for [`FAILED_TENANT_MS`].
    pub(crate) fn first_fetch_failed(&self, member: &Member, now: u64) {
        if !member.own_keys || member.keys.fail_closed_at_ms() != 0 {
            return;
        }
        let mut st = self.state.lock();
        if st.members.peek(&member.tenant).is_some_and(|m| m.id == member.id) {
            st.members.pop(&member.tenant);
            self.live.remove(member.id, member.own());
            let mut by_id = ById::clone(&self.by_id.load());
            by_id.remove(&member.id);
            self.by_id.store(Arc::new(by_id));
        }
        st.failed
            .put(Box::from(&*member.tenant), now.saturating_add(FAILED_TENANT_MS));
        if st.failed.len() > MAX_FAILED_REMEMBERED {
            st.failed.pop_lru();
        }
    }

    /// `f` of the member stamped `id`, if still held (no lock taken).
    #[inline]
    pub(crate) fn with_member<T>(&self, id: usize, f: impl FnOnce(&Member) -> T) -> Option<T> {
        self.by_id.load().get(&id).map(|m| f(m))
    }

    /// For a cache hit of a result stamped `id` and `key_epoch`: whether
    /// the member's keys are current at `now_ms` if the member is still
    /// held (`None` if not), marking it used. A held member is found in the
    /// `Live` table: no lock, no map, no `ArcSwap` load; with keys per
    /// member the table's slot holds their epoch and fail-closed time, with
    /// shared keys the one key holder does.
    #[inline]
    pub(crate) fn hit(&self, id: usize, key_epoch: u64, now_ms: u64) -> Option<bool> {
        if let Some(at) = self.live.hit(id) {
            match &self.shared_keys {
                Some(shared) => return Some(shared.keys_current(key_epoch, now_ms)),
                None => {
                    if let Some(current) = self.live.keys_current(at, id, key_epoch, now_ms) {
                        return Some(current);
                    }
                }
            }
        }
        self.with_member(id, |m| {
            if !m.used.load(Ordering::Relaxed) {
                m.used.store(true, Ordering::Relaxed);
            }
            m.keys.keys_current(key_epoch, now_ms)
        })
    }

    /// The member whose issuer is `name`, if held (never materialises).
    pub(crate) fn held(&self, name: &str) -> Option<Arc<Member>> {
        let tenant = self.template.tenant_of(name)?.ok()?;
        self.state.lock().members.peek(tenant).cloned()
    }

    /// The `tenant_claim` check: the claim, if configured, must be the
    /// tenant the issuer names.
    pub(crate) fn check_tenant_claim(
        &self,
        member: &Member,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<()> {
        let Some(claim) = &self.cfg.tenant_claim else {
            return Ok(());
        };
        match claims.get(claim) {
            Some(serde_json::Value::String(v)) if **v == *member.tenant => Ok(()),
            Some(_) => Err(Error::new(
                ErrorKind::InvalidIssuer,
                format!("claim {claim} does not name the tenant of iss {}", member.name),
            )),
            None => Err(Error::new(
                ErrorKind::MissingRequiredClaim,
                format!(
                    "claim {claim} (the tenant) is required for template {}",
                    self.template.name()
                ),
            )),
        }
    }

    /// Run the members' scheduled refreshes that are due. Returns when the
    /// next is due (ms).
    pub(crate) fn run_due(&self, env: &Env) -> u64 {
        // Members' status lists, when the template allows any.
        let lists = || {
            if self.cfg.status_list.allowed_uris.is_empty() {
                return u64::MAX;
            }
            let members = self.by_id.load_full();
            members
                .values()
                .filter_map(|m| Some(m.status.get()?.run_due(&m.keys, env)))
                .min()
                .unwrap_or(u64::MAX)
        };
        if let Some(shared) = &self.shared_keys {
            return shared.run_due(env).min(lists());
        }
        let members: Vec<Arc<Member>> = self.by_id.load().values().cloned().collect();
        let keys = members.iter().map(|m| m.keys.run_due(env)).min().unwrap_or(u64::MAX);
        keys.min(lists())
    }

    /// The family's counters.
    pub(crate) fn stats(&self) -> TemplateStats {
        let c = &self.counters;
        TemplateStats {
            template: self.template.name(),
            tenants_held: self.by_id.load().len() as u64,
            materialised: c.materialised.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            refused_budget: c.refused_budget.load(Ordering::Relaxed),
            refused_pattern: c.refused_pattern.load(Ordering::Relaxed),
            refused_allowlist: c.refused_allowlist.load(Ordering::Relaxed),
            refused_unavailable: c.refused_unavailable.load(Ordering::Relaxed),
        }
    }
}

/// Take one token of the new-member bucket (`per_minute` deep, refilled
/// continuously on the injected clock), if there is one.
fn take_token(st: &mut State, now: u64, per_minute: u32) -> bool {
    let cap = f64::from(per_minute);
    let elapsed = now.saturating_sub(st.refilled_ms) as f64;
    st.tokens = (st.tokens + elapsed * cap / 60_000.0).min(cap);
    st.refilled_ms = now.max(st.refilled_ms);
    if st.tokens >= 1.0 {
        st.tokens -= 1.0;
        true
    } else {
        false
    }
}

/// The issuer entry of one member (`tenant`), or of the shared key holder
/// (`None`): an ordinary [`IssuerConfig`], as `issuers[]` holds.
fn member_config(cfg: &IssuerTemplateConfig, template: &Template, tenant: Option<&str>) -> IssuerConfig {
    let issuer = match tenant {
        Some(t) => template.issuer(t),
        None => template.name(),
    };
    IssuerConfig {
        jwks_uri: tenant.map_or_else(|| template.jwks_uri(""), |t| template.jwks_uri(t)),
        discovery: cfg.discovery,
        jwks: None,
        jwks_file: None,
        audiences: cfg.audiences.clone(),
        allow_any_audience: false,
        algorithms: cfg.algorithms.clone(),
        required_claims: Vec::new(),
        typ: None,
        leeway_secs: cfg.leeway_secs,
        max_token_lifetime_secs: None,
        hmac_keys: Vec::new(),
        refresh: cfg.refresh.clone(),
        status_list: tenant.map_or_else(StatusListConfig::default, |t| cfg.status_list_for(t)),
        kind: crate::config::IssuerKind::Token,
        fresh_within_secs: None,
        issuer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<Issuer> {
        let cfg: IssuerConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://a.example.com",
            "jwks": {"keys": []},
            "allow_any_audience": true,
        }))
        .unwrap();
        Arc::new(Issuer::new(cfg).unwrap())
    }

    #[test]
    fn the_live_table_only_ever_answers_for_ids_held() {
        let live = Live::new(1);
        let n = live.mask + 1;
        // Ids sharing one home position: the first PROBES fit, the next
        // does not (its hits then go to `by_id`), and none is confused
        // with another.
        let ids: Vec<usize> = (0..=PROBES).map(|i| FIRST_MEMBER_ID + 7 + i * n).collect();
        let own: Vec<Arc<Issuer>> = ids.iter().map(|_| keys()).collect();
        for (&id, k) in ids.iter().zip(&own) {
            live.insert(id, Some(k));
        }
        for &id in &ids[..PROBES] {
            assert!(live.hit(id).is_some(), "{id}");
        }
        assert_eq!(live.hit(ids[PROBES]), None, "displaced past PROBES: not found");
        assert_eq!(live.hit(FIRST_MEMBER_ID + 8), None, "never inserted");
        // A hit set the used bit once; taking it clears it.
        assert!(live.take_used(ids[0]));
        assert!(!live.take_used(ids[0]));
        // Removed: not found, no slot answers for it; its place is reused.
        let at1 = live.find(ids[1]).unwrap();
        live.remove(ids[1], Some(&own[1]));
        assert_eq!(live.hit(ids[1]), None);
        assert_eq!(live.keys_current(at1, ids[1], own[1].epoch(), 0), None);
        live.insert(ids[PROBES], Some(&own[PROBES]));
        assert!(live.hit(ids[PROBES]).is_some());
        assert!(live.hit(ids[2]).is_some() && live.hit(ids[3]).is_some());
        // The slot that took the place of the removed one answers with
        // its own epochs, never those of the id removed.
        assert_eq!(live.keys_current(at1, ids[PROBES], own[PROBES].epoch(), 0), Some(true));
        assert_eq!(live.keys_current(at1, ids[PROBES], own[1].epoch(), 0), Some(false));
        // An emptied home position ends the probe early: a false "not
        // found" (the caller asks `by_id`), never a false "found".
        live.remove(ids[0], Some(&own[0]));
        assert_eq!(live.hit(ids[0]), None);
    }

    #[test]
    fn the_slot_copy_moves_with_the_key_store_and_stops_at_removal() {
        let live = Live::new(1);
        let id = FIRST_MEMBER_ID + 3;
        let own = keys();
        live.insert(id, Some(&own));
        let at = live.hit(id).unwrap();
        let before = own.epoch();
        assert_eq!(live.keys_current(at, id, before, 0), Some(true));
        // A kid revocation bumps the epoch: the copy follows before
        // `revoke` returns.
        let door = crate::door::Door::default();
        own.keystore().revoke(&door.enter(), "k1");
        assert_ne!(own.epoch(), before);
        assert_eq!(live.keys_current(at, id, before, 0), Some(false));
        assert_eq!(live.keys_current(at, id, own.epoch(), 0), Some(true));
        // Failing closed too.
        own.keystore().set_fail_closed_at_ms(10);
        assert_eq!(live.keys_current(at, id, own.epoch(), 9), Some(true));
        assert_eq!(live.keys_current(at, id, own.epoch(), 10), Some(false));
        // Removed: the store no longer writes the slot, which another
        // member may now hold.
        live.remove(id, Some(&own));
        let other = keys();
        live.insert(id + 1 + live.mask, Some(&other));
        own.keystore().revoke(&door.enter(), "k2");
        assert_eq!(
            live.keys_current(at, id + 1 + live.mask, other.epoch(), 0),
            Some(true),
            "the removed store wrote nothing into its old slot"
        );
    }
}
