//! `[limits]` of the node config: the bounds that keep a node's memory and time in check
//! whatever its peers and callers do, with their defaults and the checks a config's values
//! must pass.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::preflight::Finding;

/// Bounds that keep a node's memory and time in check whatever its peers do.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message accepted, either direction.
    pub max_message_bytes: usize,
    /// Most entries in one EntryBatch frame, either direction.
    pub max_batch_entries: usize,
    /// Frames queued towards one peer before its sender waits.
    pub peer_queue_frames: usize,
    pub heartbeat_ms: u64,
    /// A link that hears nothing for this long is cut.
    pub dead_after_ms: u64,
    /// A peer that does not take a queued frame for this long is cut.
    pub stall_after_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Deadline for a whole connection set-up, either side: TCP connect, TLS handshake and the
    /// opening of the Federation stream. A peer that accepts TCP and never finishes TLS must not
    /// hold a dialer (or an acceptor's slot) forever.
    pub connect_timeout_ms: u64,
    /// Entries kept per origin that cannot be verified yet (their signing key is not in this
    /// node's key list); checked again when the key list changes.
    pub unverified_per_origin: usize,
    /// Bytes of such entries kept across all origins.
    pub unverified_total_bytes: usize,
    /// An HTTP connection (TAXII, console, metrics) on which no request is worked on and no
    /// piece of an answer taken for this long is closed, and a request's headers must arrive
    /// within it: a client that opens connections and sends nothing, a byte now and then, or
    /// only HTTP/2 pings, must not hold the listener's slots.
    pub http_idle_ms: u64,
    /// Connections one client certificate may hold open at once on each gRPC listener (API,
    /// federation); one more is closed once its handshake shows whose it is. A stolen
    /// certificate must not let its holder take every slot of a listener.
    pub connections_per_client: usize,
    /// API calls one client certificate may have in flight at once, over all its
    /// connections; one more is answered RESOURCE_EXHAUSTED before its request is read. Each
    /// holds up to `max_message_bytes` while it is received, and its answer until it is sent
    /// (a Watch holds one while it runs).
    pub calls_per_client: usize,
    /// TLS handshakes one client address (an IPv4 address, an IPv6 /64) may have under way at
    /// once on each gRPC listener; one more connection is closed at once. A host opening
    /// connections that never finish their handshake must not hold every handshake slot and
    /// keep members from dialling in. Nodes sharing one address (a bench of many on loopback)
    /// need it higher.
    pub handshakes_per_address: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 8 << 20,
            max_batch_entries: 1024,
            peer_queue_frames: 8,
            heartbeat_ms: 2_000,
            dead_after_ms: 10_000,
            stall_after_ms: 10_000,
            backoff_min_ms: 100,
            backoff_max_ms: 5_000,
            connect_timeout_ms: 10_000,
            unverified_per_origin: 1_024,
            unverified_total_bytes: 16 << 20,
            http_idle_ms: 60_000,
            connections_per_client: 64,
            calls_per_client: 128,
            handshakes_per_address: 16,
        }
    }
}

