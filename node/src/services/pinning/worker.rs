//! The worker: fetches queued requests, at most `PinningService.Concurrency` at once, retries
//! with a doubling wait, and records how each try ended.

use std::time::{Duration, Instant};

use super::*;

impl PinService {
    /// Takes the queued requests that are due, up to the free worker slots, and marks them
    /// `pinning`. Returns them, and the time until the next one is due (if any waits).
    fn take_due(&self) -> Result<(Vec<PinRequest>, Option<Duration>), PinError> {
        let mut state = self.lock()?;
        let now = now_ms();
        let free = self.settings.concurrency.saturating_sub(state.running.len());
        let mut queued: Vec<&PinRequest> = state.requests.values().filter(|r| r.status == Status::Queued).collect();
        queued.sort_by_key(|r| (r.retry_at_ms, r.created_ms));
        let next_wait = queued.iter().find(|r| r.retry_at_ms > now).map(|r| Duration::from_millis(r.retry_at_ms - now));
        let due: Vec<String> =
            queued.iter().filter(|r| r.retry_at_ms <= now).take(free).map(|r| r.id.clone()).collect();
        let mut taken = Vec::new();
        for id in due {
            if let Some(r) = state.requests.get_mut(&id) {
                r.status = Status::Pinning;
                r.attempts += 1;
                taken.push(r.clone());
            }
        }
        self.save(&taken.iter().collect::<Vec<_>>(), &[])?;
        state.running.extend(taken.iter().map(|r| r.id.clone()));
        Ok((taken, next_wait))
    }

    /// Records how a try of request `id` ended.
    fn finish(&self, id: &str, outcome: Result<u64, PinError>) -> Result<(), PinError> {
        let mut state = self.lock()?;
        state.running.remove(id);
        let Some(mut r) = state.requests.get(id).cloned() else {
            // Removed while it was fetched: `after_finish` releases its pin.
            return Ok(());
        };
        match outcome {
            Ok(dag_bytes) => {
                r.status = Status::Pinned;
                r.info.remove("error");
                r.info.insert(SIZE_INFO.into(), dag_bytes.to_string());
            }
            Err(e) if r.attempts >= self.settings.max_attempts => {
                tracing::warn!(request = %r.id, cid = %r.pin.cid, error = %e, "pin request failed");
                r.status = Status::Failed;
                r.info.insert("error".into(), e.to_string());
            }
            Err(e) => {
                let wait = self.settings.retry_delay.saturating_mul(1 << (r.attempts - 1).min(16));
                tracing::info!(request = %r.id, cid = %r.pin.cid, error = %e, retry_in = ?wait, "pin request will be retried");
                r.status = Status::Queued;
                r.retry_at_ms = now_ms() + wait.as_millis() as u64;
                r.info.insert("error".into(), e.to_string());
            }
        }
        self.save(&[&r], &[])?;
        state.requests.insert(r.id.clone(), r);
        Ok(())
    }

    /// Fetches and pins queued requests until the runtime stops.
    pub async fn run(self: Arc<Self>, net: Network) {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let next = match self.take_due() {
                Ok((due, next)) => {
                    for r in due {
                        let (service, net) = (self.clone(), net.clone());
                        tasks.spawn(async move {
                            let outcome = service.fulfil(&net, &r).await;
                            if let Err(e) = service.finish(&r.id, outcome) {
                                tracing::error!(request = %r.id, error = %e, "cannot record a pin request's outcome");
                            }
                            if let Err(e) = service.after_finish(&r) {
                                tracing::error!(request = %r.id, error = %e, "cannot release a removed request's pin");
                            }
                        });
                    }
                    next
                }
                Err(e) => {
                    tracing::error!(error = %e, "pin requests");
                    Some(Duration::from_secs(5))
                }
            };
            let sleep = tokio::time::sleep(next.unwrap_or(Duration::from_secs(3600)));
            tokio::select! {
                () = self.wake.notified() => {}
                Some(_) = tasks.join_next() => {}
                () = sleep => {}
            }
        }
    }

    /// After a try: a request removed while it ran leaves no pin behind.
    fn after_finish(&self, r: &PinRequest) -> Result<(), PinError> {
        let state = self.lock()?;
        if state.requests.contains_key(&r.id) {
            return Ok(());
        }
        self.release(&state, r)
    }

    /// One try: dial the origins, fetch the DAG, pin it, announce it.
    async fn fulfil(&self, net: &Network, r: &PinRequest) -> Result<u64, PinError> {
        let (cid, origins) = r.pin.check()?;
        let started = Instant::now();
        for addr in origins {
            // An origin that cannot be dialed is no reason to give up: others may have it.
            if let Err(e) = tokio::time::timeout(Duration::from_secs(10), net.connect(addr.clone())).await {
                tracing::debug!(%addr, error = %e, "origin not reached in time");
            }
        }
        let store: SharedStore = Arc::new(NodeStore(self.node.clone()));
        let fetched = net.fetch_dag(&store, cid, Order::File, FETCH_WINDOW, self.settings.block_timeout).await?;
        let (node, account) = (self.node.clone(), r.owner.clone());
        let quota = match self.settings.max_bytes {
            Some(max) => Some((max, self.held_bytes(&r.owner, &r.id)?)),
            None => None,
        };
        let (size, dag_bytes) = tokio::task::spawn_blocking(move || -> Result<(u64, u64), NodeError> {
            let path = IpfsPath { root: cid, rest: String::new() };
            let owner = PinOwner::Service(account);
            if let Some((max, held)) = quota {
                // The DAG is here (fetched above); its size decides, before any pin is made.
                let size = node.dag_size(&cid)?;
                if held.saturating_add(size) > max {
                    return Err(NodeError::Quota(format!(
                        "the DAG holds {size} bytes and the account {held} of its {max} (PinningService.MaxBytes)"
                    )));
                }
            }
            match node.pin_of_owner(&cid, &owner)? {
                Some(p) if p.mode == PinMode::Recursive => {}
                _ => {
                    node.pin_add_as(owner, &path, true, Some(PIN_NAME.to_owned()))?;
                }
            }
            Ok((node.stat_path(&path).map(|s| s.size).unwrap_or(0), node.dag_size(&cid)?))
        })
        .await??;
        tracing::info!(request = %r.id, %cid, blocks = fetched.blocks, fetched = fetched.fetched, elapsed = ?started.elapsed(), "pinned for the pinning service");
        net.provide_later(vec![cid]).await;
        net.announce_root(cid, size).await;
        Ok(dag_bytes)
    }
}
