//! `intelmesh admin roster propose`: the federation-wide settings a version may change (the
//! authority keys and threshold, the hub addresses agencies dial, the policy), turned into
//! roster actions against the current version. Pure: the current document in, actions out.

use intelmesh_proto::v1 as pb;
use pb::action::Action as A;

use crate::usage;

#[derive(clap::Args, Debug, Default)]
pub struct SettingsArgs {
    /// The new authority: every key, as NAME=PUBKEYFILE (`admin keygen`), with --threshold.
    /// The version then needs the threshold of the current keys and of the new ones.
    #[arg(
        long = "authority",
        value_name = "NAME=PUBKEYFILE",
        requires = "threshold"
    )]
    pub authorities: Vec<String>,
    /// Signatures each version needs under the new authority.
    #[arg(long, value_name = "K", requires = "authorities")]
    pub threshold: Option<u32>,
    /// The hubs agencies dial, as ORG=HOST:PORT (replaces the list; repeat for each hub).
    #[arg(long = "hub", value_name = "ORG=HOST:PORT")]
    pub hubs: Vec<String>,
    /// Policy: the clock skew bound, in ms.
    #[arg(long, value_name = "MS")]
    pub clock_skew_ms: Option<u64>,
    /// Policy: how often every node checkpoints the roster it follows, in ms.
    #[arg(long, value_name = "MS")]
    pub checkpoint_interval_ms: Option<u64>,
    /// Policy: certificates this close to expiry are warned about, in days.
    #[arg(long, value_name = "DAYS")]
    pub cert_warn_days: Option<u64>,
}

/// The actions `args` ask for against `current`; a usage error when they ask for nothing.
pub fn actions(
    args: &SettingsArgs,
    current: &pb::RosterDocument,
) -> anyhow::Result<Vec<pb::Action>> {
    let mut out = Vec::new();
    if let Some(threshold) = args.threshold {
        let keys = args
            .authorities
            .iter()
            .map(|spec| {
                let k = crate::enrol_cmd::parse_authority(spec)?;
                Ok(pb::AuthorityKey {
                    name: k.name,
                    public_key: k.key.to_bytes().to_vec(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.push(action(A::SetAuthority(pb::SetAuthority {
            authority: Some(pb::Authority { keys, threshold }),
        })));
    }
    if !args.hubs.is_empty() {
        let hubs = args
            .hubs
            .iter()
            .map(|spec| {
                let (org, address) = spec
                    .split_once('=')
                    .filter(|(o, a)| !o.is_empty() && !a.is_empty())
                    .ok_or_else(|| usage(format!("--hub {spec}: expected ORG=HOST:PORT")))?;
                Ok(pb::HubAddress {
                    org: org.to_string(),
                    address: address.to_string(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.push(action(A::SetHubs(pb::SetHubs { hubs })));
    }
    let changes_policy = args.clock_skew_ms.is_some()
        || args.checkpoint_interval_ms.is_some()
        || args.cert_warn_days.is_some();
    if changes_policy {
        let mut policy = current.policy.unwrap_or_default();
        if let Some(v) = args.clock_skew_ms {
            policy.clock_skew_ms = v;
        }
        if let Some(v) = args.checkpoint_interval_ms {
            policy.checkpoint_interval_ms = v;
        }
        if let Some(v) = args.cert_warn_days {
            policy.cert_warn_days = v;
        }
        out.push(action(A::SetPolicy(pb::SetPolicy {
            policy: Some(policy),
        })));
    }
    if out.is_empty() {
        return Err(usage(
            "roster propose needs a change: --authority/--threshold, --hub, or a policy option",
        ));
    }
    Ok(out)
}

fn action(a: A) -> pb::Action {
    pb::Action { action: Some(a) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> pb::RosterDocument {
        pb::RosterDocument {
            policy: Some(pb::Policy {
                clock_skew_ms: 300_000,
                checkpoint_interval_ms: 60_000,
                cert_warn_days: 30,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_policy_option_changes_only_its_field() {
        let args = SettingsArgs {
            cert_warn_days: Some(14),
            ..Default::default()
        };
        let got = actions(&args, &current()).unwrap();
        let Some(A::SetPolicy(p)) = &got[0].action else {
            panic!("{got:?}")
        };
        let p = p.policy.unwrap();
        assert_eq!(
            (p.clock_skew_ms, p.checkpoint_interval_ms, p.cert_warn_days),
            (300_000, 60_000, 14)
        );
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn hubs_replace_the_list_and_malformed_ones_are_refused() {
        let args = SettingsArgs {
            hubs: vec![
                "SG-IGCI=hub.example:7700".into(),
                "NL-HUB=10.0.0.2:7700".into(),
            ],
            ..Default::default()
        };
        let got = actions(&args, &current()).unwrap();
        let Some(A::SetHubs(h)) = &got[0].action else {
            panic!("{got:?}")
        };
        assert_eq!(h.hubs.len(), 2);
        assert_eq!(h.hubs[1].address, "10.0.0.2:7700");
        for bad in ["SG-IGCI", "=x:1", "SG-IGCI="] {
            let args = SettingsArgs {
                hubs: vec![bad.into()],
                ..Default::default()
            };
            let e = actions(&args, &current()).unwrap_err();
            assert!(e.to_string().contains("ORG=HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn nothing_to_change_is_a_usage_error() {
        let e = actions(&SettingsArgs::default(), &current()).unwrap_err();
        assert!(e.to_string().contains("needs a change"), "{e}");
    }
}
