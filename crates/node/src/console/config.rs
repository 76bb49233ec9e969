//! The `[console]` section of a hub's config: where the operators' browser console listens.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::Role;
use crate::preflight::Finding;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The HTTPS listener (e.g. `127.0.0.1:7703`). Its certificate and key are the API
    /// listener's; callers need an admin certificate of this hub from the API's client CA.
    pub listen: SocketAddr,
}

impl ConsoleConfig {
    /// Mistakes visible without starting: not a roster-mode hub, a listener shared.
    pub fn problems(
        &self,
        role: Role,
        roster_mode: bool,
        other_listeners: &[(&str, SocketAddr)],
    ) -> Vec<Finding> {
        let mut found = Vec::new();
        if role != Role::Hub {
            found.push(Finding::new(
                "[console]",
                "the console is served by hubs only: remove [console] from an agency's config",
            ));
        } else if !roster_mode {
            found.push(Finding::new(
                "[console]",
                "the console shows a roster-mode federation: this hub has no [roster] section",
            ));
        }
        for (setting, addr) in other_listeners {
            if crate::config::clashes(*addr, self.listen) {
                found.push(Finding::new(
                    "console.listen",
                    format!("{addr} is also {setting}: give the console its own port"),
                ));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_roster_mode_hub_on_its_own_port_may_serve_it() {
        let cfg = ConsoleConfig {
            listen: "127.0.0.1:7703".parse().unwrap(),
        };
        assert!(cfg.problems(Role::Hub, true, &[]).is_empty());
        let agency = cfg.problems(Role::Agency, true, &[]);
        assert_eq!(agency.len(), 1);
        assert!(agency[0].problem.contains("hubs only"), "{agency:?}");
        let stat = cfg.problems(Role::Hub, false, &[]);
        assert!(stat[0].problem.contains("no [roster]"), "{stat:?}");
        let shared = cfg.problems(Role::Hub, true, &[("api.listen", cfg.listen)]);
        assert_eq!(shared[0].setting, "console.listen");
        assert!(
            shared[0].problem.contains("is also api.listen"),
            "{shared:?}"
        );
    }
}
