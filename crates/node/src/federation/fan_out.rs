//! Which hub sends an agency other origins' entries at once, when several hubs are linked to
//! each other: the split of the hubs' fan-out.
//!
//! Every hub holds everything and every agency links to every hub, so with each hub sending
//! each agency all it lacked, an agency received every entry once per hub (1.92 copies of each
//! entry an agency lacked in `bench federation --members 190`, two hubs) and each hub did the
//! whole fan-out on its own. The hubs that see each other now share the agencies out by a hash
//! of the agency's name, which each computes alike: one sends an agency what it lacks at once,
//! the others only once the agency has sat still behind on an origin for [`HUB_STILL`] (its
//! first hub is slow, or cannot reach it). A hub whose link to another hub ends takes that
//! hub's agencies at once: its senders are woken by the link's end (`link::LinkUp`). So does
//! a hub whose link to another hub has waited [`HUB_SILENT`] for that hub's next frame (that
//! hub hung, or cut off with its connections left open, which the link shows only after
//! `dead_after_ms`): hubs send each other a frame at least every [`HUB_HEARTBEAT`], so a hub
//! that is merely busy is still heard (`heard`). Where the hubs' views differ for a moment
//! (one link up on one side only), the hub that sees fewer hubs sends more, never less.

use std::time::Duration;

use intelmesh_core::OrgId;
use intelmesh_proto::shape::MAX_FRAME_RELAYS;
use intelmesh_proto::v1 as pb;

/// How long a hub lets an agency that another hub serves, a hub it still hears, sit still
/// behind on an origin before it sends that origin's entries itself: longer than a loaded hub
/// takes to pass an entry on (a second or so on two cores with 190 agencies, at times more).
/// At 3 s a second hub sent an agency 1.34 to 1.55 copies of each entry it lacked in `bench
/// federation --members 190`, at 5 s 1.04 to 1.21.
pub const HUB_STILL: Duration = Duration::from_secs(5);

/// How often at least a hub sends a frame on its link to another hub (a heartbeat when it has
/// nothing else to send), so that the other can tell it is there (see [`HUB_SILENT`]).
pub const HUB_HEARTBEAT: Duration = Duration::from_secs(1);

/// How long this hub's link to another hub may wait on it for a frame before this hub takes
/// the agencies that hub served first: two and a half of its heartbeats. A hub lost with its
/// links left open is then covered within this and a round of this hub's sender, inside the
/// five seconds the federation promises, where waiting for the link to end (`dead_after_ms`,
/// 10 s by default) or for an agency to sit still for [`HUB_STILL`] was not.
pub const HUB_SILENT: Duration = Duration::from_millis(2_500);

/// How a hub serves an agency other origins' entries, as of now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serve {
    /// As soon as the agency lacks them: this hub is its first, or its first has gone silent.
    AtOnce,
    /// Once the agency has sat still behind on an origin for `still`. The first hub was heard
    /// lately: look again after `recheck`, when it would have gone silent.
    AfterStill { still: Duration, recheck: Duration },
}

/// How `me` serves `agency`, given the hubs sharing it out (`sharing`) and for how long the
/// link to each has waited on it for a frame (`None`: no link up with it).
pub fn serve(
    me: &OrgId,
    sharing: &[OrgId],
    agency: &OrgId,
    unheard_for: impl Fn(&OrgId) -> Option<Duration>,
) -> Serve {
    let first = first_hub(me, sharing, agency);
    if first == me {
        return Serve::AtOnce;
    }
    match unheard_for(first) {
        Some(quiet) if quiet < HUB_SILENT => Serve::AfterStill {
            still: HUB_STILL,
            recheck: HUB_SILENT - quiet,
        },
        _ => Serve::AtOnce,
    }
}

/// Whether `me` sends `agency` other origins' entries at once, given the hubs whose links to
/// `me` are up (`linked`, `me` not needed among them).
pub fn sends_first(me: &OrgId, linked: &[OrgId], agency: &OrgId) -> bool {
    first_hub(me, linked, agency) == me
}

/// The hub, of `me` and `linked`, that sends `agency` other origins' entries first.
fn first_hub<'a>(me: &'a OrgId, linked: &'a [OrgId], agency: &OrgId) -> &'a OrgId {
    let mut hubs: Vec<&OrgId> = linked.iter().chain([me]).collect();
    hubs.sort();
    hubs.dedup();
    let at = spread(agency) % hubs.len() as u64;
    hubs.get(at as usize).copied().unwrap_or(me)
}

/// The hubs that share `agency` out, as this hub sees them: those it has links up with
/// (`linked`) that the agency said it has links with too (`reported`, its `Relays` frames). An
/// agency that said nothing (a node from before the frame) shares with none: every hub sends
/// to it at once, as before.
pub fn sharing(linked: &[OrgId], reported: Option<&[OrgId]>) -> Vec<OrgId> {
    let Some(reported) = reported else {
        return Vec::new();
    };
    (linked.iter())
        .filter(|h| reported.contains(h))
        .cloned()
        .collect()
}

/// The relays a `Relays` frame names, as a hub keeps them: valid org ids, each once, at most
/// [`MAX_FRAME_RELAYS`] whatever the peer sent (the wire check refuses more before decoding).
pub fn relays_of(frame: pb::Relays) -> Vec<OrgId> {
    let mut orgs: Vec<OrgId> = (frame.orgs.iter())
        .take(MAX_FRAME_RELAYS)
        .filter_map(|o| OrgId::parse(o).ok())
        .collect();
    orgs.sort();
    orgs.dedup();
    orgs
}

