//! Every write to the store goes through [`DiskStore::apply_with`]: chain decisions, the hold
//! queue, fork proofs (found here or received), receipts of own publications, the index states
//! and postings they change, then one durable batch, and only then the counters.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use intelmesh_core::chain::ChainError;
use intelmesh_core::evidence::CheckedProof;
use intelmesh_core::{OrgId, VerifiedEntry};
use intelmesh_proto::v1 as pb;

use crate::apply::{Finished, Placed, Work};
use crate::hold::{HoldQueue, Offer};
use crate::index_write::IndexBatch;
use crate::receipt::{self, Receipt, PRUNE_PER_WRITE, RECEIPT_TTL_MS};
use crate::{keys, ApplyReport, ApplyTimings, DiskStore, Outcome, StoreError};

/// What a write carries besides entries.
#[derive(Default)]
pub(crate) struct Extra {
    /// A receipt to keep under this key, written in the same batch as the entries.
    receipt: Option<(Vec<u8>, Receipt)>,
    /// Fork proofs checked elsewhere.
    forks: Vec<pb::ForkProof>,
}

impl DiskStore {
    /// Applies the node's own entries and keeps `receipt` under `key` in the same atomic batch,
    /// so the receipt exists exactly when the entries are durable.
    pub fn apply_own(
        &self,
        batch: Vec<VerifiedEntry>,
        key: Vec<u8>,
        receipt: Receipt,
    ) -> Result<ApplyReport, StoreError> {
        self.apply_with(
            batch,
            Extra {
                receipt: Some((key, receipt)),
                forks: Vec::new(),
            },
        )
    }

    /// Keeps fork proofs received from peers (checked by the caller: a [`CheckedProof`] only
    /// comes from `intelmesh_core::evidence::check`), within the per-origin cap, and flags their
    /// origins. Returns how many were new.
    pub fn add_fork_proofs(&self, proofs: Vec<CheckedProof>) -> Result<u64, StoreError> {
        let before = self.fork_count();
        self.apply_with(
            Vec::new(),
            Extra {
                receipt: None,
                forks: proofs.into_iter().map(CheckedProof::into_proof).collect(),
            },
        )?;
        Ok(self.fork_count() - before)
    }

