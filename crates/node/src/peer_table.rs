//! Live facts about each peer (configured, or admitted by the roster), for `status` and for
//! refusing a second link.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use intelmesh_core::OrgId;

/// Live facts about each configured peer, for `status` and for refusing a second link.
pub struct PeerTable {
    inner: Mutex<BTreeMap<OrgId, PeerState>>,
    /// The last link number given out: each link marks its peer down only if it is still the
    /// one marked up (an older link ending late must not mark a newer one down).
    links: std::sync::atomic::AtomicU64,
    /// How many peers are marked connected (asked by every link's sender at every round).
    up: std::sync::atomic::AtomicUsize,
    /// The relay (hub) peers marked connected, each with since when its link has waited on
    /// it for a frame, if it is waiting: a hub's senders ask it at every round
    /// (`federation::fan_out`), so it is kept apart from the whole table.
    relays: Mutex<BTreeMap<OrgId, Option<Instant>>>,
}

#[derive(Clone, Debug, Default)]
pub struct PeerState {
    pub connected: bool,
    pub address: String,
    pub last_heard_unix_ms: i64,
    pub last_error: String,
    pub entries_sent: u64,
    pub entries_received: u64,
    /// Protobuf-encoded size of every frame received from the peer (gRPC message bytes,
    /// without the 5-byte gRPC prefix, HTTP/2 or TLS framing), hello included.
    pub bytes_received: u64,
    /// Protobuf-encoded size of the entry frames sent to the peer.
    pub bytes_sent: u64,
    /// The peer's vector as it last reported it.
    pub vector: BTreeMap<String, u64>,
    /// The roster version and hash the peer announced in its hello (roster mode).
    pub roster_version: u64,
    pub roster_hash: Vec<u8>,
    /// At a hub, for an agency: another hub sends it other origins' entries first
    /// (`federation::fan_out`), as of this link's last round.
    pub other_hub_serves_first: bool,
    /// The number of the link marked up (see [`PeerTable::connect`]).
    link: u64,
    /// A link is up or being opened (`connected` once the peer took it): a second is refused.
    reserved: bool,
}

/// `f` of `map`'s value at `key`, inserted as the default first if absent: the key is cloned
/// only then. Peer facts keyed by origin (a peer's vector here, its view in `peer_view`) are
/// updated for every head of every progress frame a hub takes in.
pub(crate) fn update_or_default<K, Q, V, R>(
    map: &mut BTreeMap<K, V>,
    key: &Q,
    f: impl FnOnce(&mut V) -> R,
) -> R
where
    K: Borrow<Q> + Ord,
    Q: ToOwned<Owned = K> + Ord + ?Sized,
    V: Default,
{
    match map.get_mut(key) {
        Some(v) => f(v),
        None => f(map.entry(key.to_owned()).or_default()),
    }
}

