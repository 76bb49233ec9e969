//! Slots for open connections, counted per client (an address, a certificate) under a total
//! per listener: one client that opens connections without end gets only its share, and the
//! listener's memory stays bounded whoever connects.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Where a client connects from, as counted: an IPv4 address, or an IPv6 /64 (one host's
/// usual share; a host holding a /64 has as many addresses as it likes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Source {
    pub(crate) fn of(ip: std::net::IpAddr) -> Source {
        use std::net::IpAddr;
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let mut prefix = [0; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    Source::V6(prefix)
                }
            },
        }
    }
}

/// The network a client connects from: an IPv4 /24 or an IPv6 /48, one site's usual share (a
/// site with a /48 has 65,536 /64s, each a [`Source`] of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    V4([u8; 3]),
    V6([u8; 6]),
}

impl Network {
    /// The network of `ip` (IPv4-mapped as IPv4).
    pub fn of(ip: std::net::IpAddr) -> Network {
        match Source::of(ip) {
            Source::V4([a, b, c, _]) => Network::V4([a, b, c]),
            Source::V6(p) => Network::V6([p[0], p[1], p[2], p[3], p[4], p[5]]),
        }
    }
}

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

/// Slots counted per address ([`Source`]) and per network ([`Network`]) under one total: a
/// connection takes one of each, so neither one host nor a few hosts of one site can take
/// every slot.
pub(crate) struct SourceSlots {
    per_address: Arc<Slots<Source>>,
    per_network: Arc<Slots<Network>>,
}

/// A connection's slots, given back when dropped.
pub(crate) type SourceSlot = (Slot<Source>, Slot<Network>);

/// Why a connection got no slot, by what is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceFull {
    /// The listener, with this many open.
    Listener(usize),
    /// Its address, holding this many.
    Address(usize),
    /// Its network, holding this many.
    Network(usize),
}

impl SourceSlots {
    /// `per_address` and `per_network` at once from one address and one network, `total` in
    /// all.
    pub(crate) fn new(per_address: usize, per_network: usize, total: usize) -> SourceSlots {
        SourceSlots {
            per_address: Slots::new(Bounds {
                per_client: per_address,
                total,
            }),
            per_network: Slots::new(Bounds {
                per_client: per_network,
                total,
            }),
        }
    }

    /// Slots for one more connection from `ip`, if the bounds allow it.
    pub(crate) fn take(&self, ip: std::net::IpAddr) -> Result<SourceSlot, SourceFull> {
        let address =
            Slots::take(&self.per_address, Source::of(ip)).map_err(|full| match full {
                Full::Listener(n) => SourceFull::Listener(n),
                Full::Client(n) => SourceFull::Address(n),
            })?;
        let network =
            Slots::take(&self.per_network, Network::of(ip)).map_err(|full| match full {
                Full::Listener(n) => SourceFull::Listener(n),
                Full::Client(n) => SourceFull::Network(n),
            })?;
        Ok((address, network))
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
    fn a_source_takes_a_slot_of_its_address_and_of_its_network() {
        let slots = SourceSlots::new(2, 3, 5);
        let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
        let a1 = slots.take(ip("192.0.2.1")).expect("first of its address");
        let _a2 = slots.take(ip("192.0.2.1")).expect("second of its address");
        assert_eq!(
            slots.take(ip("192.0.2.1")).err(),
            Some(SourceFull::Address(2))
        );
        let _b = slots.take(ip("192.0.2.9")).expect("third of its network");
        assert_eq!(
            slots.take(ip("192.0.2.10")).err(),
            Some(SourceFull::Network(3))
        );
        let _c = slots.take(ip("198.51.100.1")).expect("another network");
        let _d = slots.take(ip("203.0.113.1")).expect("the fifth in all");
        assert_eq!(
            slots.take(ip("203.0.113.2")).err(),
            Some(SourceFull::Listener(5))
        );
        drop(a1);
        slots
            .take(ip("192.0.2.10"))
            .expect("its network's slot given back");
    }

    #[test]
    fn an_ipv6_host_counts_once_per_64_and_a_mapped_ipv4_as_itself() {
        let ip = |s: &str| Source::of(s.parse().unwrap());
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        let slots = Slots::new(Bounds {
            per_client: 2,
            total: 10,
        });
        let _held: Vec<_> = ["2001:db8::1", "2001:db8::2"]
            .iter()
            .map(|a| Slots::take(&slots, ip(a)).unwrap())
            .collect();
        assert!(
            Slots::take(&slots, ip("2001:db8::3")).is_err(),
            "a third of the /64"
        );
    }

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
