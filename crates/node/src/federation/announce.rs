//! What this node told a peer it holds, on one link: each progress frame carries only the
//! heads that changed since the last one, to a peer whose hello asked for that
//! (`progress_changes`; others are sent whole vectors). At 190 members a whole
//! vector is 190 names, seqs and hashes, about 12 KB; a hub sending one to every member after
//! each round, and every member one back after each batch it applies, spent most of its time
//! encoding, decrypting and parsing vectors that had hardly changed.
//!
//! Both halves of a link announce (the receiving half after each batch it applies, the sender
//! when the log grew by another path); one lock over working out the change and queueing its
//! frame keeps the frames in the order of the heads they report, so a peer never sees a head
//! fall that did not (which it would take for a cut, see `PeerView::learn`).

use std::collections::BTreeMap;
use std::sync::Arc;

use intelmesh_core::{Head, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;

use super::link::{frame, local, send, LinkError, Outbound};
use super::peer_view::to_wire;
use crate::config::Limits;
use crate::state::NodeState;

/// The heads announced on one link so far, and how the peer takes them.
pub(super) struct Announcer {
    /// The store's heads as last announced (or found unchanged). The store replaces them on
    /// every change, so the same ones again mean nothing changed.
    told: tokio::sync::Mutex<Option<Arc<BTreeMap<OrgId, Head>>>>,
    style: Style,
}

/// What a progress frame carries, as the peer's hello asked (`progress_changes`,
/// `progress_omits_sent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    /// The heads changed since the previous frame.
    Changes,
    /// The heads changed since the previous frame, less those whose entry the sender just
    /// sent the peer on the link: it holds them.
    ChangesNotSent,
    /// The whole vector (a peer that did not ask for changes only).
    Whole,
}

impl Style {
    /// The style a peer's hello asks for.
    pub(super) fn of(hello: &pb::Hello) -> Style {
        match (hello.progress_changes, hello.progress_omits_sent) {
            (false, _) => Style::Whole,
            (true, false) => Style::Changes,
            (true, true) => Style::ChangesNotSent,
        }
    }
}

/// The heads of the entries sent to the peer on the link since the last progress frame: the
/// highest seq sent of each origin.
pub(super) type Sent = BTreeMap<OrgId, u64>;

/// `delta` without the heads the peer was sent the entry of (see [`Style::ChangesNotSent`]).
fn without_sent(mut delta: BTreeMap<OrgId, Head>, sent: &Sent) -> BTreeMap<OrgId, Head> {
    if !sent.is_empty() {
        delta.retain(|origin, head| sent.get(origin) != Some(&head.seq));
    }
    delta
}

/// The heads of `now` that differ from `told`, and the origins `told` names that `now` no
/// longer holds (cut back to nothing) at seq 0.
/// Both maps are walked side by side, in their common order: this runs after every batch on
/// every link, over every member's head.
pub(super) fn changed(
    told: &BTreeMap<OrgId, Head>,
    now: &BTreeMap<OrgId, Head>,
) -> BTreeMap<OrgId, Head> {
    const GONE: Head = Head {
        seq: 0,
        hash: [0; 32],
    };
    let mut out = BTreeMap::new();
    let mut told = told.iter().peekable();
    for (origin, head) in now {
        while let Some((gone, _)) = told.next_if(|(o, _)| *o < origin) {
            out.insert(gone.clone(), GONE);
        }
        match told.next_if(|(o, _)| *o == origin) {
            Some((_, before)) if before == head => {}
            _ => {
                out.insert(origin.clone(), *head);
            }
        }
    }
    for (gone, _) in told {
        out.insert(gone.clone(), GONE);
    }
    out
}

/// When a progress frame goes out with nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum When {
    /// Only if some head changed (the sender, after a round).
    Changed,
    /// Always: it acknowledges a batch just applied, even one that changed nothing (a peer
    /// may pace its batches on these frames).
    Always,
}

