//! The `Lookup` call: a request's values split into chunks answered on the blocking pool at
//! once (so a large request uses every core), their encoded answers joined back in request
//! order, and every value named for the audit trail whatever the outcome (none when the
//! caller may not look up, or asked too many).

use std::sync::Arc;

use intelmesh_core::now_unix_ms;
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store as _;
use tonic::{Request, Response, Status};

use super::indicators::{internal, service, IndicatorsService};
use super::lookup;
use crate::audit;

/// Values of one `Lookup` request answered by one blocking task: large enough that a task's
/// cost dwarfs its spawning, small enough that a full request spreads over several cores.
const LOOKUP_CHUNK: usize = 2_500;

/// A call's outcome and the values it names for the audit trail: each in the canonical form
/// its answer found, else as given; none when the request was refused for its size.
pub(super) struct Named {
    pub outcome: Result<Response<pb::LookupResponse>, Status>,
    pub values: Vec<audit::Value>,
}

impl IndicatorsService {
    /// Answers `values`, the request's (taken out of it, so its chunks share them rather than
    /// each value moving to the thread that answers it).
    pub(super) async fn lookup_call(
        &self,
        request: &Request<pb::LookupRequest>,
        values: Arc<Vec<String>>,
    ) -> Named {
        // A caller that may not look up is recorded naming none: how many values its refusal
        // names, and so the trail's growth, would be its to choose (past `MAX_LOOKUPS` too).
        let (reader, name) = match service(&self.state, request) {
            Ok(caller) => caller,
            Err(refused) => return unanswered(refused, &[]),
        };
        if values.len() > lookup::MAX_LOOKUPS {
            let refused = Status::invalid_argument(format!(
                "{} values, over the {} allowed per lookup; split the batch",
                values.len(),
                lookup::MAX_LOOKUPS
            ));
            return unanswered(refused, &[]);
        }
        // Read once per request, so every chunk answers against the same withdrawn set and
        // block lengths.
        let (hidden, lengths) = match self
            .blocking(|s| Ok((Arc::new(s.withdrawn()), s.store.prefix_lengths())))
            .await
        {
            Ok(read) => read,
            Err(failed) => return unanswered(failed, &values),
        };
        let caller = format!("{reader}/{name}");
        let shared = Shared {
            reader: Arc::new(reader),
            hidden,
            lists: self.state.warninglists(),
            now: now_unix_ms(),
            budget: Arc::new(lookup::AnswerBudget::new(
                self.state.cfg.limits.max_message_bytes,
            )),
            audit_key: self.state.audit().key().cloned(),
        };
        let _cancel_if_gone = lookup::CancelOnDrop(Arc::clone(&shared.budget));
        let mut chunks = Vec::with_capacity(values.len().div_ceil(LOOKUP_CHUNK));
        let mut short = None;
        let mut dispatched = 0;
        while dispatched < values.len() {
            // Held by the chunk until it ends, even if the call is dropped meanwhile.
            let permit = match self.blocking_reads.acquire(&caller).await {
                Ok(permit) => permit,
                Err(shortage) => {
                    // The chunks under way stop at their next value.
                    shared.budget.cancel();
                    short = Some(Status::from(shortage));
                    break;
                }
            };
            let part = dispatched..values.len().min(dispatched + LOOKUP_CHUNK);
            dispatched = part.end;
            let (state, shared, values) =
                (Arc::clone(&self.state), shared.clone(), Arc::clone(&values));
            chunks.push(tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let l = lookup::Lookup {
                    store: state.store.as_ref(),
                    reader: &shared.reader,
                    hidden: &shared.hidden,
                    lengths,
                    now: shared.now,
                    warninglists: &shared.lists,
                    audit_key: shared.audit_key.as_deref(),
                };
                l.answer_chunk(&values[part], &shared.budget)
            }));
        }
        let mut named = Vec::with_capacity(values.len());
        let mut response = pb::LookupResponse::default();
        let mut failed = short;
        for chunk in chunks {
            match chunk.await {
                Ok(lookup::Chunk { encoded, named: n }) => {
                    named.extend(n);
                    match encoded {
                        Ok(run) => response.encoded_results.push(run),
                        Err(e) => {
                            // The call ends with this error: the chunks after it need not
                            // work on (they stop at their next value).
                            shared.budget.cancel();
                            failed.get_or_insert(lookup_status(e));
                        }
                    }
                }
                Err(panicked) => {
                    shared.budget.cancel();
                    failed.get_or_insert(internal(panicked));
                }
            }
        }
        named.extend(values[dispatched..].iter().map(|v| audit::raw(v)));
        let outcome = match failed {
            Some(status) => Err(status),
            None => Ok(Response::new(response)),
        };
        Named {
            outcome,
            values: named,
        }
    }
}

/// What every chunk of one call reads with.
#[derive(Clone)]
struct Shared {
    reader: Arc<intelmesh_core::OrgId>,
    hidden: Arc<std::collections::BTreeSet<String>>,
    lists: Arc<intelmesh_interop::Warninglists>,
    now: i64,
    budget: Arc<lookup::AnswerBudget>,
    audit_key: Option<Arc<intelmesh_audit::AuditKey>>,
}

fn unanswered(status: Status, values: &[String]) -> Named {
    Named {
        outcome: Err(status),
        values: values.iter().map(|v| audit::raw(v)).collect(),
    }
}

fn lookup_status(e: lookup::LookupError) -> Status {
    match e {
        lookup::LookupError::Store(e) => internal(e),
        too_large => Status::resource_exhausted(too_large.to_string()),
    }
}
