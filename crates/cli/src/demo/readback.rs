//! The demo's read-backs: values fetched with Get at every node and a defanged Lookup at the
//! hub, each checked to be known, malicious and asserted by the agency that submitted it.

use std::collections::BTreeMap;

use anyhow::Context;
use intelmesh_core::indicator::normalize;
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;

use super::{node_mut, org, DemoNode, HUB};
use crate::corpus_sample::SampleValue;

/// Reads back, at every node, one value of each type (via Get) and one defanged domain (via
/// Lookup at the hub): each must be known, malicious, and asserted by its submitter.
pub(super) async fn spot_check(
    nodes: &mut [DemoNode],
    values: &[SampleValue],
    submitters: &[OrgId],
    batch: usize,
) -> anyhow::Result<()> {
    let mut picked: BTreeMap<String, (usize, &SampleValue)> = BTreeMap::new();
    for (i, v) in values.iter().enumerate() {
        picked.entry(v.ty.to_string()).or_insert((i, v));
    }
    for (i, v) in picked.values() {
        let submitter = &submitters[(i / batch) % submitters.len()];
        let canonical = normalize(v.ty, &v.raw)?.into_value();
        let mut verdicts = Vec::new();
        for n in nodes.iter_mut() {
            let target = n.api.target.clone();
            let got = n
                .api
                .indicators()
                .await?
                .get(pb::GetRequest {
                    r#type: v.ty.to_proto() as i32,
                    value: v.raw.clone(),
                })
                .await
                .map_err(|s| crate::conn::rpc_error(&target, "Get", s))?
                .into_inner();
            let asserted = got.state.as_ref().is_some_and(|s| {
                s.assertions
                    .iter()
                    .any(|a| a.origin == submitter.as_str() && !a.revoked)
            });
            if !got.found || !asserted || got.verdict != pb::Verdict::Malicious as i32 {
                anyhow::bail!(
                    "Get {} {canonical} at {}: found {}, verdict {}, asserted by {submitter}: {asserted}",
                    v.ty,
                    n.api.org,
                    got.found,
                    crate::render::verdict_name(got.verdict)
                );
            }
            verdicts.push(n.api.org.to_string());
        }
        println!(
            "  Get {} {canonical}: malicious, asserted by {submitter}, at {}",
            v.ty,
            verdicts.join(", ")
        );
    }
    let domain = values
        .iter()
        .enumerate()
        .find(|(_, v)| v.ty == intelmesh_core::IndicatorType::Domain);
    if let Some((i, v)) = domain {
        let submitter = &submitters[(i / batch) % submitters.len()];
        let canonical = normalize(v.ty, &v.raw)?.into_value();
        let defanged = canonical.replace('.', "[.]").to_uppercase();
        let hub = node_mut(nodes, &org(HUB))?;
        let target = hub.api.target.clone();
        let response = hub
            .api
            .indicators()
            .await?
            .lookup(pb::LookupRequest {
                values: vec![defanged.clone()],
            })
            .await
            .map_err(|s| crate::conn::rpc_error(&target, "Lookup", s))?
            .into_inner();
        let r = response
            .results
            .first()
            .context("Lookup answered no result")?;
        let value = r.indicator.as_ref().map(|i| i.value.as_str());
        if value != Some(canonical.as_str()) || !r.origins.iter().any(|o| o == submitter.as_str()) {
            anyhow::bail!(
                "Lookup {defanged:?} at {HUB}: expected {canonical} from {submitter}, got {value:?} from {:?} ({})",
                r.origins,
                r.error
            );
        }
        println!(
            "  Lookup {defanged} at {HUB}: domain {canonical}, {}, confidence {}, from {}",
            crate::render::verdict_name(r.verdict),
            r.max_confidence,
            r.origins.join(",")
        );
    }
    Ok(())
}
