//! Failed password checks per client address: an address past [`FAILURES_PER_WINDOW`] wrong
//! passwords in [`WINDOW`] is refused without a check until the window ends, so one host
//! guessing passwords cannot hold the few argon2 checks the node runs at once.
//!
//! Data in, data out: the caller passes the time; the table is bounded ([`MAX_ADDRESSES`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::conn_slots::Source;

/// Wrong passwords an address may send in one window.
pub const FAILURES_PER_WINDOW: u32 = 10;

/// How long failures count against an address.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Addresses followed at once: past it, windows already over are forgotten, and if none is,
/// the oldest window goes.
const MAX_ADDRESSES: usize = 4096;

/// The addresses that failed lately: failures in the current window and when it began.
#[derive(Default)]
pub struct Failures {
    by_address: HashMap<Source, (u32, Instant)>,
}

impl Failures {
    /// When `ip` may try again, if it is refused now.
    pub fn refused_until(&self, ip: IpAddr, now: Instant) -> Option<Instant> {
        let &(count, since) = self.by_address.get(&Source::of(ip))?;
        let ends = since + WINDOW;
        (count >= FAILURES_PER_WINDOW && now < ends).then_some(ends)
    }

    /// Counts a wrong password from `ip`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        let key = Source::of(ip);
        if !self.by_address.contains_key(&key) && self.by_address.len() >= MAX_ADDRESSES {
            self.by_address
                .retain(|_, (_, since)| now < *since + WINDOW);
            if self.by_address.len() >= MAX_ADDRESSES {
                let oldest = self.by_address.iter().min_by_key(|(_, (_, since))| *since);
                if let Some(oldest) = oldest.map(|(k, _)| *k) {
                    self.by_address.remove(&oldest);
                }
            }
        }
        let entry = self.by_address.entry(key).or_insert((0, now));
        if now >= entry.1 + WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_refused_past_its_failures_until_the_window_ends() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        for _ in 0..FAILURES_PER_WINDOW - 1 {
            f.failed(ip("192.0.2.7"), t0);
        }
        assert_eq!(f.refused_until(ip("192.0.2.7"), t0), None);
        f.failed(ip("192.0.2.7"), t0);
        assert_eq!(f.refused_until(ip("192.0.2.7"), t0), Some(t0 + WINDOW));
        // The same host over IPv4-mapped IPv6; another host is not refused.
        assert!(f.refused_until(ip("::ffff:192.0.2.7"), t0).is_some());
        assert_eq!(f.refused_until(ip("192.0.2.8"), t0), None);
        // Once the window is over, the address starts afresh.
        let later = t0 + WINDOW;
        assert_eq!(f.refused_until(ip("192.0.2.7"), later), None);
        f.failed(ip("192.0.2.7"), later);
        assert_eq!(f.refused_until(ip("192.0.2.7"), later), None);
    }

    #[test]
    fn ipv6_hosts_count_by_their_64_and_the_table_is_bounded() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        for i in 0..FAILURES_PER_WINDOW {
            f.failed(ip(&format!("2001:db8:1:2::{i:x}")), t0);
        }
        assert!(f.refused_until(ip("2001:db8:1:2::ffff"), t0).is_some());
        assert!(f.refused_until(ip("2001:db8:1:3::1"), t0).is_none());
        for i in 0..2 * MAX_ADDRESSES as u32 {
            let at = t0 + Duration::from_millis(u64::from(i));
            f.failed(IpAddr::V4(i.to_be_bytes().into()), at);
        }
        assert!(f.by_address.len() <= MAX_ADDRESSES);
    }
}
