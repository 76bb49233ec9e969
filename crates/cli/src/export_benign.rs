//! Which values of a block-list export (`plain`, `rpz`) the node's warninglists name as
//! known-benign, asked through `Lookup` so that the lists the node loaded decide, as they do
//! for submissions. A member that forced `8.8.8.8` or `github.com` into the mesh, or one whose
//! node loads no lists, must not have it blocked by every firewall and resolver fed from here.

use std::collections::BTreeSet;

use intelmesh_core::{Indicator, IndicatorType};

use crate::conn::ConnectArgs;
use crate::lookup_cmd::lookup_values;

/// What a block list would block for `indicator`: the value itself, or for a URL in a zone the
/// host the rule names. `None` when the list blocks nothing wider than the value: a URL in a
/// plain list, an e-mail address (its domain's lists say nothing about one mailbox).
pub(crate) fn blocked_name(indicator: &Indicator, by_host: bool) -> Option<String> {
    match indicator.ty() {
        IndicatorType::Url if by_host => indicator.host().map(|h| h.value().to_string()),
        IndicatorType::Url | IndicatorType::Email => None,
        _ => Some(indicator.value().to_string()),
    }
}

/// Those of `names` that are on one of the node's warninglists.
pub(crate) async fn on_warninglists(
    conn: &ConnectArgs,
    names: BTreeSet<String>,
) -> anyhow::Result<BTreeSet<String>> {
    let mut benign = BTreeSet::new();
    if names.is_empty() {
        return Ok(benign);
    }
    let names: Vec<String> = names.into_iter().collect();
    let results = lookup_values(conn, &names).await?;
    for (name, result) in names.into_iter().zip(results) {
        if !result.warninglists.is_empty() {
            benign.insert(name);
        }
    }
    Ok(benign)
}

/// `values` without those whose blocked name is in `benign`, and how many were left out.
pub(crate) fn without_benign(
    values: Vec<Indicator>,
    benign: &BTreeSet<String>,
    by_host: bool,
) -> (Vec<Indicator>, usize) {
    let before = values.len();
    let kept: Vec<Indicator> = values
        .into_iter()
        .filter(|v| blocked_name(v, by_host).is_none_or(|n| !benign.contains(&n)))
        .collect();
    let left_out = before - kept.len();
    (kept, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use intelmesh_core::indicator::normalize;

    fn ind(ty: IndicatorType, v: &str) -> Indicator {
        normalize(ty, v).expect("a valid value")
    }

    #[test]
    fn a_zone_judges_a_url_by_its_host_and_a_plain_list_keeps_it() {
        let url = ind(IndicatorType::Url, "https://github.com/evil/drop.exe");
        assert_eq!(blocked_name(&url, true).as_deref(), Some("github.com"));
        assert_eq!(blocked_name(&url, false), None);
        let mail = ind(IndicatorType::Email, "phish@gmail.com");
        assert_eq!(blocked_name(&mail, true), None);
        let ip = ind(IndicatorType::Ipv4, "8.8.8.8");
        assert_eq!(blocked_name(&ip, false).as_deref(), Some("8.8.8.8"));
    }

    #[test]
    fn benign_names_are_left_out_and_counted() {
        let values = vec![
            ind(IndicatorType::Ipv4, "8.8.8.8"),
            ind(IndicatorType::Domain, "evil.example"),
            ind(IndicatorType::Url, "https://github.com/evil/drop.exe"),
        ];
        let benign: BTreeSet<String> = ["8.8.8.8", "github.com"].map(String::from).into();
        let (zone, out) = without_benign(values.clone(), &benign, true);
        assert_eq!(out, 2);
        assert_eq!(zone, vec![values[1].clone()]);
        let (plain, out) = without_benign(values.clone(), &benign, false);
        assert_eq!(out, 1);
        assert_eq!(plain, values[1..].to_vec());
    }
}
