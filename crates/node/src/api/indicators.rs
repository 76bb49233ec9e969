//! `Indicators`: the local API's indicator service. Authenticates the caller by its service
//! certificate, then runs the plain rules of [`super::view`] against the store (on blocking
//! threads) and [`NodeState::publish`].

use std::collections::BTreeSet;
use std::sync::Arc;

use intelmesh_core::entry::header_hash;
use intelmesh_core::{now_unix_ms, Distribution, Indicator, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{Store, StoreError, VersionVector};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::idempotency::{self, Repeatable};
use super::query;
use super::submission::{self, Prepared, Publisher};
use super::view::{self, Filter, Invalid, WatchCursor};
use super::watch_feed;
use crate::admission::check_api_caller;
use crate::identity::{require_role, Identity, Role};
use crate::own_entries::Rejudge;
use crate::state::{header_of, Idempotent, NodeError, NodeState, Publication};

/// Events queued towards one watcher; a slow one makes its task wait, not the queue grow.
const WATCH_QUEUE: usize = 64;
pub(super) type WatchStream = ReceiverStream<Result<pb::WatchEvent, Status>>;

pub struct IndicatorsService {
    pub state: Arc<NodeState>,
    /// What `Query` page tokens are sealed under.
    pub tokens: Arc<crate::token::TokenKey>,
    /// Open `Watch` streams, bounded.
    pub watches: Arc<super::watches::Watches>,
    /// Lookup chunks, Query pages and Watch steps on the blocking pool at once, and each
    /// caller's share of them (`read_shares`).
    pub blocking_reads: Arc<crate::read_shares::ReadShares>,
}

fn bad(e: Invalid) -> Status {
    Status::invalid_argument(e.0)
}

pub(super) fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// The calling service's org and name; node and admin certificates have no business here,
/// and a certificate the roster revoked is refused.
pub(super) fn service<T>(
    state: &NodeState,
    request: &Request<T>,
) -> Result<(OrgId, String), Status> {
    check_api_caller(state, request)?;
    match require_role(request, Role::Service, "Indicators")? {
        Identity::Service { org, name } => Ok((org, name)),
        other => Err(Status::internal(format!("{other} passed as a service"))),
    }
}

fn publish_error(e: NodeError) -> Status {
    match e {
        NodeError::KeyReused
        | NodeError::NotAdmitted { .. }
        | NodeError::OwnKeyEnded { .. }
        | NodeError::OwnLogBehind { .. }
        | NodeError::Seal(_) => Status::failed_precondition(e.to_string()),
        NodeError::Rejudged(why) => Status::invalid_argument(why),
        NodeError::CutDue => Status::unavailable(e.to_string()),
        e => internal(e),
    }
}

/// The answer to a publishing call: the entries it published.
fn submit_response(org: &OrgId, seqs: &[u64], indicators: &[Indicator]) -> pb::SubmitResponse {
    let assigned = seqs
        .iter()
        .zip(indicators)
        .map(|(&seq, i)| pb::Assigned {
            origin: org.to_string(),
            seq,
            indicator: Some(view::to_ref(i)),
        })
        .collect();
    pb::SubmitResponse {
        assigned,
        replayed: false,
    }
}

/// A receipt's answer given again: what the first call published, marked as a repeat.
fn replayed(answer: &[u8]) -> Result<pb::SubmitResponse, Status> {
    let first = pb::SubmitResponse::decode(answer)
        .map_err(|e| internal(format!("a publication receipt does not decode: {e}")))?;
    Ok(pb::SubmitResponse {
        replayed: true,
        ..first
    })
}

impl IndicatorsService {
    /// Runs `f` on a blocking thread with the node state.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&NodeState) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .map_err(internal)?
            .map_err(internal)
    }

    /// Checks the caller may publish as this node's org, prepares its items with `prepare`
    /// (all validated before anything is signed), and publishes them durably, once per
    /// idempotency key: a repeat is answered from the first call's receipt, before its items
    /// are even checked again, so nothing a retry sends is signed twice.
    async fn publish_for<T: Repeatable + Send + 'static>(
        &self,
        request: Request<T>,
        prepare: impl FnOnce(&T, &Publisher) -> Result<Vec<Prepared>, Invalid> + Send + 'static,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (org, name) = publishing_service(&self.state, &request)?;
        let r = request.into_inner();
        let once = idempotency::receipt_key(&org, &name, r.idempotency_key())
            .map_err(bad)?
            .map(|key| Idempotent {
                key,
                request: idempotency::request_digest(&r),
            });
        if let Some(once) = &once {
            if let Some(answer) = self
                .state
                .earlier_answer(once)
                .await
                .map_err(publish_error)?
            {
                return Ok(Response::new(replayed(&answer)?));
            }
        }
        // Normalizing up to 10,000 values and reading what each revocation revokes is
        // blocking work: off the runtime's threads, which serve every link and stream, and
        // within the caller's share of the reads, like a query's.
        let permit = self
            .blocking_reads
            .acquire(&format!("{org}/{name}"))
            .await?;
        let state = Arc::clone(&self.state);
        let (judged_at, items) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let members: BTreeSet<OrgId> = state.keys().members().clone();
            let p = Publisher {
                org: &state.org,
                members: &members,
                now: now_unix_ms(),
            };
            // Read before the checks read what the node signed.
            let judged_at = state.own_head_seq();
            Ok::<_, Invalid>((judged_at, prepare(&r, &p)?))
        })
        .await
        .map_err(internal)?
        .map_err(bad)?;
        let rejudge = Some(audience_rejudge(judged_at, &items));
        let indicators: Vec<Indicator> = items.iter().map(|p| p.indicator.clone()).collect();
        let items: Vec<(Distribution, pb::Payload)> = items
            .into_iter()
            .map(|p| (p.distribution, p.payload))
            .collect();
        let response = match once {
            None => {
                let seqs =
                    (self.state.publish_rejudged(items, rejudge).await).map_err(publish_error)?;
                submit_response(&self.state.org, &seqs, &indicators)
            }
            Some(once) => {
                let (me, kept) = (self.state.org.clone(), indicators.clone());
                let answer = move |seqs: &[u64]| submit_response(&me, seqs, &kept).encode_to_vec();
                match self
                    .state
                    .publish_once(items, once, answer, rejudge)
                    .await
                    .map_err(publish_error)?
                {
                    Publication::Published(seqs) => {
                        submit_response(&self.state.org, &seqs, &indicators)
                    }
                    // Sent while the first was being published.
                    Publication::Replayed(answer) => replayed(&answer)?,
                }
            }
        };
        Ok(Response::new(response))
    }
}

