//! TLP routing: whether a link may carry an entry's payload or only its withheld stub.
//!
//! CLEAR, GREEN and AMBER go to every member in full. AMBER+STRICT and RED go in full only over
//! a link that reaches the origin or a listed recipient: the peer itself, or, for a relay (the
//! hub), any member, when there is a recipient to reach (a RED entry for its origin alone
//! never leaves it in full). Where members have encryption keys the payload a relay carries is
//! sealed to the origin and the recipients (`intelmesh_core::sealed`): the hub stores and
//! forwards what it cannot read. Everyone else gets the stub: the signed header, which keeps
//! their copy of the chain complete and verifiable while revealing nothing of the payload.

use intelmesh_core::{OrgId, Tlp};
use intelmesh_proto::v1 as pb;

/// What a link leads to, from this node's own configuration (never from the peer's claims).
#[derive(Clone, Debug)]
pub struct LinkReach {
    pub peer: OrgId,
    pub relay: bool,
}

/// What routing reads of a stored entry's header: its seq and distribution (its origin is
/// the log's it was read from). Decoded alone, the header's other fields skipped: a hub routes
/// each entry it sends once per link, and decoding whole headers (the origin, hashes and key
/// id each allocated) was 5.6% of a hub's CPU in `bench federation` (perf).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Routing {
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    #[prost(message, optional, tag = "8")]
    pub distribution: Option<pb::Distribution>,
}

impl Routing {
    /// The routing fields of `entry`'s header; `None` if the header does not decode.
    pub fn of(entry: &pb::SignedEntry) -> Option<Routing> {
        <Routing as prost::Message>::decode(entry.header.as_ref()).ok()
    }
}

/// Whether the payload of an entry with this header may travel over `link`.
pub fn payload_may_travel(header: &pb::EntryHeader, link: &LinkReach) -> bool {
    may_travel(&header.origin, header.distribution.as_ref(), link)
}

/// Whether the payload of an entry of `origin` under `dist` may travel over `link`.
fn may_travel(origin: &str, dist: Option<&pb::Distribution>, link: &LinkReach) -> bool {
    let tlp = dist.and_then(|d| Tlp::from_proto(d.tlp));
    let Some(tlp) = tlp else {
        // Stored entries were verified, so this cannot happen; withhold if it does.
        return false;
    };
    if !tlp.is_restricted() {
        return true;
    }
    let recipients = dist.map_or(&[][..], |d| d.recipients.as_slice());
    // A recipient to reach other than the origin: RED for the origin alone, named or not,
    // never leaves it in full.
    let others = recipients.iter().any(|r| r != origin);
    if origin == link.peer.as_str() || (link.relay && others) {
        return true;
    }
    recipients.iter().any(|r| r == link.peer.as_str())
}

