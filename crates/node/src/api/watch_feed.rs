//! One Watch stream's feed: the catch-up from its cursor and the following of new changes,
//! step by step on blocking threads; the watcher judged again at each roster version and cut
//! when its certificate ends.

use std::sync::Arc;

use intelmesh_core::verify::decode_payload;
use intelmesh_core::{now_unix_ms, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_roster::Roster;
use intelmesh_store::{Store, StoreError};
use tokio::sync::mpsc;
use tonic::Status;

use super::indicators::internal;
use super::view::{Cursors, Filter, WatchCursor};
use crate::admission::refused_certificate;
use crate::state::{header_of, NodeState};

/// Log entries one watch step reads before handing its events over.
const WATCH_STEP_ENTRIES: usize = 512;

/// One step of a watch: reads up to [`WATCH_STEP_ENTRIES`] log entries past `cursor` and
/// turns those `reader` may see and `filter` admits into events. Says whether more remain.
fn watch_step(
    store: &dyn Store,
    cursors: &Cursors,
    filter: &Filter,
    cursor: &mut WatchCursor,
) -> Result<(Vec<pb::WatchEvent>, bool), StoreError> {
    let mut events = Vec::new();
    let mut read = 0;
    // Entries this step sent in full from the log: a fill of one of them, recorded since it
    // was read, is not sent again.
    let mut sent = std::collections::HashSet::new();
    for (origin, head) in store.vector()? {
        loop {
            let at = cursor.log.get(&origin).copied().unwrap_or(0);
            if at >= head {
                break;
            }
            if read >= WATCH_STEP_ENTRIES {
                return Ok((events, true));
            }
            let entries = store.range(&origin, at + 1, WATCH_STEP_ENTRIES - read)?;
            if entries.is_empty() {
                // Cut since the head was read (a compromise cut): nothing past `at` to watch,
                // and the origin's next entries take the seqs from its new head on.
                let now = store.head(&origin)?.map_or(0, |h| h.seq);
                if now <= at {
                    cursor.log.insert(origin.clone(), now);
                    break;
                }
                return Err(StoreError::Corrupt(format!(
                    "{origin}: log ends before its head #{head}"
                )));
            }
            for e in entries {
                read += 1;
                let header = header_of(&e).ok_or_else(|| {
                    StoreError::Corrupt(format!("{origin}: a logged header does not decode"))
                })?;
                cursor.log.insert(origin.clone(), header.seq);
                if let Some(ev) = watch_event(store, cursors, filter, &header, &e, cursor)? {
                    sent.insert((origin.clone(), header.seq));
                    events.push(ev);
                }
            }
        }
    }
    // Stubs filled in since: an entry the watcher passed as a stub now has its payload. One
    // it has not passed yet comes in full with its log.
    for fill in store.fills_after(cursor.fills, WATCH_STEP_ENTRIES - read)? {
        read += 1;
        cursor.fills = fill.n;
        if cursor.log.get(&fill.origin).is_none_or(|at| *at < fill.seq)
            || sent.contains(&(fill.origin.clone(), fill.seq))
        {
            continue;
        }
        // A compromise cut (`DiskStore::truncate_origin`) may have removed a filled entry
        // since: it is no longer there to show.
        let Some(entry) = store.range(&fill.origin, fill.seq, 1)?.pop() else {
            continue;
        };
        let header = header_of(&entry).ok_or_else(|| {
            StoreError::Corrupt(format!("{}: a logged header does not decode", fill.origin))
        })?;
        if let Some(ev) = watch_event(store, cursors, filter, &header, &entry, cursor)? {
            events.push(ev);
        }
    }
    Ok((events, read >= WATCH_STEP_ENTRIES))
}

/// The event for one log entry, if it carries a payload the watcher may see and its
/// indicator's view matches; stubs and the rest only move the cursor.
fn watch_event(
    store: &dyn Store,
    cursors: &Cursors,
    filter: &Filter,
    header: &pb::EntryHeader,
    entry: &pb::SignedEntry,
    cursor: &WatchCursor,
) -> Result<Option<pb::WatchEvent>, StoreError> {
    let reader = cursors.reader;
    let Some(bytes) = entry.payload.as_ref() else {
        return Ok(None);
    };
    if !filter.admits_entry(header, reader) {
        return Ok(None);
    }
    // A sealed payload reads as what it opened to here; one not opened here reads as a stub.
    let opened;
    let bytes: &[u8] = if header.sealed {
        let origin = OrgId::parse(&header.origin)
            .map_err(|e| StoreError::Corrupt(format!("a logged origin: {e}")))?;
        match store.opened(&origin, header.seq)? {
            Some(inner) => {
                opened = inner;
                &opened
            }
            None => return Ok(None),
        }
    } else {
        bytes
    };
    let payload = decode_payload(bytes).map_err(|e| {
        StoreError::Corrupt(format!(
            "{}#{}: stored payload {e}",
            header.origin, header.seq
        ))
    })?;
    // A roster version or checkpoint names no indicator.
    let Some(payload) = payload else {
        return Ok(None);
    };
    let Some(state) = store
        .indicator(&payload.indicator)?
        .and_then(|s| filter.view(&s, reader))
    else {
        return Ok(None);
    };
    Ok(Some(pb::WatchEvent {
        origin: header.origin.clone(),
        seq: header.seq,
        state: Some(state),
        cursor: cursors.encode(cursor),
        // The store keeps no append time: this is when the watcher read the entry, which
        // is never before it became durable.
        durable_at_unix_ms: now_unix_ms(),
    }))
}

/// Who watches: the reader's org, the certificate it presented (DER), and its filter as asked
/// (the roster's withdrawn origins are added to it at each roster change).
pub(super) struct Watcher {
    pub(super) reader: OrgId,
    pub(super) leaf: Vec<u8>,
    /// What `leaf` says (when it ends).
    pub(super) cert: crate::admission::PeerCert,
    pub(super) filter: Filter,
    /// What its cursors' fill counts are sealed under.
    pub(super) tokens: Arc<crate::token::TokenKey>,
    /// The blocking reads each step waits for, as the caller (`org/name`) it counts against.
    pub(super) reads: Arc<crate::read_shares::ReadShares>,
    pub(super) caller: String,
}

impl Watcher {
    /// The filter asked, with the origins the roster withdrew now.
    fn hiding_withdrawn(&self, state: &NodeState) -> Arc<Filter> {
        Arc::new(self.filter.clone().hiding(state.withdrawn()))
    }
}

/// Resolves with why `watcher` must stop: its certificate ended, or a roster version refuses
/// it (revoked, its org shut out). At each version that still admits it, `filter` takes the
/// withdrawn origins afresh.
async fn refused(
    state: &NodeState,
    watcher: &Watcher,
    roster: &mut Option<tokio::sync::watch::Receiver<Arc<Roster>>>,
    filter: &mut Arc<Filter>,
) -> Status {
    loop {
        tokio::select! {
            end = watcher.cert.ended() => {
                return Status::permission_denied(crate::admission::certificate_ended(end));
            }
            () = roster_changed(roster) => {
                if let Some(why) = refused_certificate(state, &watcher.leaf) {
                    return Status::permission_denied(why);
                }
                *filter = watcher.hiding_withdrawn(state);
            }
        }
    }
}

/// Resolves at the next roster version followed (never in static mode, or once the node stops
/// following).
async fn roster_changed(changes: &mut Option<tokio::sync::watch::Receiver<Arc<Roster>>>) {
    if let Some(rx) = changes {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    *changes = None;
    std::future::pending().await
}

/// Feeds one watcher: catches up from its cursor, then follows new changes, until the
/// client goes away, the node stops, or a roster version refuses the watcher's certificate or
/// org (revoked, suspended, removed), or its certificate ends: ended with PERMISSION_DENIED.
pub(super) async fn watch_loop(
    state: Arc<NodeState>,
    watcher: Watcher,
    mut cursor: WatchCursor,
    tx: mpsc::Sender<Result<pb::WatchEvent, Status>>,
) {
    let reader = watcher.reader.clone();
    let mut filter = watcher.hiding_withdrawn(&state);
    let mut roster = state.roster_changes();
    let mut changed = state.subscribe();
    loop {
        changed.borrow_and_update();
        loop {
            // A catch-up whose steps match nothing sends nothing, so a client gone must be
            // seen here, or its scan would go on through the whole log.
            if tx.is_closed() || state.is_stopping() {
                return;
            }
            let (st, r, f) = (Arc::clone(&state), reader.clone(), Arc::clone(&filter));
            let key = Arc::clone(&watcher.tokens);
            // A catch-up through the whole log is steps back to back: each takes a read of the
            // caller's share, so one service's streams cannot keep every thread busy.
            // A stream waits as long as it must (a busy node ends no stream), but not for a
            // client gone or a node stopping.
            let permit = loop {
                tokio::select! {
                    got = watcher.reads.acquire(&watcher.caller) => match got {
                        Ok(p) => break p,
                        Err(_) => continue,
                    },
                    _ = tx.closed() => return,
                    _ = state.stopped() => return,
                }
            };
            let step = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let mut c = cursor;
                let cursors = Cursors {
                    key: &key,
                    reader: &r,
                };
                watch_step(st.store.as_ref(), &cursors, &f, &mut c).map(|(ev, more)| (ev, more, c))
            })
            .await;
            let (events, more, next) = match step {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return fail(&state, &tx, internal(e)).await,
                Err(e) => return fail(&state, &tx, internal(e)).await,
            };
            cursor = next;
            // A watcher reading slowly (a catch-up through the whole log, one event at a time)
            // is judged while it waits for room too (`refused` takes in the roster versions
            // that still admit it, and resolves only when one does not).
            for ev in events {
                tokio::select! {
                    sent = tx.send(Ok(ev)) => if sent.is_err() { return },
                    _ = state.stopped() => return,
                    why = refused(&state, &watcher, &mut roster, &mut filter) => {
                        return fail(&state, &tx, why).await;
                    }
                }
            }
            if !more {
                break;
            }
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            why = refused(&state, &watcher, &mut roster, &mut filter) => {
                return fail(&state, &tx, why).await;
            }
            _ = tx.closed() => return,
            _ = state.stopped() => return,
        }
    }
}

/// Tells the watcher why its stream ends (unless it is gone, or the node stops meanwhile).
async fn fail(
    state: &NodeState,
    tx: &mpsc::Sender<Result<pb::WatchEvent, Status>>,
    status: Status,
) {
    tracing::warn!(error = %status.message(), "watch ended");
    tokio::select! {
        _ = tx.send(Err(status)) => {}
        _ = state.stopped() => {}
    }
}