/// The calls' work; the `Indicators` implementation (`indicators_audited`) records each in the
/// audit trail around it.
impl IndicatorsService {
    pub(super) async fn submit_call(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let lists = self.state.warninglists();
        let state = Arc::clone(&self.state);
        self.publish_for(request, move |r, p| {
            let items = submission::submissions(&r.submissions, p)?;
            if !r.force {
                submission::refuse_listed(&items, &lists)?;
            }
            submission::refuse_unasserted(&items, |i| {
                // A store that cannot be read lets the revocation through: refusing it
                // would make a store error read as "never asserted".
                state.store.indicator(i).map_or(true, |s| {
                    s.is_some_and(|s| s.assertions.iter().any(|a| a.origin == state.org.as_str()))
                })
            })?;
            submission::refuse_past_audience_cap(&items, |i, kind| own_audiences(&state, i, kind))?;
            if !r.share_wider {
                refuse_wider_than_known_here(&state, &items)?;
            }
            Ok(items)
        })
        .await
    }

    pub(super) async fn report_sighting_call(
        &self,
        request: Request<pb::ReportSightingRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let state = Arc::clone(&self.state);
        self.publish_for(request, move |r, p| {
            let items = vec![submission::sighting(r, p)?];
            submission::refuse_past_audience_cap(&items, |i, kind| own_audiences(&state, i, kind))?;
            if !r.share_wider {
                refuse_wider_than_known_here(&state, &items)?;
            }
            Ok(items)
        })
        .await
    }

