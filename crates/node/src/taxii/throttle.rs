//! Failed password checks, per client address and per user: an address past
//! [`FAILURES_PER_WINDOW`] wrong passwords in [`WINDOW`] is refused without a check until the
//! window ends, so one host guessing passwords cannot hold the few argon2 checks the node runs
//! at once; a user past [`USER_FAILURES_PER_WINDOW`] in [`USER_WINDOW`] likewise, so guesses
//! spread over many addresses (a whole IPv6 /48) cannot try one user's password at the rate
//! the checks allow (a password remembered as right is still taken: see `auth`); and a
//! network past [`NETWORK_FAILURES_PER_WINDOW`], so a site with many addresses cannot keep
//! every check busy with made-up names.
//!
//! Data in, data out: the caller passes the time; each table is bounded ([`MAX_KEYS`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::conn_slots::Source;

/// Wrong passwords an address may send in one window.
pub const FAILURES_PER_WINDOW: u32 = 10;

/// How long failures count against an address.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Wrong passwords a network (an IPv4 /24, an IPv6 /48: one site's usual share) may send in
/// one [`WINDOW`], whatever addresses of it they come from: a site with a /48 has 65,536 /64s,
/// each of which would otherwise get its own [`FAILURES_PER_WINDOW`].
pub const NETWORK_FAILURES_PER_WINDOW: u32 = 50;

pub use crate::conn_slots::Network;

/// Wrong passwords for one user in one [`USER_WINDOW`], from anywhere: about 7,000 guesses a
/// day at most, where the checks alone would allow millions.
pub const USER_FAILURES_PER_WINDOW: u32 = 50;

/// How long failures count against a user.
pub const USER_WINDOW: Duration = Duration::from_secs(600);

/// Keys followed at once: past it, windows already over are forgotten, and if none is, the
/// oldest window goes.
const MAX_KEYS: usize = 4096;

/// The keys (addresses, users) that failed lately: failures in the current window and when it
/// began.
pub struct Failures<K> {
    by_key: HashMap<K, (u32, Instant)>,
    allowed: u32,
    window: Duration,
}

impl Default for Failures<Source> {
    fn default() -> Self {
        Failures::new(FAILURES_PER_WINDOW, WINDOW)
    }
}

impl<K: Hash + Eq + Clone> Failures<K> {
    /// A table refusing a key past `allowed` failures in `window`.
    pub fn new(allowed: u32, window: Duration) -> Failures<K> {
        Failures {
            by_key: HashMap::new(),
            allowed,
            window,
        }
    }

    /// When `key` may try again, if it is refused now.
    pub fn refused_until(&self, key: &K, now: Instant) -> Option<Instant> {
        let &(count, since) = self.by_key.get(key)?;
        let ends = since + self.window;
        (count >= self.allowed && now < ends).then_some(ends)
    }

