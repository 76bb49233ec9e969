//! A wire-level check of a `SyncFrame` before it is decoded: every element of its repeated
//! messages is at least as long as the smallest valid one, and a version vector (or a hello's
//! list of orgs) names at most [`MAX_VECTOR_ORIGINS`] origins.
//!
//! Why: decoding allocates per element, and an empty `SignedEntry` is 2 bytes on the wire but
//! about 100 bytes decoded, so a peer's 8 MiB frame of them would cost some 400 MiB before any
//! count limit could look at it. A valid entry carries a 64-byte signature, so with this check
//! a frame of entries decodes to about as much memory as its own size, and no frame to more
//! than about ten times it (an ask of 5 bytes holds a string and a seq).

use prost::encoding::{decode_key, decode_varint, WireType};

/// Smallest encoded `SignedEntry` that can verify: its signature field alone is 66 bytes.
pub const MIN_ENTRY_BYTES: usize = 66;
/// Smallest encoded `ForkProof` that can check: two entries.
pub const MIN_PROOF_BYTES: usize = 2 * MIN_ENTRY_BYTES;
/// Smallest encoded `EntryRef` that names anything: an org id (one character at least, 3
/// bytes with its tag and length) and a seq from 1 (2 bytes).
pub const MIN_REF_BYTES: usize = 5;

/// Most origins a version vector (each of its maps) or a hello's `reaches` may name: far more
/// than any federation has members, few enough that decoding them costs a few MiB.
pub const MAX_VECTOR_ORIGINS: usize = 65_536;

/// Most entries one frame may carry: the largest batch any node sends or takes
/// (`max_batch_entries` is at most this).
pub const MAX_FRAME_ENTRIES: usize = 16_384;
/// Most asks one `Want` may carry: an honest node asks for at most its batch's worth.
pub const MAX_FRAME_ASKS: usize = 16_384;
/// Most fork proofs one `Evidence` frame may carry (each costs two signature checks).
pub const MAX_FRAME_PROOFS: usize = 256;
/// Most orgs one `Relays` frame may name: a federation has a few hubs.
pub const MAX_FRAME_RELAYS: usize = 64;

/// Field numbers of `SyncFrame` and of the messages its repeated elements sit in.
const FRAME_HELLO: u32 = 1;
const FRAME_PROGRESS: u32 = 3;
const HELLO_VECTOR: u32 = 3;
const HELLO_REACHES: u32 = 4;
const PROGRESS_VECTOR: u32 = 1;
const FRAME_ENTRIES: u32 = 2;
const FRAME_WANT: u32 = 5;
const FRAME_EVIDENCE: u32 = 6;
const FRAME_RELAYS: u32 = 7;
/// `EntryBatch.entries`, `Want.entries`, `ForkEvidence.proofs`: field 1 each.
const ELEMENTS: u32 = 1;

/// What is wrong with a frame's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShapeError {
    /// Not protobuf wire format (what prost would refuse too).
    Malformed(&'static str),
    /// An element shorter than the smallest valid one.
    ShortElement {
        what: &'static str,
        len: usize,
        min: usize,
    },
    /// More origins in a vector or list than [`MAX_VECTOR_ORIGINS`].
    TooManyOrigins { what: &'static str, max: usize },
    /// More elements of one kind than a frame may carry ([`MAX_FRAME_ENTRIES`],
    /// [`MAX_FRAME_ASKS`], [`MAX_FRAME_PROOFS`], [`MAX_FRAME_RELAYS`]): refused before they
    /// are decoded.
    TooManyElements { what: &'static str, max: usize },
    /// An API request that would decode to more than `max` bytes ([`crate::api_shape`]).
    TooLarge { max: usize },
}

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShapeError::Malformed(why) => write!(f, "frame is not protobuf: {why}"),
            ShapeError::ShortElement { what, len, min } => write!(
                f,
                "frame holds a {what} of {len} bytes; none valid is shorter than {min}"
            ),
            ShapeError::TooManyOrigins { what, max } => {
                write!(f, "frame names more than {max} origins in {what}")
            }
            ShapeError::TooManyElements { what, max } => write!(
                f,
                "frame holds more than {max} of {what}: more than any node puts in one frame"
            ),
            ShapeError::TooLarge { max } => write!(
                f,
                "request of elements too many and too small: it would decode to more than \
                 {max} bytes"
            ),
        }
    }
}