/// The entry of `origin`'s log as it may go over `link`: itself, or its withheld stub.
pub fn for_link(
    entry: pb::SignedEntry,
    origin: &OrgId,
    routing: &Routing,
    link: &LinkReach,
) -> pb::SignedEntry {
    if entry.payload.is_none() || may_travel(origin.as_str(), routing.distribution.as_ref(), link) {
        entry
    } else {
        intelmesh_core::entry::withheld_stub(&entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(origin: &str, tlp: pb::Tlp, recipients: &[&str]) -> pb::EntryHeader {
        pb::EntryHeader {
            origin: origin.into(),
            distribution: Some(pb::Distribution {
                tlp: tlp as i32,
                recipients: recipients.iter().map(|r| r.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    fn link(peer: &str, relay: bool) -> LinkReach {
        LinkReach {
            peer: OrgId::parse(peer).unwrap(),
            relay,
        }
    }

    #[test]
    fn open_levels_travel_everywhere() {
        for tlp in [pb::Tlp::Clear, pb::Tlp::Green, pb::Tlp::Amber] {
            assert!(payload_may_travel(
                &header("AU-AFP", tlp, &[]),
                &link("BR-PF", false)
            ));
        }
    }

    #[test]
    fn restricted_levels_travel_only_towards_recipients() {
        for tlp in [pb::Tlp::AmberStrict, pb::Tlp::Red] {
            let h = header("AU-AFP", tlp, &["BR-PF"]);
            assert!(
                payload_may_travel(&h, &link("BR-PF", false)),
                "to the recipient"
            );
            assert!(
                !payload_may_travel(&h, &link("FR-OCLCTIC", false)),
                "not to others"
            );
            assert!(
                payload_may_travel(&h, &link("SG-IGCI", true)),
                "through a relay"
            );
            assert!(
                payload_may_travel(&h, &link("AU-AFP", false)),
                "back to its origin"
            );
            let alone = header("AU-AFP", tlp, &[]);
            assert!(
                !payload_may_travel(&alone, &link("SG-IGCI", true)),
                "for its origin alone: not even to a relay"
            );
            assert!(payload_may_travel(&alone, &link("AU-AFP", false)));
            let named_alone = header("AU-AFP", tlp, &["AU-AFP"]);
            assert!(
                !payload_may_travel(&named_alone, &link("SG-IGCI", true)),
                "for its origin alone, named: not to a relay either"
            );
        }
    }

    /// An entry of `h` as stored: its header encoded whole.
    fn stored(h: &pb::EntryHeader) -> pb::SignedEntry {
        pb::SignedEntry {
            header: prost::Message::encode_to_vec(h).into(),
            signature: vec![2].into(),
            payload: Some(vec![3].into()),
        }
    }

    #[test]
    fn stubs_replace_withheld_payloads() {
        let au = OrgId::parse("AU-AFP").unwrap();
        let h = header("AU-AFP", pb::Tlp::Red, &["BR-PF"]);
        let entry = stored(&h);
        let r = Routing::of(&entry).unwrap();
        assert!(for_link(entry.clone(), &au, &r, &link("FR-OCLCTIC", false))
            .payload
            .is_none());
        assert_eq!(
            for_link(entry.clone(), &au, &r, &link("BR-PF", false)),
            entry
        );
        let missing = stored(&header("AU-AFP", pb::Tlp::Unspecified, &[]));
        let r = Routing::of(&missing).unwrap();
        assert!(for_link(missing, &au, &r, &link("BR-PF", true))
            .payload
            .is_none());
    }

    #[test]
    fn routing_reads_a_whole_header_as_the_header_routes() {
        let au = OrgId::parse("AU-AFP").unwrap();
        let levels = [
            pb::Tlp::Clear,
            pb::Tlp::Amber,
            pb::Tlp::AmberStrict,
            pb::Tlp::Red,
        ];
        let recipients: [&[&str]; 3] = [&[], &["BR-PF"], &["AU-AFP"]];
        for tlp in levels {
            for to in recipients {
                let mut h = header("AU-AFP", tlp, to);
                h.seq = 41;
                h.prev_hash = vec![7; 32];
                h.key_id = vec![9; 8];
                h.issued_at_unix_ms = 1_700_000_000_000;
                let entry = stored(&h);
                let r = Routing::of(&entry).unwrap();
                assert_eq!(
                    (r.seq, r.distribution.as_ref()),
                    (41, h.distribution.as_ref())
                );
                for l in [
                    link("BR-PF", false),
                    link("FR-OCLCTIC", false),
                    link("SG-IGCI", true),
                ] {
                    let routed = for_link(entry.clone(), &au, &r, &l);
                    assert_eq!(
                        routed.payload.is_some(),
                        payload_may_travel(&h, &l),
                        "{tlp:?} to {to:?} over {l:?}"
                    );
                }
            }
        }
        let broken = pb::SignedEntry {
            header: vec![0xff, 0xff].into(),
            ..Default::default()
        };
        assert_eq!(Routing::of(&broken), None);
    }
}
