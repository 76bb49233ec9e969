//! Readiness and liveness: whether the node does its job (an agency linked to a hub), told to
//! gRPC health clients, to `/readyz` and to `status`.
//!
//! Liveness is "the process answers"; readiness is stricter: an agency cut off from every hub
//! still serves its API, but what it serves no longer moves with the federation, so an
//! orchestrator should not count it ready. Hubs are ready while they run: agencies come to them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use intelmesh_core::OrgId;
use intelmesh_proto::v1::federation_server::FederationServer;
use intelmesh_proto::v1::indicators_server::IndicatorsServer;
use intelmesh_proto::v1::node_status_server::NodeStatusServer;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::config::Role;
use crate::state::NodeState;

/// How often readiness is recomputed for gRPC health watchers.
const RECHECK: Duration = Duration::from_millis(500);

/// What readiness is decided from, as plain values.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub stopping: bool,
    pub role: Role,
    /// The hubs this node links to (the roster's active hubs, or static relay peers), itself
    /// left out.
    pub hubs: BTreeSet<OrgId>,
    /// Peers with a link up now.
    pub linked: BTreeSet<OrgId>,
}

/// Ready, or why not (one line per reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub reasons: Vec<String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.reasons.is_empty()
    }

    /// "ready", or the reasons joined.
    pub fn line(&self) -> String {
        if self.is_ready() {
            "ready".to_string()
        } else {
            self.reasons.join("; ")
        }
    }
}

/// The rule: a stopping node is not ready; an agency is ready while at least one link to a
/// hub is up; a hub is ready while it runs.
pub fn readiness(facts: &Facts) -> Readiness {
    let mut reasons = Vec::new();
    if facts.stopping {
        reasons.push("shutting down".to_string());
    }
    if facts.role == Role::Agency {
        if facts.hubs.is_empty() {
            reasons.push("no hub to link to: the roster (or [[peer]] relays) names none".into());
        } else if facts.hubs.is_disjoint(&facts.linked) {
            let names: Vec<&str> = facts.hubs.iter().map(OrgId::as_str).collect();
            reasons.push(format!(
                "no link to any hub (hubs: {}); see the peers' last errors in status",
                names.join(", ")
            ));
        }
    }
    Readiness { reasons }
}

/// The facts of a running node.
pub fn facts_of(state: &NodeState) -> Facts {
    let hubs = match state.roster() {
        Some(roster) => roster
            .hubs()
            .into_iter()
            .filter_map(|h| OrgId::parse(&h.org).ok())
            .filter(|o| *o != state.org)
            .collect(),
        None => state
            .cfg
            .peer
            .iter()
            .filter(|p| p.relay)
            .filter_map(|p| OrgId::parse(&p.org).ok())
            .collect(),
    };
    let linked = state.peers.connected();
    Facts {
        stopping: state.is_stopping(),
        role: state.cfg.role,
        hubs,
        linked,
    }
}

pub fn of_state(state: &NodeState) -> Readiness {
    readiness(&facts_of(state))
}

/// Keeps gRPC health true: every service SERVING while the node runs (liveness), and the
/// overall service "" SERVING only while the node is ready. Logs each change of readiness.
pub async fn report(state: Arc<NodeState>, health: HealthReporter) {
    health
        .set_serving::<FederationServer<crate::federation::FederationService>>()
        .await;
    health
        .set_serving::<NodeStatusServer<crate::api::StatusService>>()
        .await;
    health
        .set_serving::<IndicatorsServer<crate::api::IndicatorsService>>()
        .await;
    let mut last: Option<Readiness> = None;
    loop {
        let now = of_state(&state);
        if last.as_ref() != Some(&now) {
            let status = if now.is_ready() {
                tracing::info!("ready");
                ServingStatus::Serving
            } else {
                tracing::warn!(reason = %now.line(), "not ready");
                ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
            last = Some(now);
        }
        if state.is_stopping() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(RECHECK) => {}
            _ = state.stopped() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).expect("org")
    }

    fn agency(hubs: &[&str], linked: &[&str]) -> Facts {
        Facts {
            stopping: false,
            role: Role::Agency,
            hubs: hubs.iter().map(|h| org(h)).collect(),
            linked: linked.iter().map(|h| org(h)).collect(),
        }
    }

    #[test]
    fn an_agency_is_ready_with_one_hub_linked_of_two() {
        assert!(readiness(&agency(&["HUB-A", "HUB-B"], &["HUB-B"])).is_ready());
    }

    #[test]
    fn an_agency_linked_only_to_non_hubs_is_not_ready_and_names_the_hubs() {
        let r = readiness(&agency(&["HUB-A", "HUB-B"], &["OTHER"]));
        assert!(!r.is_ready());
        assert!(
            r.line().contains("no link to any hub (hubs: HUB-A, HUB-B)"),
            "{}",
            r.line()
        );
    }

    #[test]
    fn an_agency_without_hubs_says_so() {
        let r = readiness(&agency(&[], &[]));
        assert!(r.line().contains("names none"), "{}", r.line());
    }

    #[test]
    fn a_hub_is_ready_alone_and_nobody_is_ready_while_stopping() {
        let hub = Facts {
            role: Role::Hub,
            ..Facts::default()
        };
        assert!(readiness(&hub).is_ready());
        let stopping = Facts {
            stopping: true,
            ..hub
        };
        assert_eq!(readiness(&stopping).line(), "shutting down");
    }
}