    /// Counts a wrong password of `key`.
    pub fn failed(&mut self, key: K, now: Instant) {
        let window = self.window;
        if !self.by_key.contains_key(&key) && self.by_key.len() >= MAX_KEYS {
            self.by_key.retain(|_, (_, since)| now < *since + window);
            if self.by_key.len() >= MAX_KEYS {
                let oldest = self.by_key.iter().min_by_key(|(_, (_, since))| *since);
                if let Some(oldest) = oldest.map(|(k, _)| k.clone()) {
                    self.by_key.remove(&oldest);
                }
            }
        }
        let entry = self.by_key.entry(key).or_insert((0, now));
        if now >= entry.1 + window {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

/// Unknown user names share [`MAX_KEYS`] buckets, a name's chosen by a hash keyed at random
/// per process. The table of names therefore never evicts one: were unknown names kept by
/// name in a bounded table, enough other names would push out one refused lately, and a
/// guesser would see it answered again where a configured user (in a table no name can push
/// out of) stays refused, and so tell which names exist.
pub struct UnknownNames {
    failures: Failures<u16>,
    hasher: std::collections::hash_map::RandomState,
}

impl UnknownNames {
    pub fn new(allowed: u32, window: Duration) -> UnknownNames {
        UnknownNames {
            failures: Failures::new(allowed, window),
            hasher: Default::default(),
        }
    }

    fn bucket(&self, name: &str) -> u16 {
        use std::hash::BuildHasher;
        (self.hasher.hash_one(name) % MAX_KEYS as u64) as u16
    }

    /// When `name` may be tried again, if it is refused now.
    pub fn refused_until(&self, name: &str, now: Instant) -> Option<Instant> {
        self.failures.refused_until(&self.bucket(name), now)
    }

    /// Counts a wrong password for `name`.
    pub fn failed(&mut self, name: &str, now: Instant) {
        let bucket = self.bucket(name);
        self.failures.failed(bucket, now);
    }
}

/// The address table's key for `ip` (an IPv6 host by its /64, IPv4-mapped as IPv4).
pub fn source(ip: IpAddr) -> Source {
    Source::of(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_one_network_share_its_failures() {
        let mut f = Failures::new(NETWORK_FAILURES_PER_WINDOW, WINDOW);
        let t0 = Instant::now();
        // One guess from each of many /64s of one /48.
        for i in 0..NETWORK_FAILURES_PER_WINDOW {
            f.failed(Network::of(ip(&format!("2001:db8:7:{i:x}::1"))), t0);
        }
        assert!(f
            .refused_until(&Network::of(ip("2001:db8:7:ffff::9")), t0)
            .is_some());
        assert!(f
            .refused_until(&Network::of(ip("2001:db8:8::1")), t0)
            .is_none());
        assert_eq!(
            Network::of(ip("::ffff:198.51.100.7")),
            Network::of(ip("198.51.100.200"))
        );
        assert_ne!(
            Network::of(ip("198.51.100.7")),
            Network::of(ip("198.51.101.7"))
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_refused_past_its_failures_until_the_window_ends() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        for _ in 0..FAILURES_PER_WINDOW - 1 {
            f.failed(source(ip("192.0.2.7")), t0);
        }
        assert_eq!(f.refused_until(&source(ip("192.0.2.7")), t0), None);
        f.failed(source(ip("192.0.2.7")), t0);
        assert_eq!(
            f.refused_until(&source(ip("192.0.2.7")), t0),
            Some(t0 + WINDOW)
        );
        // The same host over IPv4-mapped IPv6; another host is not refused.
        assert!(f
            .refused_until(&source(ip("::ffff:192.0.2.7")), t0)
            .is_some());
        assert_eq!(f.refused_until(&source(ip("192.0.2.8")), t0), None);
        // Once the window is over, the address starts afresh.
        let later = t0 + WINDOW;
        assert_eq!(f.refused_until(&source(ip("192.0.2.7")), later), None);
        f.failed(source(ip("192.0.2.7")), later);
        assert_eq!(f.refused_until(&source(ip("192.0.2.7")), later), None);
    }

    #[test]
    fn ipv6_hosts_count_by_their_64_and_the_table_is_bounded() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        for i in 0..FAILURES_PER_WINDOW {
            f.failed(source(ip(&format!("2001:db8:1:2::{i:x}"))), t0);
        }
        assert!(f
            .refused_until(&source(ip("2001:db8:1:2::ffff")), t0)
            .is_some());
        assert!(f
            .refused_until(&source(ip("2001:db8:1:3::1")), t0)
            .is_none());
        for i in 0..2 * MAX_KEYS as u32 {
            let at = t0 + Duration::from_millis(u64::from(i));
            f.failed(source(IpAddr::V4(i.to_be_bytes().into())), at);
        }
        assert!(f.by_key.len() <= MAX_KEYS);
    }

    /// However many other unknown names fail after it, an unknown name refused stays refused
    /// until its window ends, as a configured user does.
    #[test]
    fn an_unknown_name_refused_is_not_pushed_out_by_other_names() {
        let mut names = UnknownNames::new(USER_FAILURES_PER_WINDOW, USER_WINDOW);
        let t0 = Instant::now();
        for _ in 0..USER_FAILURES_PER_WINDOW {
            names.failed("nobody", t0);
        }
        assert!(names.refused_until("nobody", t0).is_some());
        for i in 0..4 * MAX_KEYS {
            let at = t0 + Duration::from_millis(i as u64);
            names.failed(&format!("n{i}"), at);
        }
        let later = t0 + Duration::from_secs(60);
        assert_eq!(names.refused_until("nobody", later), Some(t0 + USER_WINDOW));
        assert!(names.failures.by_key.len() <= MAX_KEYS);
        assert_eq!(names.refused_until("nobody", t0 + USER_WINDOW), None);
    }

    #[test]
    fn a_user_is_refused_past_its_failures_from_any_address() {
        let mut f = Failures::new(USER_FAILURES_PER_WINDOW, USER_WINDOW);
        let t0 = Instant::now();
        let soc = "soc".to_string();
        for _ in 0..USER_FAILURES_PER_WINDOW - 1 {
            f.failed(soc.clone(), t0);
        }
        assert_eq!(f.refused_until(&soc, t0), None);
        f.failed(soc.clone(), t0);
        assert_eq!(f.refused_until(&soc, t0), Some(t0 + USER_WINDOW));
        assert_eq!(f.refused_until(&"analyst".to_string(), t0), None);
        assert_eq!(f.refused_until(&soc, t0 + USER_WINDOW), None);
    }
}
