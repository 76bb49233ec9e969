//! The lookup phase of `bench scale`: bulk `Indicators.Lookup` calls of the API's largest
//! size, several in flight on connections of their own, over a mix of listed values, unlisted
//! values of the same shapes, and addresses inside listed CIDR blocks.
//!
//! The bench reads of each answer what a firewall acts on, each result's verdict and error,
//! and skips the rest of it unread ([`Verdicts`]): it shares the node's two cores, and
//! decoding every match, reference and origin took about 0.3 of a core from the node it
//! measures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use intelmesh_proto::codec::BoundedCodec;
use intelmesh_proto::v1 as pb;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tonic::transport::Channel;

use super::shapes;

/// Most values per Lookup call the API takes.
pub(crate) const MAX_LOOKUPS: usize = intelmesh_node::api::lookup::MAX_LOOKUPS;

/// What a looked-up value is, by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// A listed indicator, as listed.
    Listed,
    /// A value of the same shapes that no origin listed.
    Unlisted,
    /// An address inside a listed block, itself not listed.
    InBlock,
}

/// Per ten values: five listed, three unlisted, two inside listed blocks.
fn class_of(i: usize) -> Class {
    match i % 10 {
        0..5 => Class::Listed,
        5..8 => Class::Unlisted,
        _ => Class::InBlock,
    }
}

pub(crate) const MIX_TEXT: &str =
    "50% listed values, 30% unlisted values of the same shapes, 20% addresses inside listed CIDR blocks";

/// Found (any verdict but unknown) per class, over the values of that class.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Found {
    pub listed: (u64, u64),
    pub unlisted: (u64, u64),
    pub in_block: (u64, u64),
}

impl Found {
    fn add(&mut self, class: Class, found: bool) {
        let slot = match class {
            Class::Listed => &mut self.listed,
            Class::Unlisted => &mut self.unlisted,
            Class::InBlock => &mut self.in_block,
        };
        slot.0 += u64::from(found);
        slot.1 += 1;
    }

    fn merge(&mut self, other: &Found) {
        for (a, b) in [
            (&mut self.listed, other.listed),
            (&mut self.unlisted, other.unlisted),
            (&mut self.in_block, other.in_block),
        ] {
            a.0 += b.0;
            a.1 += b.1;
        }
    }

    pub(crate) fn fraction(part: (u64, u64)) -> f64 {
        if part.1 == 0 {
            return 0.0;
        }
        (part.0 as f64 / part.1 as f64 * 1000.0).round() / 1000.0
    }
}

/// A `LookupResponse` as the bench reads it: the fields of each result it does not name are
/// skipped by the decoder, not copied.
#[derive(Clone, PartialEq, prost::Message)]
struct Verdicts {
    #[prost(message, repeated, tag = "1")]
    results: Vec<VerdictOnly>,
}

/// A `LookupResult`'s `verdict` and `error` (its tags 3 and 4).
#[derive(Clone, PartialEq, prost::Message)]
struct VerdictOnly {
    #[prost(enumeration = "pb::Verdict", tag = "3")]
    verdict: i32,
    #[prost(string, tag = "4")]
    error: String,
}

/// A client of `Indicators.Lookup` decoding answers as [`Verdicts`], on its own connection.
#[derive(Clone)]
pub(crate) struct LookupClient(tonic::client::Grpc<Channel>);

impl LookupClient {
    pub(crate) fn new(channel: Channel) -> LookupClient {
        LookupClient(tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20))
    }

    async fn lookup(&mut self, request: pb::LookupRequest) -> Result<Verdicts, tonic::Status> {
        self.0
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static("/intelmesh.v1.Indicators/Lookup");
        let codec = BoundedCodec::<pb::LookupRequest, Verdicts>::default();
        Ok(self
            .0
            .unary(tonic::Request::new(request), path, codec)
            .await?
            .into_inner())
    }
}

/// One call's values and what each is.
pub(crate) struct Call {
    request: pb::LookupRequest,
    classes: Vec<Class>,
}