/// A hash of an org's name that every hub computes alike (FNV-1a): std's hasher is keyed per
/// process.
fn spread(org: &OrgId) -> u64 {
    org.as_str().bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(name: &str) -> OrgId {
        OrgId::parse(name).expect("org")
    }

    fn agencies(n: usize) -> Vec<OrgId> {
        (1..=n).map(|i| org(&format!("AGENCY-{i:03}"))).collect()
    }

    #[test]
    fn hubs_that_see_each_other_share_every_agency_out_once() {
        let hubs = [org("HUB-1"), org("HUB-2"), org("HUB-3")];
        for n in [2, 3] {
            let linked = &hubs[..n];
            let mut served = vec![0; n];
            for a in agencies(190) {
                let first: Vec<usize> = (0..n)
                    .filter(|&i| sends_first(&hubs[i], linked, &a))
                    .collect();
                assert_eq!(
                    first.len(),
                    1,
                    "{a} is served first by exactly one hub: {first:?}"
                );
                served[first[0]] += 1;
            }
            for (hub, count) in hubs.iter().zip(&served) {
                assert!(
                    *count >= 190 / n / 2,
                    "{n} hubs: {hub} serves {count} of 190 agencies first"
                );
            }
        }
    }

    #[test]
    fn a_hub_alone_or_cut_off_from_the_others_serves_every_agency_first() {
        let (one, two) = (org("HUB-1"), org("HUB-2"));
        for a in agencies(20) {
            assert!(sends_first(&one, &[], &a));
            assert!(sends_first(&one, std::slice::from_ref(&one), &a));
        }
        // HUB-1 sees HUB-2 but HUB-2 has not seen HUB-1 yet: HUB-2 sends to all, so no agency
        // is left without a first hub.
        for a in agencies(20) {
            assert!(
                sends_first(&two, &[], &a) || sends_first(&one, std::slice::from_ref(&two), &a)
            );
        }
    }

    #[test]
    fn only_hubs_linked_to_both_share_an_agency_and_one_that_said_nothing_shares_with_none() {
        let (a, b, c) = (org("HUB-A"), org("HUB-B"), org("HUB-C"));
        let linked = [b.clone(), c.clone()];
        assert_eq!(sharing(&linked, None), Vec::<OrgId>::new());
        assert_eq!(sharing(&linked, Some(&[])), Vec::<OrgId>::new());
        assert_eq!(
            sharing(&linked, Some(&[a.clone(), b.clone()])),
            std::slice::from_ref(&b)
        );
        assert_eq!(sharing(&linked, Some(&[a, b.clone(), c.clone()])), [b, c]);
        // Reported alone, the hub serves every agency first.
        for agency in agencies(20) {
            assert!(sends_first(
                &org("HUB-A"),
                &sharing(&linked, Some(&[])),
                &agency
            ));
        }
    }

    #[test]
    fn a_relays_frame_keeps_valid_names_once_within_the_cap() {
        let frame = pb::Relays {
            orgs: ["HUB-B", "not an org!", "HUB-A", "HUB-B", ""]
                .into_iter()
                .map(String::from)
                .collect(),
        };
        assert_eq!(relays_of(frame), [org("HUB-A"), org("HUB-B")]);
        let many = pb::Relays {
            orgs: (0..10 * MAX_FRAME_RELAYS)
                .map(|i| format!("HUB-{i}"))
                .collect(),
        };
        assert_eq!(relays_of(many).len(), MAX_FRAME_RELAYS);
    }

    #[test]
    fn a_hub_waits_for_a_first_hub_it_hears_and_not_for_one_gone_silent() {
        let (one, two) = (org("HUB-1"), org("HUB-2"));
        let hubs = [one.clone(), two.clone()];
        let served_by_one = (agencies(20).into_iter())
            .find(|a| sends_first(&one, &hubs, a))
            .expect("HUB-1 serves some agency first");
        let heard = |ago: Option<Duration>| {
            let one = one.clone();
            move |h: &OrgId| (*h == one).then_some(ago).flatten()
        };
        // HUB-1 heard half a second ago: HUB-2 waits, and looks again when it would be silent.
        assert_eq!(
            serve(
                &two,
                &hubs,
                &served_by_one,
                heard(Some(Duration::from_millis(500)))
            ),
            Serve::AfterStill {
                still: HUB_STILL,
                recheck: HUB_SILENT - Duration::from_millis(500),
            }
        );
        // Unheard for HUB_SILENT or more, or its link gone: HUB-2 serves the agency at once.
        for ago in [Some(HUB_SILENT), Some(HUB_SILENT * 4), None] {
            assert_eq!(
                serve(&two, &hubs, &served_by_one, heard(ago)),
                Serve::AtOnce
            );
        }
        // HUB-1 serves its own agencies at once, however the other hub fares.
        assert_eq!(
            serve(&one, &hubs, &served_by_one, |_| Some(Duration::ZERO)),
            Serve::AtOnce
        );
    }

    #[test]
    fn the_share_does_not_depend_on_the_order_hubs_are_listed_in() {
        let hubs = [org("HUB-1"), org("HUB-2"), org("HUB-3")];
        let reversed: Vec<OrgId> = hubs.iter().rev().cloned().collect();
        for a in agencies(50) {
            for h in &hubs {
                assert_eq!(sends_first(h, &hubs, &a), sends_first(h, &reversed, &a));
            }
        }
    }
}
