//! Slots for open connections, counted per client (an address, a certificate) under a total
//! per listener: one client that opens connections without end gets only its share, and the
//! listener's memory stays bounded whoever connects.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// How many connections one listener keeps open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// At once from one client.
    pub per_client: usize,
    /// At once from everyone.
    pub total: usize,
}

/// Why a connection got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Full {
    #[error("{0} connections are already open on this listener")]
    Listener(usize),
    #[error("this client already holds {0} open connections")]
    Client(usize),
}

/// The open connections of one listener.
pub(crate) struct Slots<K> {
    bounds: Bounds,
    open: Mutex<Open<K>>,
}

struct Open<K> {
    by_client: HashMap<K, usize>,
    total: usize,
}

/// One open connection of `client`, given back when dropped.
pub(crate) struct Slot<K: Eq + Hash> {
    slots: Arc<Slots<K>>,
    client: K,
}

impl<K: Eq + Hash + Clone> Slots<K> {
    pub(crate) fn new(bounds: Bounds) -> Arc<Slots<K>> {
        Arc::new(Slots {
            bounds,
            open: Mutex::new(Open {
                by_client: HashMap::new(),
                total: 0,
            }),
        })
    }

    /// A slot for one more connection of `client`, if the bounds allow it.
    pub(crate) fn take(this: &Arc<Slots<K>>, client: K) -> Result<Slot<K>, Full> {
        let mut open = this.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= this.bounds.total {
            return Err(Full::Listener(open.total));
        }
        let held = open.by_client.get(&client).copied().unwrap_or(0);
        if held >= this.bounds.per_client {
            return Err(Full::Client(held));
        }
        open.by_client.insert(client.clone(), held + 1);
        open.total += 1;
        Ok(Slot {
            slots: Arc::clone(this),
            client,
        })
    }
}

impl<K: Eq + Hash> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_share_under_the_total() {
        let slots = Slots::new(Bounds {
            per_client: 2,
            total: 3,
        });
        let a1 = Slots::take(&slots, "a").expect("first of a");
        let _a2 = Slots::take(&slots, "a").expect("second of a");
        assert_eq!(Slots::take(&slots, "a").err(), Some(Full::Client(2)));
        let _b1 = Slots::take(&slots, "b").expect("b has its own share");
        assert_eq!(Slots::take(&slots, "c").err(), Some(Full::Listener(3)));
        drop(a1);
        let _a3 = Slots::take(&slots, "a").expect("a slot given back is taken again");
        assert_eq!(Slots::take(&slots, "b").err(), Some(Full::Listener(3)));
    }

    #[test]
    fn a_client_whose_connections_all_closed_is_forgotten() {
        let slots = Slots::new(Bounds {
            per_client: 1,
            total: 10,
        });
        drop(Slots::take(&slots, 7u32).expect("slot"));
        let open = slots.open.lock().expect("lock");
        assert!(open.by_client.is_empty());
        assert_eq!(open.total, 0);
    }
}
