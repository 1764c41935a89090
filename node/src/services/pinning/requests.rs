//! The requests' store: each account's requests, kept in memory and, one durable record
//! each, in the repo's metadata; changes are bounded per account.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;

/// Pins an older version made for the service under the operator (named [`PIN_NAME`]) become
/// the pins of the accounts whose pinned requests name them; then the operator's go. Once
/// per repo, marked in the metadata.
fn adopt_legacy_pins(node: &Node, state: &State) -> Result<(), PinError> {
    const DONE: &[u8] = b"pins/service-owners-adopted";
    if node.repo().store().get_meta(DONE).map_err(NodeError::from)?.is_some() {
        return Ok(());
    }
    let legacy: Vec<_> = node
        .pins()?
        .into_iter()
        .filter(|p| p.owner == PinOwner::Operator && p.name.as_deref() == Some(PIN_NAME))
        .collect();
    for pin in legacy {
        let path = IpfsPath { root: pin.cid, rest: String::new() };
        let owners: HashSet<&str> = state
            .requests
            .values()
            .filter(|r| r.status == Status::Pinned && r.cid().is_some_and(|c| c.hash() == pin.cid.hash()))
            .map(|r| r.owner.as_str())
            .collect();
        for owner in owners {
            node.pin_add_as(PinOwner::Service(owner.to_owned()), &path, true, Some(PIN_NAME.to_owned()))?;
        }
        node.pin_rm(&path)?;
    }
    node.repo().store().put_meta(DONE, b"1").map_err(NodeError::from)?;
    Ok(())
}

impl PinService {
    /// Loads the stored requests of `node`'s repo. Requests that were being fetched when the
    /// node stopped are queued again.
    pub fn open(node: Arc<Node>, settings: Settings) -> Result<Arc<PinService>, PinError> {
        let mut state = State::default();
        let stored: Vec<PinRequest> =
            node.repo().store().meta_records(PREFIX, "pin requests").map_err(NodeError::from)?;
        for mut r in stored {
            if r.status == Status::Pinning {
                r.status = Status::Queued;
            }
            state.last_created = state.last_created.max(r.created_ms);
            state.requests.insert(r.id.clone(), r);
        }
        adopt_legacy_pins(&node, &state)?;
        Ok(Arc::new(PinService { node, settings, state: Mutex::new(state), wake: tokio::sync::Notify::new() }))
    }

    pub(super) fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, PinError> {
        self.state.lock().map_err(|_| PinError::Node(NodeError::Poisoned))
    }

    pub(super) fn save(&self, put: &[&PinRequest], delete: &[&str]) -> Result<(), PinError> {
        let keys: Vec<(Vec<u8>, Vec<u8>)> = put.iter().map(|r| (key(&r.id), encode(r))).collect();
        let puts: Vec<(&[u8], &[u8])> = keys.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        let deletes: Vec<Vec<u8>> = delete.iter().map(|id| key(id)).collect();
        let deletes: Vec<&[u8]> = deletes.iter().map(Vec::as_slice).collect();
        self.node.repo().store().update_meta(&puts, &deletes).map_err(NodeError::from)?;
        Ok(())
    }

    fn new_request(state: &mut State, owner: &str, pin: PinSpec) -> PinRequest {
        let created_ms = now_ms().max(state.last_created + 1);
        state.last_created = created_ms;
        PinRequest {
            id: uuid::Uuid::new_v4().to_string(),
            owner: owner.to_owned(),
            status: Status::Queued,
            created_ms,
            pin,
            attempts: 0,
            info: BTreeMap::new(),
            retry_at_ms: 0,
        }
    }

    /// Queues a new request for `owner`.
    pub fn add(&self, owner: &str, pin: PinSpec) -> Result<PinRequest, PinError> {
        pin.check()?;
        let mut state = self.lock()?;
        self.count_change(&mut state, owner)?;
        let held = state.requests.values().filter(|r| r.owner == owner).count();
        if held >= self.settings.max_requests {
            return Err(PinError::Quota(format!(
                "the account holds {held} pin requests, its most (PinningService.MaxRequests)"
            )));
        }
        let r = Self::new_request(&mut state, owner, pin);
        self.save(&[&r], &[])?;
        state.requests.insert(r.id.clone(), r.clone());
        drop(state);
        self.wake.notify_one();
        Ok(r)
    }

    /// `owner`'s request `id`.
    pub fn get(&self, owner: &str, id: &str) -> Result<PinRequest, PinError> {
        self.lock()?.owned(owner, id)
    }

