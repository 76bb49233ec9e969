//! What `bench scale` sends: streams of slots (see `bench_shapes`) signed by sets of origins,
//! with revocations, sightings and second origins' listings at a small rate, signed on all
//! cores and cut into the frames a relaying peer sends; the load stream is signed while it is
//! sent, the probes beforehand.

use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::Context;
use intelmesh_core::{Distribution, Head, Signer, Tlp};
use intelmesh_proto::v1 as pb;
use prost::Message;
use rayon::prelude::*;
use tokio::sync::mpsc;

use super::ingest::cut_frames;
use super::net::org;
use super::shapes::{self, mix};

/// Slots signed per round of the load stream: big enough to keep every core busy, small
/// enough that a round's entries are a few MiB.
const ROUND_SLOTS: u64 = 32_768;

/// What a slot adds besides its own listing (per thousand slots: 5 revocations, 20 sightings,
/// 20 second listings, as feeds revise and corroborate each other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extra {
    /// The origin revokes its listing of an earlier slot of its own.
    Revoke(u64),
    /// The origin reports seeing an earlier slot's indicator (anyone's).
    Sighting(u64),
    /// The origin lists the previous slot's indicator too (another origin listed it first).
    Corroborate(u64),
}

/// Slots `slots` listed by `signers` in turn: slot `j` is the listing of origin
/// `(j - start) % signers.len()`.
pub(crate) struct Stream {
    pub signers: Vec<Signer>,
    pub slots: Range<u64>,
}