impl Limits {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    pub fn dead_after(&self) -> Duration {
        Duration::from_millis(self.dead_after_ms)
    }
    pub fn stall_after(&self) -> Duration {
        Duration::from_millis(self.stall_after_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn http_idle(&self) -> Duration {
        Duration::from_millis(self.http_idle_ms)
    }
    /// The HTTP/2 flow-control window of a link, each way: one whole message, so a peer's
    /// frame crosses at once, and what a link may buffer stays one message.
    pub fn flow_window(&self) -> u32 {
        u32::try_from(self.max_message_bytes).unwrap_or(u32::MAX)
    }

    /// Limits that would stop the node working: zeros (no batch, no queue, a dial loop without
    /// pause), a heartbeat slower than the dead-link deadline (idle links cut), messages too
    /// small for the largest legal entry, and durations no one means (over a day).
    pub fn problems(&self) -> Vec<Finding> {
        let mut found = Vec::new();
        let mut at_least_one = |setting: &str, value: u64| {
            if value == 0 {
                found.push(Finding::new(
                    format!("limits.{setting}"),
                    "is 0: it must be at least 1 (leave it out for the default)",
                ));
            }
        };
        at_least_one("max_batch_entries", self.max_batch_entries as u64);
        at_least_one("peer_queue_frames", self.peer_queue_frames as u64);
        at_least_one("unverified_per_origin", self.unverified_per_origin as u64);
        at_least_one("unverified_total_bytes", self.unverified_total_bytes as u64);
        at_least_one("connections_per_client", self.connections_per_client as u64);
        at_least_one("calls_per_client", self.calls_per_client as u64);
        at_least_one("handshakes_per_address", self.handshakes_per_address as u64);
        let durations = [
            ("heartbeat_ms", self.heartbeat_ms),
            ("dead_after_ms", self.dead_after_ms),
            ("stall_after_ms", self.stall_after_ms),
            ("backoff_min_ms", self.backoff_min_ms),
            ("backoff_max_ms", self.backoff_max_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("http_idle_ms", self.http_idle_ms),
        ];
        for (setting, ms) in durations {
            at_least_one(setting, ms);
        }
        if self.max_batch_entries > MAX_BATCH_ENTRIES {
            // A peer asks for at most a batch's worth of payloads at once, and a node takes
            // at most this many asks in one frame from any peer.
            found.push(Finding::new(
                "limits.max_batch_entries",
                format!(
                    "is {}: at most {MAX_BATCH_ENTRIES} (peers refuse larger asks)",
                    self.max_batch_entries
                ),
            ));
        }
        // Shorter than a round trip and a TLS handshake on a slow link, these would cut every
        // connection, or every request, before it could do anything.
        for (setting, ms) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("http_idle_ms", self.http_idle_ms),
        ] {
            if (1..MIN_DEADLINE_MS).contains(&ms) {
                found.push(Finding::new(
                    format!("limits.{setting}"),
                    format!("is {ms} ms: give at least {MIN_DEADLINE_MS} ms"),
                ));
            }
        }
        for (setting, ms) in durations {
            if ms > MAX_DURATION_MS {
                found.push(Finding::new(
                    format!("limits.{setting}"),
                    format!("is {ms} ms, more than a day: give milliseconds"),
                ));
            }
        }
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            found.push(Finding::new(
                "limits.max_message_bytes",
                format!(
                    "is {}: give {MIN_MESSAGE_BYTES} to {MAX_MESSAGE_BYTES} (256 KiB to 1 GiB), so the largest legal entry always fits",
                    self.max_message_bytes
                ),
            ));
        }
        if self.heartbeat_ms != 0 && self.heartbeat_ms >= self.dead_after_ms {
            found.push(Finding::new(
                "limits.dead_after_ms",
                format!(
                    "is {} ms, not more than heartbeat_ms ({} ms): idle links would be cut between heartbeats; make it several heartbeats",
                    self.dead_after_ms, self.heartbeat_ms
                ),
            ));
        }
        if self.backoff_max_ms < self.backoff_min_ms {
            found.push(Finding::new(
                "limits.backoff_max_ms",
                format!(
                    "is {} ms, less than backoff_min_ms ({} ms)",
                    self.backoff_max_ms, self.backoff_min_ms
                ),
            ));
        }
        found
    }
}

/// Largest `max_batch_entries`: the most payloads any node asks for in one `Want`, and the
/// most any node takes in one (`federation::inbound::screen`).
pub const MAX_BATCH_ENTRIES: usize = intelmesh_proto::shape::MAX_FRAME_ENTRIES;

/// Smallest `max_message_bytes`: a batch frame holding one entry of the largest legal size
/// (4 KiB header, 64 KiB payload) with room to spare.
pub const MIN_MESSAGE_BYTES: usize = 256 << 10;
/// Largest `max_message_bytes`: each peer may have `peer_queue_frames` of them queued.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;
/// Longest duration a limit may name (a day): beyond that it is a mistake, not a choice.
pub(crate) const MAX_DURATION_MS: u64 = 86_400_000;
/// The shortest connect and idle deadlines a node takes.
const MIN_DEADLINE_MS: u64 = 100;
