//! Which open connection a full web listener closes to make room for a new one. A listener
//! that only refused new connections once full would be held by whoever opened its last
//! slots: a few networks' worth of connections that never sign in would shut out every
//! analyst and tool for as long as they kept reconnecting. So a connection on which a caller
//! proved who it is (a request authenticated) is never closed for room; of the others, the
//! oldest of the network holding most of them goes, so a flood closes its own connections
//! before a newcomer from a network of its own.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::conn_slots::Network;

/// The connections of one listener, in the order they came.
pub(crate) struct Crowd {
    room: usize,
    open: Mutex<Open>,
}

struct Open {
    next: u64,
    by_arrival: BTreeMap<u64, Member>,
}

struct Member {
    network: Network,
    proven: Arc<AtomicBool>,
    close: Arc<Notify>,
}

/// One connection's place, left when dropped.
pub(crate) struct Place {
    crowd: Arc<Crowd>,
    arrival: u64,
    /// Set once a request on the connection authenticated its caller.
    pub proven: Arc<AtomicBool>,
    /// Notified when the connection is closed to make room.
    pub close: Arc<Notify>,
}

/// A connection as the choice of whom to close sees it: its arrival, its network, and
/// whether its caller proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub arrival: u64,
    pub network: Network,
    pub proven: bool,
}

/// The connection to close for room: the oldest unproven one of the network holding most
/// unproven connections (of two such networks, the one whose oldest came first); none if
/// every connection is proven.
pub(crate) fn to_close(open: impl IntoIterator<Item = Seen>) -> Option<u64> {
    let mut by_network: HashMap<Network, (usize, u64)> = HashMap::new();
    for s in open.into_iter().filter(|s| !s.proven) {
        let (count, oldest) = by_network.entry(s.network).or_insert((0, s.arrival));
        *count += 1;
        *oldest = (*oldest).min(s.arrival);
    }
    by_network
        .into_values()
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, oldest)| oldest)
}

impl Crowd {
    /// A listener keeping at most `room` connections.
    pub(crate) fn new(room: usize) -> Arc<Crowd> {
        Arc::new(Crowd {
            room,
            open: Mutex::new(Open {
                next: 0,
                by_arrival: BTreeMap::new(),
            }),
        })
    }

    /// A place for a connection from `ip`, closing another (see [`to_close`]) if the
    /// listener is full; none if every connection open is proven.
    pub(crate) fn enter(this: &Arc<Crowd>, ip: IpAddr) -> Option<Place> {
        let mut open = this.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.by_arrival.len() >= this.room {
            let seen = open.by_arrival.iter().map(|(&arrival, m)| Seen {
                arrival,
                network: m.network,
                proven: m.proven.load(Ordering::Relaxed),
            });
            let closed = to_close(seen).and_then(|a| open.by_arrival.remove(&a))?;
            closed.close.notify_one();
        }
        let arrival = open.next;
        open.next += 1;
        let (proven, close) = (Arc::new(AtomicBool::new(false)), Arc::new(Notify::new()));
        open.by_arrival.insert(
            arrival,
            Member {
                network: Network::of(ip),
                proven: Arc::clone(&proven),
                close: Arc::clone(&close),
            },
        );
        Some(Place {
            crowd: Arc::clone(this),
            arrival,
            proven,
            close,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.crowd.open.lock().unwrap_or_else(|p| p.into_inner());
        open.by_arrival.remove(&self.arrival);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Network {
        Network::of(s.parse().unwrap())
    }

    fn seen(arrival: u64, ip: &str, proven: bool) -> Seen {
        Seen {
            arrival,
            network: net(ip),
            proven,
        }
    }

    #[test]
    fn the_oldest_unproven_of_the_network_holding_most_is_closed() {
        let open = [
            seen(0, "198.51.100.1", false),
            seen(1, "192.0.2.1", true),
            seen(2, "192.0.2.2", false),
            seen(3, "192.0.2.3", false),
            seen(4, "203.0.113.9", false),
        ];
        assert_eq!(to_close(open), Some(2), "192.0.2.0/24 holds two unproven");
        // Tied networks: the one whose oldest came first.
        let tied = [seen(5, "192.0.2.1", false), seen(3, "198.51.100.1", false)];
        assert_eq!(to_close(tied), Some(3));
        // Proven connections are never chosen, however many one network holds.
        let proven = [
            seen(0, "192.0.2.1", true),
            seen(1, "192.0.2.2", true),
            seen(2, "198.51.100.1", false),
        ];
        assert_eq!(to_close(proven), Some(2));
        assert_eq!(to_close([seen(0, "192.0.2.1", true)]), None);
        assert_eq!(to_close([]), None);
        // IPv6 counts by /48.
        let v6 = [
            seen(0, "2001:db8:1::1", false),
            seen(1, "2001:db8:2::1", false),
            seen(2, "2001:db8:2:ffff::1", false),
        ];
        assert_eq!(to_close(v6), Some(1));
    }

    #[tokio::test]
    async fn a_full_crowd_closes_one_for_a_newcomer_and_keeps_the_proven() {
        let crowd = Crowd::new(3);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let analyst = Crowd::enter(&crowd, ip("198.51.100.7")).expect("room");
        analyst.proven.store(true, Ordering::Relaxed);
        let flood: Vec<Place> = ["192.0.2.1", "192.0.2.2"]
            .iter()
            .map(|a| Crowd::enter(&crowd, ip(a)).expect("room"))
            .collect();
        let newcomer = Crowd::enter(&crowd, ip("203.0.113.1")).expect("room made");
        // The flood's oldest was told to close, and its place is already free.
        tokio::time::timeout(std::time::Duration::from_secs(1), flood[0].close.notified())
            .await
            .expect("the flood's oldest is closed");
        assert_eq!(crowd.open.lock().unwrap().by_arrival.len(), 3);
        // Two proven and one unproven left: that one goes for the next newcomer, and once
        // every connection is proven there is no room.
        newcomer.proven.store(true, Ordering::Relaxed);
        let last = Crowd::enter(&crowd, ip("192.0.2.9")).expect("the flood's second closed");
        tokio::time::timeout(std::time::Duration::from_secs(1), flood[1].close.notified())
            .await
            .expect("the flood's second is closed");
        last.proven.store(true, Ordering::Relaxed);
        assert!(Crowd::enter(&crowd, ip("192.0.2.10")).is_none());
        drop(last);
        assert!(
            Crowd::enter(&crowd, ip("192.0.2.10")).is_some(),
            "a place left"
        );
        drop(analyst);
    }
}