impl Stream {
    /// A stream of `slots` signed by `origins` new origins named `PREFIX-00`, `PREFIX-01`, ….
    pub(crate) fn new(prefix: &str, origins: usize, slots: Range<u64>) -> anyhow::Result<Stream> {
        let signers = (0..origins)
            .map(|i| Ok(Signer::generate(org(&format!("{prefix}-{i:02}"))?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Stream { signers, slots })
    }

    fn width(&self) -> u64 {
        self.signers.len() as u64
    }

    fn extra(&self, j: u64) -> Option<Extra> {
        let roll = mix(j ^ 0xe7_7a) % 1000;
        let back = 7 * self.width();
        match roll {
            0..5 if j >= self.slots.start + back => Some(Extra::Revoke(j - back)),
            5..25 if j > 0 => Some(Extra::Sighting(j - 1 - mix(j) % j.min(100_000))),
            25..45 if j > self.slots.start && self.width() > 1 => Some(Extra::Corroborate(j - 1)),
            _ => None,
        }
    }

    /// The slots of origin `o` within `range`, in order.
    fn slots_of(&self, o: usize, range: Range<u64>) -> impl Iterator<Item = u64> {
        let w = self.width();
        let first = self.slots.start + o as u64;
        let from = range.start.max(first);
        // The first slot at or after `from` that is origin `o`'s.
        let from = from + (w - (from - first) % w) % w;
        (from..range.end.min(self.slots.end)).step_by(w as usize)
    }

    /// The payloads origin `o` signs for its slots within `range`, in order.
    fn payloads(&self, o: usize, range: Range<u64>) -> anyhow::Result<Vec<pb::Payload>> {
        let mut out = Vec::new();
        for j in self.slots_of(o, range) {
            out.push(shapes::upsert_payload(j, false)?);
            match self.extra(j) {
                Some(Extra::Revoke(s)) => out.push(shapes::revoke_payload(s)?),
                Some(Extra::Sighting(s)) => out.push(shapes::sighting_payload(s)?),
                Some(Extra::Corroborate(s)) => out.push(shapes::upsert_payload(s, true)?),
                None => {}
            }
        }
        Ok(out)
    }

    /// Each origin's last seq once the whole stream is signed.
    pub(crate) fn heads(&self) -> BTreeMap<String, u64> {
        self.signers
            .iter()
            .enumerate()
            .map(|(o, s)| {
                let n = self
                    .slots_of(o, self.slots.clone())
                    .map(|j| 1 + u64::from(self.extra(j).is_some()))
                    .sum();
                (s.org().to_string(), n)
            })
            .collect()
    }

    /// Signs the entries of the slots in `range`, each origin's on its own core, chaining onto
    /// `heads` (advanced); one log per origin.
    fn sign(
        &self,
        heads: &mut [Option<Head>],
        range: Range<u64>,
    ) -> anyhow::Result<Vec<Vec<pb::SignedEntry>>> {
        let dist = green();
        let now = intelmesh_core::now_unix_ms();
        let signed: Vec<(Vec<pb::SignedEntry>, Option<Head>)> = self
            .signers
            .par_iter()
            .zip(heads.par_iter())
            .enumerate()
            .map(|(o, (signer, head))| {
                let mut head = *head;
                let entries = self
                    .payloads(o, range.clone())?
                    .iter()
                    .map(|p| {
                        let (e, next) = signer.sign_next(head, now, &dist, p);
                        head = Some(next);
                        e
                    })
                    .collect();
                Ok((entries, head))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut logs = Vec::with_capacity(signed.len());
        for (i, (log, head)) in signed.into_iter().enumerate() {
            heads[i] = head;
            logs.push(log);
        }
        Ok(logs)
    }
}

pub(crate) fn green() -> Distribution {
    Distribution {
        tlp: Tlp::Green,
        recipients: vec![],
    }
}

/// A stream signed whole before it is sent, cut into frames.
pub(crate) struct Signed {
    pub frames: Vec<Vec<pb::SignedEntry>>,
    pub heads: BTreeMap<String, u64>,
    pub entries: u64,
    pub bytes: u64,
}

pub(crate) fn sign_whole(
    stream: &Stream,
    max_entries: usize,
    max_bytes: usize,
) -> anyhow::Result<Signed> {
    let mut heads = vec![None; stream.signers.len()];
    let logs = stream.sign(&mut heads, stream.slots.clone())?;
    let (entries, bytes) = measure(&logs);
    Ok(Signed {
        frames: cut_frames(&logs, max_entries, max_bytes),
        heads: stream.heads(),
        entries,
        bytes,
    })
}

fn measure(logs: &[Vec<pb::SignedEntry>]) -> (u64, u64) {
    let entries = logs.iter().map(|l| l.len() as u64).sum();
    let bytes = logs.iter().flatten().map(|e| e.encoded_len() as u64).sum();
    (entries, bytes)
}

/// What the load stream's signer hands back once it has signed everything.
pub(crate) struct LoadDone {
    pub entries: u64,
    pub bytes: u64,
}

/// Starts signing `stream` on a thread of its own, a round at a time on all cores, and sends
/// its frames to the returned channel as they are cut; the thread's result is what it signed.
pub(crate) fn sign_streaming(
    stream: Stream,
    max_entries: usize,
    max_bytes: usize,
) -> (
    mpsc::Receiver<Vec<pb::SignedEntry>>,
    std::thread::JoinHandle<anyhow::Result<LoadDone>>,
) {
    // About two rounds of frames ahead of the sender: the node never waits for the signer
    // when signing is faster, and memory stays a few rounds' worth when it is slower.
    let (tx, rx) = mpsc::channel(64);
    let signer = std::thread::spawn(move || {
        let mut heads = vec![None; stream.signers.len()];
        let (mut entries, mut bytes) = (0, 0);
        let mut at = stream.slots.start;
        while at < stream.slots.end {
            let end = (at + ROUND_SLOTS).min(stream.slots.end);
            let logs = stream.sign(&mut heads, at..end)?;
            let (n, b) = measure(&logs);
            entries += n;
            bytes += b;
            for frame in cut_frames(&logs, max_entries, max_bytes) {
                tx.blocking_send(frame)
                    .ok()
                    .context("the sender stopped taking frames")?;
            }
            at = end;
        }
        Ok(LoadDone { entries, bytes })
    });
    (rx, signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_count_what_is_signed_in_rounds_or_whole() {
        let stream = Stream::new("T", 3, 1000..1700).expect("a stream");
        let mut heads = vec![None; 3];
        let mut counted = vec![0u64; 3];
        for range in [1000..1333, 1333..1334, 1334..1700] {
            for (o, log) in stream
                .sign(&mut heads, range)
                .expect("signed")
                .iter()
                .enumerate()
            {
                counted[o] += log.len() as u64;
            }
        }
        let want: Vec<u64> = stream.heads().into_values().collect();
        assert_eq!(counted, want);
        assert_eq!(
            heads
                .iter()
                .map(|h| h.map_or(0, |h| h.seq))
                .collect::<Vec<_>>(),
            want
        );
        assert!(want.iter().sum::<u64>() > 700, "some slots add an entry");
        let extras: Vec<Extra> = (1000..1700).filter_map(|j| stream.extra(j)).collect();
        assert!(extras.iter().any(|e| matches!(e, Extra::Sighting(_))));
        assert!(extras.iter().any(|e| matches!(e, Extra::Corroborate(_))));
    }
}
