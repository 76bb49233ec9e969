//! Content-derived object ids: the UUID naming one origin's assertion about an indicator, or
//! one reporter's sightings of it, wherever the mesh shows them (STIX export, TAXII) and
//! wherever they are looked up (the store's id postings).
//!
//! They are name-based version 5 UUIDs (RFC 9562: SHA-1 of a namespace and the name) of the
//! parts: the same origin and value give the same id on every node and in every export, so a
//! consumer updates rather than duplicates, and a node finds the indicator behind an id
//! without any table of issued ids. Version 5 because STIX 2.1 validators accept only
//! versions 1 to 5 (a version 8 id, SHA-256 based, was refused by stix2-validator); SHA-1's
//! weakness does not matter here, the id is a name, not a commitment.

use sha1::{Digest, Sha1};

use crate::entry::Tlp;
use crate::indicator::IndicatorType;

/// The namespace of every intelmesh object id: fixed once, drawn at random; changing it
/// would rename every object.
const NAMESPACE: [u8; 16] = [
    0x3c, 0x5b, 0x0e, 0x1f, 0x8a, 0x44, 0x5d, 0x2b, 0x9e, 0x61, 0x07, 0xd4, 0x52, 0xa9, 0x3f, 0x70,
];

/// The version 5 UUID of length-prefixed `parts`, so no two part lists hash the same name.
pub fn name_uuid(parts: &[&str]) -> [u8; 16] {
    let mut hasher = Sha1::new();
    hasher.update(NAMESPACE);
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// A random (version 4) UUID, as TAXII asks of a status resource's id.
pub fn random_uuid() -> [u8; 16] {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// The UUID of `origin`'s assertion about `indicator` (a STIX `indicator--` id).
pub fn assertion_uuid(origin: &str, ty: IndicatorType, value: &str) -> [u8; 16] {
    name_uuid(&["indicator", origin, ty.as_str(), value])
}

/// The UUID of `reporter`'s sightings of `indicator` shared under `tlp` (a STIX `sighting--`
/// id): one object per reporter and TLP, as the index keeps them, whose versions are its
/// later sightings.
pub fn sightings_uuid(reporter: &str, tlp: Tlp, ty: IndicatorType, value: &str) -> [u8; 16] {
    let tlp = (tlp.to_proto() as i32).to_string();
    name_uuid(&["sighting", reporter, &tlp, ty.as_str(), value])
}

/// The 8-4-4-4-12 lowercase form.
pub fn format_uuid(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Written byte by byte: ids are formatted for every object a TAXII page or export shows.
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// The bytes of an 8-4-4-4-12 UUID in either case; `None` for any other text.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    let shaped = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n);
    if !shaped || !text.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
        return None;
    }
    let hex: String = groups.concat();
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(b)
}

#[cfg(test)]
mod tests {

    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_ne!(a, b);
        let text = format_uuid(&a);
        assert_eq!(text.as_bytes()[14], b'4', "{text}");
        assert!(
            matches!(text.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
            "{text}"
        );
    }

    use super::*;
    use crate::indicator::normalize;

    #[test]
    fn uuids_are_version_5_and_round_trip() {
        let d = normalize(IndicatorType::Domain, "evil.example").unwrap();
        let u = assertion_uuid("AU-AFP", d.ty(), d.value());
        let text = format_uuid(&u);
        assert_eq!(&text[14..15], "5", "version 5: {text}");
        assert!(
            matches!(&text[19..20], "8" | "9" | "a" | "b"),
            "RFC variant: {text}"
        );
        assert_eq!(parse_uuid(&text), Some(u));
        let counting: [u8; 16] = core::array::from_fn(|i| (i as u8) * 17);
        assert_eq!(
            format_uuid(&counting),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert_eq!(parse_uuid(&text.to_uppercase()), Some(u));
        assert_ne!(u, assertion_uuid("BR-PF", d.ty(), d.value()));
        assert_ne!(u, sightings_uuid("AU-AFP", Tlp::Green, d.ty(), d.value()));
        assert_ne!(
            sightings_uuid("AU-AFP", Tlp::Green, d.ty(), d.value()),
            sightings_uuid("AU-AFP", Tlp::Red, d.ty(), d.value())
        );
        for bad in [
            "",
            "x",
            "0000000-00000-0000-0000-000000000000",
            "zzzzzzzz-0000-0000-0000-000000000000",
            "+0000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }
}
