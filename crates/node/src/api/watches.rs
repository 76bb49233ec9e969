//! Open `Watch` streams, bounded per calling service and in all: each one is a task that reads
//! the store again on every change, so their number is what a caller could make the node do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use intelmesh_core::OrgId;
use tonic::Status;

/// Watches one service (org and name) may have open at once.
pub const PER_CALLER: usize = 16;
/// Watches open at once on the node.
pub const IN_ALL: usize = 256;

/// The count of open watches per caller.
#[derive(Default)]
pub struct Watches {
    open: Mutex<HashMap<(OrgId, String), usize>>,
}

/// One open watch; dropping it (the stream ended) frees its place.
pub struct Open {
    watches: Arc<Watches>,
    caller: (OrgId, String),
}

impl Watches {
    /// A place for a new watch of `caller`, or why there is none.
    pub fn open(self: &Arc<Self>, caller: (OrgId, String)) -> Result<Open, Status> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let all: usize = open.values().sum();
        let mine = open.get(&caller).copied().unwrap_or(0);
        if mine >= PER_CALLER {
            return Err(Status::resource_exhausted(format!(
                "{} of {} has {PER_CALLER} watches open, the most one service may: close one",
                caller.1, caller.0
            )));
        }
        if all >= IN_ALL {
            return Err(Status::resource_exhausted(format!(
                "this node serves {IN_ALL} watches already: try again later"
            )));
        }
        *open.entry(caller.clone()).or_default() += 1;
        Ok(Open {
            watches: Arc::clone(self),
            caller,
        })
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut open = self.watches.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(org: &str, name: &str) -> (OrgId, String) {
        (OrgId::parse(org).unwrap(), name.to_string())
    }

    #[test]
    fn watches_are_bounded_per_caller_and_in_all_and_freed_when_dropped() {
        let w = Arc::new(Watches::default());
        let mine: Vec<Open> = (0..PER_CALLER)
            .map(|_| w.open(caller("AU-AFP", "soc")).unwrap())
            .collect();
        let refused = w.open(caller("AU-AFP", "soc")).err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("soc of AU-AFP"), "{refused}");
        // Another service of the same org has its own share.
        let other = w.open(caller("AU-AFP", "firewall")).unwrap();
        drop(mine);
        drop(other);
        assert!(w.open.lock().unwrap().is_empty());
        let many: Vec<Open> = (0..IN_ALL)
            .map(|i| {
                w.open(caller("BR-PF", &format!("s{}", i / PER_CALLER)))
                    .unwrap()
            })
            .collect();
        let full = w.open(caller("FR-PN", "one")).err().unwrap();
        assert!(full.message().contains("256 watches already"), "{full}");
        drop(many);
        assert!(w.open(caller("FR-PN", "one")).is_ok());
    }
}