/// Checks `frame`, an encoded `SyncFrame` (see the module's doc).
pub fn check_sync_frame(frame: &[u8]) -> Result<(), ShapeError> {
    let mut counts = Counts::default();
    for_each_field(frame, |field, value| {
        match (field, value) {
            // prost merges repeated occurrences of one message field (a hello, its vector) into
            // one value: the counts run over the whole frame.
            (FRAME_HELLO, Some(hello)) => {
                return for_each_field(hello, |field, value| match (field, value) {
                    (HELLO_VECTOR, Some(v)) => check_vector(v, &mut counts),
                    (HELLO_REACHES, _) => {
                        counts.reaches += 1;
                        at_most(counts.reaches, "a hello's reaches")
                    }
                    _ => Ok(()),
                });
            }
            (FRAME_PROGRESS, Some(progress)) => {
                return for_each_field(progress, |field, value| match (field, value) {
                    (PROGRESS_VECTOR, Some(v)) => check_vector(v, &mut counts),
                    _ => Ok(()),
                });
            }
            _ => {}
        }
        let (what, min, max, seen) = match field {
            FRAME_ENTRIES => (
                "SignedEntry",
                MIN_ENTRY_BYTES,
                MAX_FRAME_ENTRIES,
                &mut counts.entries,
            ),
            FRAME_WANT => ("EntryRef", MIN_REF_BYTES, MAX_FRAME_ASKS, &mut counts.asks),
            FRAME_EVIDENCE => (
                "ForkProof",
                MIN_PROOF_BYTES,
                MAX_FRAME_PROOFS,
                &mut counts.proofs,
            ),
            FRAME_RELAYS => ("relay org", 1, MAX_FRAME_RELAYS, &mut counts.relays),
            _ => return Ok(()),
        };
        let Some(inner) = value else { return Ok(()) };
        for_each_field(inner, |field, element| match (field, element) {
            (ELEMENTS, Some(e)) if e.len() < min => Err(ShapeError::ShortElement {
                what,
                len: e.len(),
                min,
            }),
            (ELEMENTS, _) => {
                *seen += 1;
                match *seen > max {
                    true => Err(ShapeError::TooManyElements { what, max }),
                    false => Ok(()),
                }
            }
            _ => Ok(()),
        })
    })
}

/// Origins named so far in a frame's vectors (`heads`, `head_hashes`) and hello's `reaches`.
#[derive(Default)]
struct Counts {
    heads: usize,
    hashes: usize,
    reaches: usize,
    /// Elements of the repeated messages, per kind.
    entries: usize,
    asks: usize,
    proofs: usize,
    relays: usize,
}

/// A `VersionVector`: each of its maps (`heads`, `head_hashes`) names at most
/// [`MAX_VECTOR_ORIGINS`] origins, counted in `counts` across the frame.
fn check_vector(vector: &[u8], counts: &mut Counts) -> Result<(), ShapeError> {
    for_each_field(vector, |field, _| {
        let n = match field {
            1 => &mut counts.heads,
            2 => &mut counts.hashes,
            _ => return Ok(()),
        };
        *n += 1;
        at_most(*n, "a version vector")
    })
}

fn at_most(n: usize, what: &'static str) -> Result<(), ShapeError> {
    if n > MAX_VECTOR_ORIGINS {
        return Err(ShapeError::TooManyOrigins {
            what,
            max: MAX_VECTOR_ORIGINS,
        });
    }
    Ok(())
}