    /// Replaces `owner`'s request `id` by a new one for `pin` (a new ID). The old request's
    /// pin goes when no request needs it any more.
    pub fn replace(&self, owner: &str, id: &str, pin: PinSpec) -> Result<PinRequest, PinError> {
        pin.check()?;
        let mut state = self.lock()?;
        self.count_change(&mut state, owner)?;
        let old = state.owned(owner, id)?;
        let mut r = Self::new_request(&mut state, owner, pin);
        // The same CID again: already held, so the new request carries the old one's status.
        if old.pin.cid == r.pin.cid && old.status == Status::Pinned {
            r.status = Status::Pinned;
            r.info = old.info.clone();
        }
        self.save(&[&r], &[id])?;
        state.requests.remove(id);
        state.requests.insert(r.id.clone(), r.clone());
        self.release(&state, &old)?;
        drop(state);
        self.wake.notify_one();
        Ok(r)
    }

    /// Removes `owner`'s request `id`, and its pin when no request needs it any more.
    pub fn remove(&self, owner: &str, id: &str) -> Result<(), PinError> {
        let mut state = self.lock()?;
        self.count_change(&mut state, owner)?;
        let old = state.owned(owner, id)?;
        self.save(&[], &[id])?;
        state.requests.remove(id);
        self.release(&state, &old)
    }

    /// Counts one change of `owner`'s, refused past [`Settings::per_minute`] in a minute.
    fn count_change(&self, state: &mut State, owner: &str) -> Result<(), PinError> {
        let now = Instant::now();
        if state.changes.len() > 4 * self.settings.per_minute as usize + 1024 {
            state.changes.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let (start, n) = state.changes.entry(owner.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            *start = now;
            *n = 0;
        }
        if *n >= self.settings.per_minute {
            return Err(PinError::RateLimited(self.settings.per_minute));
        }
        *n += 1;
        Ok(())
    }

    /// Bytes of the DAGs `owner`'s pinned requests hold, as recorded when each was pinned,
    /// leaving out `except`.
    pub(super) fn held_bytes(&self, owner: &str, except: &str) -> Result<u64, PinError> {
        let state = self.lock()?;
        let mut seen = HashSet::new();
        Ok(state
            .requests
            .values()
            .filter(|r| r.owner == owner && r.id != except && r.status == Status::Pinned)
            .filter(|r| seen.insert(r.pin.cid.clone()))
            .filter_map(|r| r.info.get(SIZE_INFO).and_then(|s| s.parse::<u64>().ok()))
            .sum())
    }

    /// Removes the account's repo pin `gone` made, unless another request of the same account
    /// still needs its CID. Pins of other owners (the operator, other accounts, followed
    /// publishers) are theirs: they are never touched.
    pub(super) fn release(&self, state: &State, gone: &PinRequest) -> Result<(), PinError> {
        let Some(cid) = gone.cid() else { return Ok(()) };
        let same = |r: &&PinRequest| r.owner == gone.owner && r.cid().is_some_and(|c| c.hash() == cid.hash());
        if state.requests.values().any(|r| same(&r)) {
            return Ok(());
        }
        let owner = PinOwner::Service(gone.owner.clone());
        for pin in self.node.pins_of(&cid)?.into_iter().filter(|p| p.owner == owner) {
            self.node.pin_rm_as(&owner, &IpfsPath { root: pin.cid, rest: String::new() })?;
        }
        Ok(())
    }

    /// `owner`'s requests that match `q`: how many match, and the newest `q.limit` of them.
    pub fn list(&self, owner: &str, q: &Query) -> Result<(usize, Vec<PinRequest>), PinError> {
        let state = self.lock()?;
        let mut hits: Vec<&PinRequest> = state.requests.values().filter(|r| r.owner == owner && q.matches(r)).collect();
        hits.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then_with(|| b.id.cmp(&a.id)));
        Ok((hits.len(), hits.into_iter().take(q.limit).cloned().collect()))
    }

    /// Counts of requests by status, over every account.
    pub fn counts(&self) -> Result<BTreeMap<&'static str, u64>, PinError> {
        let state = self.lock()?;
        let mut out: BTreeMap<&'static str, u64> =
            [Status::Queued, Status::Pinning, Status::Pinned, Status::Failed].map(|s| (s.as_str(), 0)).into();
        for r in state.requests.values() {
            *out.entry(r.status.as_str()).or_default() += 1;
        }
        Ok(out)
    }
}