/// `total` values in calls of [`MAX_LOOKUPS`], drawn from slots `0..listed` (listed) and
/// beyond (unlisted).
pub(crate) fn calls(total: usize, listed: u64) -> anyhow::Result<Vec<Call>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x10_0c_0f);
    let mut calls = Vec::with_capacity(total.div_ceil(MAX_LOOKUPS));
    let mut made = 0;
    while made < total {
        let n = MAX_LOOKUPS.min(total - made);
        let mut values = Vec::with_capacity(n);
        let mut classes = Vec::with_capacity(n);
        for i in made..made + n {
            let class = class_of(i);
            let value = match class {
                Class::Listed => shapes::indicator(rng.gen_range(0..listed))?.into_value(),
                Class::Unlisted => {
                    shapes::indicator(listed + rng.gen_range(0..listed.max(1_000_000)))?
                        .into_value()
                }
                Class::InBlock => {
                    // The periods of whole thousands below `listed` hold every block kind.
                    let near = rng.gen_range(0..listed / 1000 * 1000);
                    let block = shapes::block_slot_near(near);
                    shapes::inside_block(block, &mut rng)
                        .with_context(|| format!("slot {block} is not a block"))?
                }
            };
            values.push(value);
            classes.push(class);
        }
        made += n;
        calls.push(Call {
            request: pb::LookupRequest { values },
            classes,
        });
    }
    Ok(calls)
}

/// Runs `calls` with `clients` calls in flight, each client on its own connection; returns
/// the time from the first call to the last answer, and what was found.
pub(crate) async fn run(
    calls: Vec<Call>,
    clients: Vec<LookupClient>,
) -> anyhow::Result<(Duration, Found)> {
    let queue = Arc::new(Mutex::new(calls.into_iter()));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for mut client in clients {
        let queue = Arc::clone(&queue);
        workers.spawn(async move {
            let mut found = Found::default();
            loop {
                let Some(call) = queue.lock().await.next() else {
                    return Ok::<_, anyhow::Error>(found);
                };
                let answer = client
                    .lookup(call.request)
                    .await
                    .map_err(|s| anyhow::anyhow!("Lookup: {:?}: {}", s.code(), s.message()))?;
                if answer.results.len() != call.classes.len() {
                    anyhow::bail!(
                        "Lookup answered {} results for {} values",
                        answer.results.len(),
                        call.classes.len()
                    );
                }
                for (r, class) in answer.results.iter().zip(&call.classes) {
                    let known = r.error.is_empty() && r.verdict != pb::Verdict::Unknown as i32;
                    found.add(*class, known);
                }
            }
        });
    }
    let mut found = Found::default();
    while let Some(w) = workers.join_next().await {
        found.merge(&w.context("a lookup worker failed")??);
    }
    Ok((started.elapsed(), found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_a_lookup_responses_verdict_and_error() {
        use prost::Message as _;
        let full = pb::LookupResponse {
            results: vec![
                pb::LookupResult {
                    input: "198.51.100.7".into(),
                    verdict: pb::Verdict::Malicious as i32,
                    max_confidence: 80,
                    origins: vec!["AU-AFP".into()],
                    ..Default::default()
                },
                pb::LookupResult {
                    input: "not a value".into(),
                    verdict: pb::Verdict::Unknown as i32,
                    error: "unrecognized".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let read = Verdicts::decode(full.encode_to_vec().as_slice()).expect("decodes");
        let seen: Vec<(i32, &str)> = read
            .results
            .iter()
            .map(|r| (r.verdict, r.error.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (pb::Verdict::Malicious as i32, ""),
                (pb::Verdict::Unknown as i32, "unrecognized")
            ]
        );
    }

    #[test]
    fn calls_are_full_sized_and_mixed() {
        let calls = calls(MAX_LOOKUPS + 10, 50_000).expect("calls");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].request.values.len(), MAX_LOOKUPS);
        assert_eq!(calls[1].request.values.len(), 10);
        let listed = calls[0]
            .classes
            .iter()
            .filter(|c| **c == Class::Listed)
            .count();
        assert_eq!(listed, MAX_LOOKUPS / 2);
    }
}