/// Calls `f` with each field of `message`: its number and, when length-delimited, its bytes.
pub(crate) fn for_each_field(
    mut message: &[u8],
    mut f: impl FnMut(u32, Option<&[u8]>) -> Result<(), ShapeError>,
) -> Result<(), ShapeError> {
    let malformed = |_| ShapeError::Malformed("bad key or length");
    while !message.is_empty() {
        let (field, wire) = decode_key(&mut message).map_err(malformed)?;
        let value = match wire {
            WireType::Varint => {
                decode_varint(&mut message).map_err(malformed)?;
                None
            }
            WireType::SixtyFourBit => {
                message = message
                    .get(8..)
                    .ok_or(ShapeError::Malformed("truncated fixed64"))?;
                None
            }
            WireType::ThirtyTwoBit => {
                message = message
                    .get(4..)
                    .ok_or(ShapeError::Malformed("truncated fixed32"))?;
                None
            }
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut message).map_err(malformed)?)
                    .map_err(|_| ShapeError::Malformed("length too large"))?;
                let bytes = message
                    .get(..len)
                    .ok_or(ShapeError::Malformed("truncated field"))?;
                message = &message[len..];
                Some(bytes)
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(ShapeError::Malformed("groups are not used"))
            }
        };
        f(field, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1 as pb;
    use prost::Message;

    fn frame(f: pb::sync_frame::Frame) -> Vec<u8> {
        pb::SyncFrame { frame: Some(f) }.encode_to_vec()
    }

    fn entry() -> pb::SignedEntry {
        pb::SignedEntry {
            header: vec![1; 40].into(),
            signature: vec![2; 64].into(),
            payload: None,
        }
    }

    #[test]
    fn frames_of_valid_sized_elements_pass_and_empty_elements_do_not() {
        use pb::sync_frame::Frame;
        let good = [
            frame(Frame::Entries(pb::EntryBatch {
                entries: vec![entry(); 3],
            })),
            frame(Frame::Want(pb::Want {
                entries: vec![pb::EntryRef {
                    origin: "A".into(),
                    seq: 1,
                }],
            })),
            frame(Frame::Evidence(pb::ForkEvidence {
                proofs: vec![pb::ForkProof {
                    origin: "AU".into(),
                    seq: 2,
                    kept: Some(entry()),
                    conflicting: Some(entry()),
                    ..Default::default()
                }],
            })),
            frame(Frame::Heartbeat(pb::Heartbeat { sent_at_unix_ms: 1 })),
            frame(Frame::Hello(pb::Hello {
                org_id: "AU".into(),
                ..Default::default()
            })),
            Vec::new(),
        ];
        for f in &good {
            assert_eq!(check_sync_frame(f), Ok(()));
        }
        let empty_entries = frame(Frame::Entries(pb::EntryBatch {
            entries: vec![entry(), pb::SignedEntry::default(), entry()],
        }));
        assert_eq!(
            check_sync_frame(&empty_entries),
            Err(ShapeError::ShortElement {
                what: "SignedEntry",
                len: 0,
                min: MIN_ENTRY_BYTES
            })
        );
        let empty_refs = frame(Frame::Want(pb::Want {
            entries: vec![pb::EntryRef::default(); 1000],
        }));
        assert!(matches!(
            check_sync_frame(&empty_refs),
            Err(ShapeError::ShortElement {
                what: "EntryRef",
                ..
            })
        ));
        let thin_proof = frame(Frame::Evidence(pb::ForkEvidence {
            proofs: vec![pb::ForkProof::default()],
        }));
        assert!(matches!(
            check_sync_frame(&thin_proof),
            Err(ShapeError::ShortElement {
                what: "ForkProof",
                ..
            })
        ));
    }

    #[test]
    fn vectors_and_reaches_name_a_bounded_number_of_origins() {
        use pb::sync_frame::Frame;
        let vector = |n: usize| pb::VersionVector {
            heads: (0..n).map(|i| (format!("O{i}"), 1)).collect(),
            head_hashes: Default::default(),
        };
        let progress = |n| {
            frame(Frame::Progress(pb::Progress {
                vector: Some(vector(n)),
            }))
        };
        assert_eq!(check_sync_frame(&progress(MAX_VECTOR_ORIGINS)), Ok(()));
        assert_eq!(
            check_sync_frame(&progress(MAX_VECTOR_ORIGINS + 1)),
            Err(ShapeError::TooManyOrigins {
                what: "a version vector",
                max: MAX_VECTOR_ORIGINS
            })
        );
        let hello = |vector_origins, reaches: usize| {
            frame(Frame::Hello(pb::Hello {
                org_id: "AU".into(),
                vector: Some(vector(vector_origins)),
                reaches: vec![String::new(); reaches],
                ..Default::default()
            }))
        };
        assert_eq!(check_sync_frame(&hello(3, MAX_VECTOR_ORIGINS)), Ok(()));
        assert!(matches!(
            check_sync_frame(&hello(MAX_VECTOR_ORIGINS + 1, 0)),
            Err(ShapeError::TooManyOrigins {
                what: "a version vector",
                ..
            })
        ));
        assert!(matches!(
            check_sync_frame(&hello(3, MAX_VECTOR_ORIGINS + 1)),
            Err(ShapeError::TooManyOrigins {
                what: "a hello's reaches",
                ..
            })
        ));
    }

    #[test]
    fn repeated_occurrences_of_a_vector_count_together() {
        // prost merges a field written twice into one message: two progress fields of half
        // the cap and a bit more each decode to one vector over the cap.
        use pb::sync_frame::Frame;
        let half = |from: usize| {
            frame(Frame::Progress(pb::Progress {
                vector: Some(pb::VersionVector {
                    heads: (from..from + MAX_VECTOR_ORIGINS / 2 + 1)
                        .map(|i| (format!("O{i}"), 1))
                        .collect(),
                    head_hashes: Default::default(),
                }),
            }))
        };
        let one = half(0);
        assert_eq!(check_sync_frame(&one), Ok(()));
        let mut twice = one.clone();
        twice.extend(half(MAX_VECTOR_ORIGINS));
        let merged = pb::SyncFrame::decode(twice.as_slice()).unwrap();
        let Some(Frame::Progress(p)) = merged.frame else {
            panic!("a progress frame")
        };
        assert!(
            p.vector.unwrap().heads.len() > MAX_VECTOR_ORIGINS,
            "prost merged them"
        );
        assert!(matches!(
            check_sync_frame(&twice),
            Err(ShapeError::TooManyOrigins { .. })
        ));
    }

    #[test]
    fn elements_past_a_frames_cap_are_refused_before_decoding_even_split_in_two() {
        use pb::sync_frame::Frame;
        let asks = |n: usize| {
            frame(Frame::Want(pb::Want {
                entries: (0..n)
                    .map(|i| pb::EntryRef {
                        origin: "A".into(),
                        seq: i as u64 + 1,
                    })
                    .collect(),
            }))
        };
        assert_eq!(check_sync_frame(&asks(MAX_FRAME_ASKS)), Ok(()));
        let over = Err(ShapeError::TooManyElements {
            what: "EntryRef",
            max: MAX_FRAME_ASKS,
        });
        assert_eq!(check_sync_frame(&asks(MAX_FRAME_ASKS + 1)), over);
        // Two Want fields in one frame decode to one Want of both.
        let mut twice = asks(MAX_FRAME_ASKS / 2 + 1);
        twice.extend(asks(MAX_FRAME_ASKS / 2));
        assert_eq!(check_sync_frame(&twice), over);
        let entries = |n| {
            frame(Frame::Entries(pb::EntryBatch {
                entries: vec![entry(); n],
            }))
        };
        assert_eq!(check_sync_frame(&entries(MAX_FRAME_ENTRIES)), Ok(()));
        assert_eq!(
            check_sync_frame(&entries(MAX_FRAME_ENTRIES + 1)),
            Err(ShapeError::TooManyElements {
                what: "SignedEntry",
                max: MAX_FRAME_ENTRIES,
            })
        );
        let relays = |n: usize| {
            frame(Frame::Relays(pb::Relays {
                orgs: (0..n).map(|i| format!("HUB-{i}")).collect(),
            }))
        };
        assert_eq!(check_sync_frame(&relays(MAX_FRAME_RELAYS)), Ok(()));
        assert_eq!(
            check_sync_frame(&relays(MAX_FRAME_RELAYS + 1)),
            Err(ShapeError::TooManyElements {
                what: "relay org",
                max: MAX_FRAME_RELAYS,
            })
        );
        assert_eq!(
            check_sync_frame(&frame(Frame::Relays(pb::Relays {
                orgs: vec![String::new()],
            }))),
            Err(ShapeError::ShortElement {
                what: "relay org",
                len: 0,
                min: 1,
            })
        );
    }

    #[test]
    fn broken_wire_format_is_malformed_not_a_panic() {
        let whole = frame(pb::sync_frame::Frame::Entries(pb::EntryBatch {
            entries: vec![entry(); 2],
        }));
        for cut in 1..whole.len() {
            let r = check_sync_frame(&whole[..cut]);
            assert!(
                matches!(r, Err(ShapeError::Malformed(_))),
                "cut at {cut}: {r:?}"
            );
        }
        for bad in [
            &[0xffu8; 11][..],
            &[0x0b],
            &[
                0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ] {
            assert!(
                matches!(check_sync_frame(bad), Err(ShapeError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
