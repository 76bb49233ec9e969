//! The status resources of recent POSTs (`GET …/status/{id}/`), each readable by the caller
//! that made it, kept within a count and a byte budget per caller and in all.

use std::collections::VecDeque;
use std::sync::Mutex;

use intelmesh_core::OrgId;
use intelmesh_interop::taxii::StatusResource;

/// Statuses kept for `GET …/status/{id}/`, the oldest forgotten first.
pub(super) const STATUSES_KEPT: usize = 1024;

/// Status resources of recent POSTs, each readable by the caller that made it. Bounded in
/// number and in objects named: a caller past its share forgets its own oldest first, so one
/// busy writer cannot push everyone else's out.
#[derive(Default)]
pub struct Statuses {
    kept: Mutex<VecDeque<(OrgId, String, StatusResource)>>,
}

/// Bytes all statuses kept may hold, and one caller's ([`weight`]); statuses one caller keeps.
const BYTES_KEPT: usize = 32 << 20;
const BYTES_PER_CALLER: usize = 8 << 20;
const STATUSES_PER_CALLER: usize = STATUSES_KEPT / 4;

/// About what a status holds in memory: its details' text and their allocations.
fn weight(s: &StatusResource) -> usize {
    const PER_DETAIL: usize = 96;
    [&s.successes, &s.failures, &s.pendings]
        .into_iter()
        .flatten()
        .map(|d| {
            let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
            PER_DETAIL + d.id.len() + text(&d.version) + text(&d.message)
        })
        .sum()
}

impl Statuses {
    pub fn keep(&self, org: &OrgId, caller: &str, status: StatusResource) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let new = weight(&status);
        let mine = |(o, c, _): &(OrgId, String, StatusResource)| o == org && c == caller;
        let mut own: usize = kept.iter().filter(|k| mine(k)).map(|k| weight(&k.2)).sum();
        let mut own_count = kept.iter().filter(|k| mine(k)).count();
        while own + new > BYTES_PER_CALLER || own_count >= STATUSES_PER_CALLER {
            let Some(oldest) = kept.iter().position(mine) else {
                break;
            };
            own -= kept.remove(oldest).map_or(0, |k| weight(&k.2));
            own_count -= 1;
        }
        let mut all: usize = kept.iter().map(|k| weight(&k.2)).sum();
        while kept.len() >= STATUSES_KEPT || (all + new > BYTES_KEPT && !kept.is_empty()) {
            all -= kept.pop_front().map_or(0, |k| weight(&k.2));
        }
        kept.push_back((org.clone(), caller.to_string(), status));
    }

    pub fn get(&self, org: &OrgId, caller: &str, id: &str) -> Option<StatusResource> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter()
            .find(|(o, c, s)| o == org && c == caller && s.id == id)
            .map(|(_, _, s)| s.clone())
    }
}

#[cfg(test)]
#[path = "statuses_tests.rs"]
mod tests;
