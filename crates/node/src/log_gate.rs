//! WARN lines a remote host's actions produce (a refused handshake), at most one per host and
//! kind per interval: the rest are counted and said with the next line let through, so a host
//! reconnecting as fast as it can fills no disk with logs. Data in, data out: the caller
//! passes the time; the table is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::conn_slots::Source;

/// How often one host's lines of one kind are let through.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Hosts followed at once: past it, those whose interval is over are forgotten, then all.
const MAX_HOSTS: usize = 4096;

/// Per host (an IPv6 host by its /64) and kind: when a line was last let through, and how
/// many were held back since.
#[derive(Default)]
pub struct LogGate {
    hosts: Mutex<HashMap<HostKind, (Instant, u64)>>,
}

/// A host and the kind of line it caused.
type HostKind = (Source, &'static str);

impl LogGate {
    /// Whether to write a line of `kind` about `ip` at `now`; if so, how many were held back
    /// since the last one.
    pub fn pass(&self, ip: IpAddr, kind: &'static str, now: Instant) -> Option<u64> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let key = (Source::of(ip), kind);
        if let Some((last, held)) = hosts.get_mut(&key) {
            if now.saturating_duration_since(*last) < INTERVAL {
                *held += 1;
                return None;
            }
            let since = *held;
            *last = now;
            *held = 0;
            return Some(since);
        }
        if hosts.len() >= MAX_HOSTS {
            hosts.retain(|_, (last, _)| now.saturating_duration_since(*last) < INTERVAL);
            if hosts.len() >= MAX_HOSTS {
                hosts.clear();
            }
        }
        hosts.insert(key, (now, 0));
        Some(0)
    }
}

/// One source's WARN lines of one kind (a link's refusals), at most one per [`INTERVAL`]: the
/// rest are counted and said with the next line let through. A peer that sends a frame of a
/// thousand refused entries, frame after frame, writes a line every ten seconds, not one per
/// entry.
#[derive(Default)]
pub struct LineGate {
    last: Option<Instant>,
    held: u64,
}

impl LineGate {
    /// Whether to write a line for `count` more events at `now`; if so, how many events the
    /// line stands for (those held back since the last line, and these).
    pub fn pass(&mut self, count: usize, now: Instant) -> Option<u64> {
        self.held += count as u64;
        if count == 0
            || self
                .last
                .is_some_and(|l| now.saturating_duration_since(l) < INTERVAL)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gate_lets_one_line_through_per_interval_counting_the_rest() {
        let mut gate = LineGate::default();
        let t0 = Instant::now();
        assert_eq!(gate.pass(0, t0), None, "nothing to say");
        assert_eq!(gate.pass(1024, t0), Some(1024));
        assert_eq!(gate.pass(1024, t0 + Duration::from_secs(1)), None);
        assert_eq!(gate.pass(5, t0 + INTERVAL / 2), None);
        assert_eq!(gate.pass(1, t0 + INTERVAL), Some(1030));
        assert_eq!(gate.pass(0, t0 + INTERVAL * 3), None);
        assert_eq!(gate.pass(2, t0 + INTERVAL * 3), Some(2));
    }

    #[test]
    fn one_line_per_host_and_kind_per_interval_and_the_rest_counted() {
        let gate = LogGate::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(gate.pass(a, "refused", t0), Some(0));
        for _ in 0..5 {
            assert_eq!(gate.pass(a, "refused", t0 + Duration::from_secs(1)), None);
        }
        // Another host, another kind: their own.
        assert_eq!(gate.pass(b, "refused", t0), Some(0));
        assert_eq!(gate.pass(a, "timeout", t0), Some(0));
        // The interval over: let through, saying how many were held back.
        assert_eq!(gate.pass(a, "refused", t0 + INTERVAL), Some(5));
        assert_eq!(gate.pass(a, "refused", t0 + INTERVAL), None);
        // Bounded, whatever the number of hosts.
        for i in 0..2 * MAX_HOSTS as u32 {
            gate.pass(IpAddr::V4(i.to_be_bytes().into()), "refused", t0);
        }
        assert!(gate.hosts.lock().unwrap().len() <= MAX_HOSTS);
    }
}