impl Announcer {
    pub(super) fn new(style: Style) -> Announcer {
        Announcer {
            told: tokio::sync::Mutex::default(),
            style,
        }
    }

    /// Sends a progress frame with the heads changed since the last one (see [`When`]);
    /// whether it sent one.
    pub(super) async fn announce(
        &self,
        state: &NodeState,
        out: &Outbound,
        limits: &Limits,
        when: When,
    ) -> Result<bool, LinkError> {
        self.announce_after(state, out, limits, when, &Sent::new())
            .await
    }

    /// [`Announcer::announce`] after a round that sent the peer the entries `sent` names.
    pub(super) async fn announce_after(
        &self,
        state: &NodeState,
        out: &Outbound,
        limits: &Limits,
        when: When,
        sent: &Sent,
    ) -> Result<bool, LinkError> {
        let mut told = self.told.lock().await;
        let now = state.store.heads().map_err(local)?;
        let delta = match told.as_ref() {
            Some(before) if Arc::ptr_eq(before, &now) => BTreeMap::new(),
            Some(before) => changed(before, &now),
            None => changed(&BTreeMap::new(), &now),
        };
        let delta = match self.style {
            Style::ChangesNotSent => without_sent(delta, sent),
            Style::Changes | Style::Whole => delta,
        };
        if delta.is_empty() && when == When::Changed {
            // The same heads: keep these, so the next look is a pointer comparison.
            *told = Some(now);
            return Ok(false);
        }
        let vector = match self.style {
            Style::Changes | Style::ChangesNotSent => to_wire(&delta),
            Style::Whole => to_wire(&now),
        };
        let progress = pb::Progress {
            vector: Some(vector),
        };
        send(
            out,
            frame(pb::sync_frame::Frame::Progress(progress)),
            limits,
        )
        .await?;
        *told = Some(now);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(list: &[(&str, u64, u8)]) -> BTreeMap<OrgId, Head> {
        list.iter()
            .map(|(o, seq, h)| {
                (
                    OrgId::parse(o).unwrap(),
                    Head {
                        seq: *seq,
                        hash: [*h; 32],
                    },
                )
            })
            .collect()
    }

    #[test]
    fn only_changed_heads_are_announced_and_a_vanished_origin_at_zero() {
        let told = heads(&[("AU", 3, 1), ("BR", 5, 2), ("SG", 2, 3)]);
        let now = heads(&[("AU", 3, 1), ("BR", 6, 4), ("DE", 1, 5)]);
        assert_eq!(
            changed(&told, &now),
            heads(&[("BR", 6, 4), ("DE", 1, 5), ("SG", 0, 0)])
        );
        assert!(changed(&now, &now).is_empty());
        assert_eq!(
            changed(&BTreeMap::new(), &now),
            now,
            "the first frame names all"
        );
    }

    #[test]
    fn a_head_sent_as_its_entry_is_left_out_and_one_past_it_is_kept() {
        let delta = heads(&[("AU", 3, 1), ("BR", 6, 4), ("DE", 1, 5)]);
        let org = |s: &str| OrgId::parse(s).unwrap();
        // AU's head went as its entry; BR was sent up to 5 of 6; DE not at all.
        let sent: Sent = [(org("AU"), 3), (org("BR"), 5)].into();
        assert_eq!(
            without_sent(delta.clone(), &sent),
            heads(&[("BR", 6, 4), ("DE", 1, 5)])
        );
        assert_eq!(without_sent(delta.clone(), &Sent::new()), delta);
        let hello = |changes, omits| pb::Hello {
            progress_changes: changes,
            progress_omits_sent: omits,
            ..pb::Hello::default()
        };
        assert_eq!(Style::of(&hello(false, true)), Style::Whole);
        assert_eq!(Style::of(&hello(true, false)), Style::Changes);
        assert_eq!(Style::of(&hello(true, true)), Style::ChangesNotSent);
    }
}