    pub(super) async fn get_call(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let (reader, name) = service(&self.state, &request)?;
        let req = request.into_inner();
        let indicator = submission::parse_indicator(req.r#type, &req.value).map_err(bad)?;
        // A point read, but on the blocking pool that applying entries needs: within the
        // caller's share of the reads, so a flood of calls queues behind its own permits.
        let permit = self
            .blocking_reads
            .acquire(&format!("{reader}/{name}"))
            .await?;
        let response = self
            .blocking(move |s| {
                let _permit = permit;
                let hidden = s.withdrawn();
                get(
                    s.store.as_ref(),
                    &reader,
                    &indicator,
                    &hidden,
                    now_unix_ms(),
                )
            })
            .await?;
        Ok(Response::new(response))
    }

    pub(super) async fn query_call(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let (reader, name) = service(&self.state, &request)?;
        let caller = format!("{reader}/{name}");
        let req = request.into_inner();
        let filter = Filter::parse(req.filter.as_ref())
            .map_err(bad)?
            .hiding(self.state.withdrawn());
        let tokens = Arc::clone(&self.tokens);
        let sealed = query::Tokens {
            key: &tokens,
            reader: &reader,
        };
        let after = sealed
            .open(&req.page_token, &query::selection(&filter))
            .map_err(bad)?;
        let size = view::page_size(req.page_size);
        let page_bytes = query::page_bytes(self.state.cfg.limits.max_message_bytes);
        let permit = self.blocking_reads.acquire(&caller).await?;
        let response = self
            .blocking(move |s| {
                let _permit = permit;
                let sealed = query::Tokens {
                    key: &tokens,
                    reader: &reader,
                };
                query::query(s.store.as_ref(), &sealed, &filter, size, page_bytes, after)
            })
            .await?;
        Ok(Response::new(response))
    }

    pub(super) async fn watch_call(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = service(&self.state, &request)?;
        let reader = caller.0.clone();
        // Judged again at each roster change: a stream outlives the check made when it opened.
        let leaf = (request.peer_certs())
            .and_then(|c| c.first().map(|c| c.as_ref().to_vec()))
            .unwrap_or_default();
        let reads_as = format!("{}/{}", caller.0, caller.1);
        let open = self.watches.open(caller)?;
        let req = request.into_inner();
        let filter = Filter::parse(req.filter.as_ref()).map_err(bad)?;
        // A new watcher starts after every fill made so far: replayed entries are read as
        // they are stored now, filled ones in full.
        let cursors = view::Cursors {
            key: &self.tokens,
            reader: &reader,
        };
        let cursor = match cursors.decode(&req.cursor).map_err(bad)? {
            // Only origins this store holds: a cursor naming others (made up) would have each
            // of them re-encoded in every event sent.
            Some(mut c) => {
                self.blocking(move |s| {
                    let held = s.store.vector()?;
                    c.log.retain(|origin, _| held.contains_key(origin));
                    if c.fills == view::FILLS_UNKNOWN {
                        c.fills = s.store.fill_count();
                    }
                    Ok(c)
                })
                .await?
            }
            None => {
                let from_start = req.from_start;
                self.blocking(move |s| {
                    let fills = s.store.fill_count();
                    let log = if from_start {
                        VersionVector::new()
                    } else {
                        s.store.vector()?
                    };
                    Ok(WatchCursor { log, fills })
                })
                .await?
            }
        };
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let state = Arc::clone(&self.state);
        let tokens = Arc::clone(&self.tokens);
        let reads = Arc::clone(&self.blocking_reads);
        tokio::spawn(async move {
            let watcher = watch_feed::Watcher {
                reader,
                cert: crate::admission::PeerCert::of_leaf(&leaf),
                leaf,
                filter,
                tokens,
                reads,
                caller: reads_as,
            };
            watch_feed::watch_loop(state, watcher, cursor, tx).await;
            drop(open);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The caller's org and service name, if it may publish as this node's org: a service of
/// that org not listed as read-only.
pub(super) fn publishing_service<T>(
    state: &NodeState,
    request: &Request<T>,
) -> Result<(OrgId, String), Status> {
    let (org, name) = service(state, request)?;
    if org != state.org {
        return Err(Status::permission_denied(format!(
            "services of {org} cannot publish as {}",
            state.org
        )));
    }
    if state.cfg.read_only_services.contains(&name) {
        return Err(Status::permission_denied(format!(
            "service {name} may read, not publish (read_only_services in the node's config)"
        )));
    }
    Ok((org, name))
}

/// The `Get` answer: the visible state, its verdict, and the entry behind each assertion.
fn get(
    store: &dyn Store,
    reader: &OrgId,
    indicator: &Indicator,
    hidden: &BTreeSet<String>,
    now: i64,
) -> Result<pb::GetResponse, StoreError> {
    let mut state = store
        .indicator(indicator)?
        .and_then(|s| view::reader_view(&s, hidden, reader));
    let mut provenance = Vec::new();
    let mut cut = BTreeSet::new();
    for a in state.iter().flat_map(|s| &s.assertions) {
        let origin = OrgId::parse(&a.origin)
            .map_err(|e| StoreError::Corrupt(format!("index names a bad origin: {e}")))?;
        let entry = store.range(&origin, a.seq, 1)?.into_iter().next();
        match entry.filter(|e| header_of(e).is_some_and(|h| h.seq == a.seq)) {
            Some(entry) => provenance.push(pb::Provenance {
                origin: a.origin.clone(),
                seq: a.seq,
                header_hash: hex::encode(header_hash(&entry.header)),
            }),
            // Cut from the log since the state was read (a compromise cut, whose index rebuild
            // is still running): what it asserted no longer stands.
            None if store.head(&origin)?.is_none_or(|h| h.seq < a.seq) => {
                cut.insert((a.origin.clone(), a.seq));
            }
            None => {
                return Err(StoreError::Corrupt(format!(
                    "{origin}#{}: indexed but not in the log",
                    a.seq
                )))
            }
        }
    }
    if !cut.is_empty() {
        if let Some(s) = state.as_mut() {
            s.assertions
                .retain(|a| !cut.contains(&(a.origin.clone(), a.seq)));
        }
        state = state.filter(|s| !s.assertions.is_empty() || !s.sightings.is_empty());
    }
    Ok(pb::GetResponse {
        found: state.is_some(),
        verdict: view::verdict(state.as_ref(), now) as i32,
        state,
        provenance,
    })
}

/// The audience cap judged again under the publish lock, if the node signed since
/// `judged_at`: two calls at once, each under the cap alone, may not pass it together.
pub fn audience_rejudge(judged_at: u64, items: &[submission::Prepared]) -> Rejudge {
    let claims = submission::AudienceClaims::of(items);
    Rejudge {
        judged_at,
        check: Box::new(move |state| {
            (claims.refuse_past_cap(|i, kind| own_audiences(state, i, kind))).map_err(|e| e.0)
        }),
    }
}

/// What this node's index holds of `indicator`, or why it could not be read.
fn held_state(
    state: &NodeState,
    indicator: &Indicator,
) -> Result<Option<pb::IndicatorState>, String> {
    state.store.indicator(indicator).map_err(|e| e.to_string())
}

/// [`submission::refuse_wider_than_known`] against what this node's store holds.
fn refuse_wider_than_known_here(
    state: &NodeState,
    items: &[submission::Prepared],
) -> Result<(), Invalid> {
    let containers = |i: &Indicator| submission::containers_in(state.store.as_ref(), i);
    submission::refuse_wider_than_known(items, &state.org, |i| held_state(state, i), &containers)
}

/// This node's audiences for `indicator`'s slots of `kind`, as its index holds them; none if
/// the store cannot be read (a store error alone must not refuse a publication).
fn own_audiences(
    state: &NodeState,
    indicator: &Indicator,
    kind: submission::SlotKind,
) -> Vec<submission::Audience> {
    let held = state.store.indicator(indicator).ok().flatten();
    held.map_or_else(Vec::new, |h| submission::audiences(&h, &state.org, kind))
}