impl PeerTable {
    pub(crate) fn new(orgs: impl Iterator<Item = OrgId>) -> PeerTable {
        PeerTable {
            inner: Mutex::new(orgs.map(|o| (o, PeerState::default())).collect()),
            links: std::sync::atomic::AtomicU64::new(0),
            up: std::sync::atomic::AtomicUsize::new(0),
            relays: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<OrgId, PeerState>> {
        // Peer facts are informational; a poisoned lock still holds usable data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the peer's one link for a link being opened at `address`; the link's number,
    /// which [`PeerTable::established`] and [`PeerTable::disconnect`] take, or `None` if a
    /// link with it is already up or being opened.
    pub fn connect(&self, org: &OrgId, address: String) -> Option<u64> {
        let mut t = self.lock();
        let s = t.entry(org.clone()).or_default();
        if s.reserved {
            return None;
        }
        let link = self
            .links
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        s.reserved = true;
        s.link = link;
        s.address = address;
        Some(link)
    }

    /// Marks the peer connected once it took `link` (a dialer: when the peer accepted the
    /// stream; a peer refusing every dial must never show up, even briefly), clearing the
    /// error of its last failure. `relay`: the peer is a hub ([`PeerTable::relays_up`]).
    pub fn established(&self, org: &OrgId, link: u64, relay: bool) {
        let mut t = self.lock();
        let s = t.entry(org.clone()).or_default();
        if !s.reserved || s.link != link || s.connected {
            return;
        }
        s.connected = true;
        if relay {
            self.relays_lock().insert(org.clone(), None);
        }
        self.up.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.last_heard_unix_ms = intelmesh_core::now_unix_ms();
        s.last_error.clear();
    }

    /// Marks the peer down if `link` is its link, with `error` as its last failure.
    pub fn disconnect(&self, org: &OrgId, link: u64, error: Option<String>) {
        let mut t = self.lock();
        let s = t.entry(org.clone()).or_default();
        if !s.reserved || s.link != link {
            return;
        }
        s.reserved = false;
        if std::mem::take(&mut s.connected) {
            self.up.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            self.relays_lock().remove(org);
        }
        if let Some(e) = error {
            s.last_error = e;
        }
    }

    /// Records why the peer is not dialed, unless a link with it is up (an inbound one).
    pub fn not_dialed(&self, org: &OrgId, why: String) {
        let mut t = self.lock();
        let s = t.entry(org.clone()).or_default();
        if !s.reserved {
            s.last_error = why;
        }
    }

    pub fn update(&self, org: &OrgId, f: impl FnOnce(&mut PeerState)) {
        let mut t = self.lock();
        f(t.entry(org.clone()).or_default());
    }

    /// [`PeerTable::update`] for a peer already in the table only.
    pub fn update_known(&self, org: &OrgId, f: impl FnOnce(&mut PeerState)) {
        if let Some(s) = self.lock().get_mut(org) {
            f(s);
        }
    }

    /// Whether a link with `org` is up; cheaper than a snapshot for a watcher that asks often.
    pub fn is_connected(&self, org: &OrgId) -> bool {
        self.lock().get(org).is_some_and(|s| s.connected)
    }

    /// The relay (hub) peers whose links are up.
    pub fn relays_up(&self) -> Vec<OrgId> {
        self.relays_lock().keys().cloned().collect()
    }

    /// Notes that the link to the relay `org`, if up, starts (or stops) waiting on it for a
    /// frame (`federation::heard`).
    pub fn relay_waiting(&self, org: &OrgId, waiting: bool) {
        if let Some(since) = self.relays_lock().get_mut(org) {
            *since = waiting.then(Instant::now);
        }
    }

    /// How long the link to the relay `org` has waited on it for a frame (zero if it is not
    /// waiting); `None` if the link is down.
    pub fn relay_unheard_for(&self, org: &OrgId) -> Option<Duration> {
        (self.relays_lock().get(org)).map(|since| since.map_or(Duration::ZERO, |t| t.elapsed()))
    }

    fn relays_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<OrgId, Option<Instant>>> {
        self.relays.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many links are up.
    pub fn connected_count(&self) -> usize {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> BTreeMap<OrgId, PeerState> {
        self.lock().clone()
    }

    /// `f` of each peer, in org order, read in place: a hub's table holds every member's
    /// vector, which a snapshot for each `Status` call or readiness check copied whole.
    pub fn map<R>(&self, mut f: impl FnMut(&OrgId, &PeerState) -> R) -> Vec<R> {
        self.lock().iter().map(|(o, p)| f(o, p)).collect()
    }

    /// The peers whose links are up.
    pub fn connected(&self) -> BTreeSet<OrgId> {
        (self.lock().iter())
            .filter(|(_, p)| p.connected)
            .map(|(o, _)| o.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_marks_its_peer_down_only_while_it_is_the_one_up() {
        let hub = OrgId::parse("SG-IGCI").unwrap();
        let table = PeerTable::new(std::iter::once(hub.clone()));
        let first = table.connect(&hub, "a".into()).expect("first link");
        assert_eq!(table.connect(&hub, "b".into()), None, "being opened");
        assert!(!table.is_connected(&hub), "not up before the peer took it");
        assert_eq!(table.connected_count(), 0);
        table.established(&hub, first, true);
        assert_eq!(table.connect(&hub, "b".into()), None, "already up");
        assert_eq!(table.connected_count(), 1);
        assert_eq!(table.relays_up(), std::slice::from_ref(&hub));
        table.disconnect(&hub, first, Some("closed".into()));
        assert_eq!(table.connected_count(), 0);
        assert!(table.relays_up().is_empty());
        let second = table.connect(&hub, "b".into()).expect("second link");
        // A late word of the first link neither marks the second up nor down.
        table.established(&hub, first, true);
        assert_eq!(table.connected_count(), 0);
        assert!(table.relays_up().is_empty());
        table.established(&hub, second, true);
        table.disconnect(&hub, first, Some("late".into()));
        assert_eq!(table.connected_count(), 1);
        assert_eq!(
            table.relays_up(),
            std::slice::from_ref(&hub),
            "a late end leaves the new link listed"
        );
        let s = &table.snapshot()[&hub];
        assert!(s.connected && s.last_error.is_empty(), "{s:?}");
        // Why a hub is not dialed is not said of an inbound link that is up.
        table.not_dialed(&hub, "not dialed".into());
        let s = &table.snapshot()[&hub];
        assert!(s.connected && s.last_error.is_empty(), "{s:?}");
        table.disconnect(&hub, second, None);
        assert!(table.relays_up().is_empty());
        table.not_dialed(&hub, "not dialed".into());
        let s = &table.snapshot()[&hub];
        assert!(!s.connected && s.last_error == "not dialed", "{s:?}");
    }

    #[test]
    fn a_value_is_updated_in_place_or_inserted_from_its_default() {
        let mut vector: BTreeMap<String, u64> = [("AU".to_string(), 3)].into();
        update_or_default(&mut vector, "AU", |held| *held = (*held).max(2));
        update_or_default(&mut vector, "BR", |held| *held = (*held).max(5));
        let raised = update_or_default(&mut vector, "AU", |held| {
            *held += 1;
            *held
        });
        assert_eq!(raised, 4);
        assert_eq!(
            vector,
            [("AU".to_string(), 4), ("BR".to_string(), 5)].into()
        );
    }

    #[test]
    fn only_relay_peers_are_listed_as_relays_up() {
        let (hub, agency) = (
            OrgId::parse("HUB-B").unwrap(),
            OrgId::parse("AU-AFP").unwrap(),
        );
        let table = PeerTable::new([hub.clone(), agency.clone()].into_iter());
        let to_hub = table.connect(&hub, "a".into()).expect("hub link");
        let to_agency = table.connect(&agency, "b".into()).expect("agency link");
        table.established(&hub, to_hub, true);
        table.established(&agency, to_agency, false);
        assert_eq!(table.connected_count(), 2);
        assert_eq!(table.relays_up(), std::slice::from_ref(&hub));
        table.disconnect(&agency, to_agency, None);
        assert_eq!(table.relays_up(), [hub]);
    }
}
