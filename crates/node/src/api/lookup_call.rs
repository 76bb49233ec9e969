//! The `Lookup` call: a request's values split into chunks answered on the blocking pool at
//! once (so a large request uses every core), their encoded answers joined back in request
//! order, and every value named for the audit trail whatever the outcome.

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
    pub(super) async fn lookup_call(&self, request: Request<pb::LookupRequest>) -> Named {
        let (reader, name) = match service(&self.state, &request) {
            Ok(caller) => caller,
            Err(refused) => return unanswered(refused, request.into_inner().values),
        };
        let values = request.into_inner().values;
        if values.len() > lookup::MAX_LOOKUPS {
            let refused = Status::invalid_argument(format!(
                "{} values, over the {} allowed per lookup; split the batch",
                values.len(),
                lookup::MAX_LOOKUPS
            ));
            return unanswered(refused, Vec::new());
        }
        // Read once per request, so every chunk answers against the same withdrawn set and
        // block lengths.
        let (hidden, lengths) = match self
            .blocking(|s| Ok((Arc::new(s.withdrawn()), s.store.prefix_lengths())))
            .await
        {
            Ok(read) => read,
            Err(failed) => return unanswered(failed, values),
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
        };
        let _cancel_if_gone = lookup::CancelOnDrop(Arc::clone(&shared.budget));
        let mut values = values;
        let mut chunks = Vec::with_capacity(values.len().div_ceil(LOOKUP_CHUNK));
        let mut short = None;
        while !values.is_empty() {
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
            let rest = values.split_off(values.len().min(LOOKUP_CHUNK));
            let chunk = std::mem::replace(&mut values, rest);
            let (state, shared) = (Arc::clone(&self.state), shared.clone());
            chunks.push(tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let l = lookup::Lookup {
                    store: state.store.as_ref(),
                    reader: &shared.reader,
                    hidden: &shared.hidden,
                    lengths,
                    now: shared.now,
                    warninglists: &shared.lists,
                };
                l.answer_chunk(chunk, &shared.budget)
            }));
        }
        let mut named = Vec::with_capacity(chunks.len() * LOOKUP_CHUNK + values.len());
        let mut response = pb::LookupResponse::default();
        let mut failed = short;
        for chunk in chunks {
            match chunk.await {
                Ok(lookup::Chunk { encoded, named: n }) => {
                    named.extend(n);
                    match encoded {
                        Ok(run) => response.encoded_results.push(run),
                        Err(e) => {
                            failed.get_or_insert(lookup_status(e));
                        }
                    }
                }
                Err(panicked) => {
                    failed.get_or_insert(internal(panicked));
                }
            }
        }
        named.extend(values.into_iter().map(audit::raw));
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
}

fn unanswered(status: Status, values: Vec<String>) -> Named {
    Named {
        outcome: Err(status),
        values: values.into_iter().map(audit::raw).collect(),
    }
}

fn lookup_status(e: lookup::LookupError) -> Status {
    match e {
        lookup::LookupError::Store(e) => internal(e),
        too_large => Status::resource_exhausted(too_large.to_string()),
    }
}
