//! Which of an import's submissions the node already holds from this org, asserted
//! identically (same TLP and recipients, confidence, validity, tags, description): those are
//! duplicates and are not signed again, whatever idempotency key an earlier import used.
//! Also this org's own assertions of given values (`own_assertions`), which `submit --revoke`
//! reads to refuse revoking what was never asserted and to keep the assertion's TLP.

use futures::stream::{self, StreamExt};
use intelmesh_node::api::submission::held_identically as same;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use tonic::transport::Channel;

use crate::conn::{self, rpc_error, Target};

/// Values per `Lookup`: a tenth of the node's `MAX_LOOKUPS`.
const LOOKUP_CHUNK: usize = 1000;
/// `Get` calls in flight at once.
const GETS_IN_FLIGHT: usize = 8;

/// What the node says about an import's submissions before anything is sent.
#[derive(Debug, Default)]
pub struct Known {
    /// Indexes of submissions the node holds from this org exactly as submitted.
    pub held: Vec<usize>,
    /// Indexes of submissions whose values are on the node's warninglists, with the lists.
    pub listed: Vec<(usize, Vec<String>)>,
}

/// Which of `submissions` the node holds from `target.org` exactly as submitted, and which
/// are on its warninglists.
pub async fn already_held(
    target: &Target,
    client: &IndicatorsClient<Channel>,
    submissions: &[pb::Submission],
) -> anyhow::Result<Known> {
    let org = target.org.to_string();
    // First the cheap bulk question: which values does this org list at all?
    let mut listed = Vec::new();
    let mut on_lists = Vec::new();
    for (n, chunk) in submissions.chunks(LOOKUP_CHUNK).enumerate() {
        let response = client
            .clone()
            .lookup(conn::request(
                target,
                pb::LookupRequest {
                    values: chunk.iter().map(|s| s.value.clone()).collect(),
                },
            ))
            .await
            .map_err(|s| rpc_error(target, "Lookup", s))?
            .into_inner();
        for (i, result) in response.results.iter().enumerate() {
            let exact_by_us = result
                .matches
                .iter()
                .any(|m| m.kind == pb::MatchKind::Exact as i32 && m.origins.contains(&org));
            // Only answers for values of this chunk count, however many the node sends.
            if exact_by_us && i < chunk.len() {
                listed.push(n * LOOKUP_CHUNK + i);
            }
            if !result.warninglists.is_empty() && i < chunk.len() {
                on_lists.push((n * LOOKUP_CHUNK + i, result.warninglists.clone()));
            }
        }
    }
    // Then each listed one's assertion, compared field by field.
    let listed: Vec<(usize, &pb::Submission)> = listed
        .into_iter()
        .filter_map(|i| submissions.get(i).map(|s| (i, s)))
        .collect();
    let mut held = Vec::new();
    for (i, ours) in own_assertions(target, client, &listed).await? {
        if ours.is_some_and(|a| submissions.get(i).is_some_and(|s| same(&a, s))) {
            held.push(i);
        }
    }
    held.sort_unstable();
    Ok(Known {
        held,
        listed: on_lists,
    })
}

/// `target.org`'s own assertion of each `(index, submission)`'s value as the node holds it
/// (`Get`, a few in flight), revoked or not; `None` where the org never asserted it.
pub async fn own_assertions(
    target: &Target,
    client: &IndicatorsClient<Channel>,
    items: &[(usize, &pb::Submission)],
) -> anyhow::Result<Vec<(usize, Option<pb::OriginAssertion>)>> {
    let org = target.org.to_string();
    let checks = stream::iter(items.iter().copied())
        .map(|(i, s)| {
            let mut client = client.clone();
            let request = conn::request(
                target,
                pb::GetRequest {
                    r#type: s.r#type,
                    value: s.value.clone(),
                },
            );
            async move { (i, client.get(request).await) }
        })
        .buffer_unordered(GETS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let mut found = Vec::with_capacity(checks.len());
    for (i, answer) in checks {
        let response = answer
            .map_err(|s| rpc_error(target, "Get", s))?
            .into_inner();
        let ours = response
            .state
            .and_then(|st| st.assertions.into_iter().find(|a| a.origin == org));
        found.push((i, ours));
    }
    found.sort_unstable_by_key(|(i, _)| *i);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(tlp: i32, confidence: u32, tags: &[&str]) -> pb::Submission {
        pb::Submission {
            r#type: pb::IndicatorType::Domain as i32,
            value: "evil.example".into(),
            distribution: Some(pb::Distribution {
                tlp,
                recipients: vec![],
            }),
            body: Some(pb::submission::Body::Upsert(pb::IndicatorUpsert {
                confidence,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn only_an_identical_assertion_in_force_is_the_same() {
        let a = pb::OriginAssertion {
            origin: "SG-IGCI".into(),
            confidence: 75,
            distribution: Some(pb::Distribution {
                tlp: 3,
                recipients: vec![],
            }),
            valid_from_unix_ms: 1_700_000_000_000,
            tags: vec!["c2".into()],
            ..Default::default()
        };
        assert!(same(&a, &upsert(3, 75, &["c2"])));
        assert!(!same(&a, &upsert(2, 75, &["c2"])));
        assert!(!same(&a, &upsert(3, 80, &["c2"])));
        assert!(!same(&a, &upsert(3, 75, &[])));
        let revoked = pb::OriginAssertion {
            revoked: true,
            ..a.clone()
        };
        assert!(!same(&revoked, &upsert(3, 75, &["c2"])));
    }
}