    pub(crate) fn apply_with(
        &self,
        batch: Vec<VerifiedEntry>,
        extra: Extra,
    ) -> Result<ApplyReport, StoreError> {
        let asked = Instant::now();
        let mut held = self.lock();
        self.rebuild_if_marked()?;
        let now = Instant::now();
        let mut timings = ApplyTimings {
            lock_wait: now - asked,
            ..ApplyTimings::default()
        };
        let limits = self.cfg.hold_limits();
        let expired = held.expire(limits.ttl, now);
        self.hold_expired
            .fetch_add(expired as u64, Ordering::AcqRel);
        if expired > 0 {
            tracing::warn!(
                expired,
                "dropped entries held for their predecessors longer than the hold time"
            );
        }
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (batch[a].header(), batch[b].header());
            (&x.origin, x.seq).cmp(&(&y.origin, y.seq))
        });
        let mut slots: Vec<Option<VerifiedEntry>> = batch.into_iter().map(Some).collect();
        let mut outcomes: Vec<Outcome> = vec![Outcome::Duplicate; slots.len()];
        let mut released = Vec::new();
        let heads = self.current_heads()?;
        let mut work = Work::new(
            &self.db,
            &self.tails,
            &heads,
            self.cfg.owner.as_ref(),
            slots.len(),
        );
        work.add_forks(extra.forks);
        for i in order {
            let Some(entry) = slots[i].take() else {
                continue;
            };
            let origin = entry.header().origin.clone();
            outcomes[i] = match work.place(entry)? {
                Placed::Done(o) => o,
                Placed::Gap(entry) => hold(&mut work, &mut held, *entry, &limits, now)?,
            };
            if outcomes[i] == Outcome::Appended {
                settle_held(&mut work, &mut held, &origin, &mut released)?;
            }
        }
        let Finished {
            mut batch,
            index: states,
            log_changed,
            heads,
            tails,
            fills,
            forks,
        } = work.finish(self.fills.load(Ordering::Acquire))?;
        // A receipt answers a repeat with this publication's seqs: kept only when every entry
        // went in as signed. One that did not (an own log behind what peers relayed makes it
        // a fork, or held) fails the call, and a repeat must not be told it was published.
        if let Some((key, r)) = extra.receipt {
            if outcomes.iter().all(|o| *o == Outcome::Appended) {
                self.add_receipt(&mut batch, &key, &r)?;
            }
        }
        let mut phase = now;
        timings.placing = lap(&mut phase);
        let mut index = IndexBatch::new(self.index_meta(), &self.presence, self.arrivals.as_ref());
        for update in states {
            index.merge(&self.db, update)?;
        }
        timings.index_read = lap(&mut phase);
        let index_meta = index.write(&self.db, &mut batch)?;
        let before = self.generation.load(Ordering::Acquire);
        let generation = before + u64::from(log_changed);
        if log_changed {
            batch.insert(keys::GENERATION, generation.to_be_bytes());
        }
        timings.index_write = lap(&mut phase);
        let publishing = self.publishing();
        // A reader that sees the new heads must not be answered from the tails before them.
        self.tails.writing(&tails);
        if let Err(e) = self.db.apply_batch(batch) {
            self.tails.failed(&tails);
            return Err(e);
        }
        timings.commit = lap(&mut phase);
        // Durable now: range reads of these tails may be answered from memory.
        self.tails.written(tails);
        // The prefix lengths before the heads: a reader told of a new block by the new heads
        // (a Watch) and looking an address up at once must find the block's length.
        self.set_index_meta(index_meta);
        if log_changed {
            self.advance_heads(before, generation, heads);
        }
        self.generation.store(generation, Ordering::Release);
        self.fills.fetch_add(fills, Ordering::AcqRel);
        self.forks.fetch_add(forks, Ordering::AcqRel);
        publishing.done();
        Ok(ApplyReport {
            outcomes,
            released,
            timings,
        })
    }

    /// Writes a receipt and prunes a few that are past their time.
    fn add_receipt(
        &self,
        batch: &mut crate::kv::Batch,
        key: &[u8],
        r: &Receipt,
    ) -> Result<(), StoreError> {
        batch.insert(receipt::key(key), receipt::encode(r));
        batch.insert(receipt::age_key(r.at_unix_ms, key), &[][..]);
        let cutoff = r.at_unix_ms.saturating_sub(RECEIPT_TTL_MS);
        for kv in self
            .db
            .scan_prefix(receipt::age_prefix())
            .take(PRUNE_PER_WRITE)
        {
            let (k, _) = kv?;
            match receipt::parse_age_key(&k) {
                Some((at, old)) if at < cutoff => {
                    batch.remove(receipt::key(old));
                    batch.remove(k.to_vec());
                }
                _ => break,
            }
        }
        Ok(())
    }
}

/// The time since `since`, which moves to now.
fn lap(since: &mut Instant) -> Duration {
    let now = Instant::now();
    let took = now - *since;
    *since = now;
    took
}

/// Holds an entry whose predecessors are missing. A different entry already held at its seq is
/// an equivocation: both are kept as a proof and neither is held.
fn hold(
    work: &mut Work<'_>,
    held: &mut HoldQueue,
    entry: VerifiedEntry,
    limits: &crate::hold::HoldLimits,
    now: Instant,
) -> Result<Outcome, StoreError> {
    let (origin, seq) = (entry.header().origin.clone(), entry.header().seq);
    Ok(match held.offer(entry, limits, now) {
        Offer::Held | Offer::AlreadyHeld => Outcome::Held,
        Offer::Conflicts(entry) => {
            if let Some(other) = held.get(&origin, seq).map(|o| o.raw().clone()) {
                work.record_equivocation(&other, &entry);
            }
            Outcome::Rejected(ChainError::Equivocation { origin, seq })
        }
        Offer::Full => Outcome::Rejected(ChainError::HoldQueueFull {
            head_seq: work.head(&origin)?.map_or(0, |h| h.seq),
            origin,
            seq,
            limit: limits.per_origin,
        }),
    })
}

/// After `origin` advanced: every held entry the log has now reached leaves the queue, appended
/// if it is the next one, otherwise found a duplicate, an equivocation or a chain break (whose
/// proofs `place` keeps).
fn settle_held(
    work: &mut Work<'_>,
    held: &mut HoldQueue,
    origin: &OrgId,
    released: &mut Vec<(OrgId, u64)>,
) -> Result<(), StoreError> {
    loop {
        let next = work.head(origin)?.map_or(1, |h| h.seq + 1);
        let Some(entry) = held.take_first_upto(origin, next) else {
            return Ok(());
        };
        let seq = entry.header().seq;
        if let Placed::Done(Outcome::Appended) = work.place(entry)? {
            released.push((origin.clone(), seq));
        }
    }
}
