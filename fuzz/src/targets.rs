//! The targets, one per outside parser, with the property each checks beyond "no panic".

use std::path::Path;

use intelmesh_core::indicator::{detect, normalize};
use intelmesh_core::verify::{decode_content, read_stored, read_stored_opened, verify_entry};
use intelmesh_core::{Content, Indicator, IndicatorType, VerifiedEntry};
use intelmesh_node::config::Limits;
use intelmesh_node::federation::inspect::{inspect_frame, InspectConfig, Inspected};
use intelmesh_node::federation::Asked;
use intelmesh_node::keys::parse_registry;
use intelmesh_node::NodeConfig;
use intelmesh_proto::shape::MAX_FRAME_RELAYS;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::{check_document, Roster};
use prost::Message;

use crate::fixtures;

/// A canonical indicator normalizes to itself, and so does the host it names.
pub(crate) fn assert_canonical(indicator: &Indicator) {
    match normalize(indicator.ty(), indicator.value()) {
        Ok(again) => assert_eq!(
            &again, indicator,
            "normalizing a canonical value changed it"
        ),
        Err(e) => panic!("canonical {indicator:?} does not normalize again: {e}"),
    }
    if let Some(host) = indicator.host() {
        match normalize(host.ty(), host.value()) {
            Ok(again) => assert_eq!(again, host, "the host of {indicator:?} is not canonical"),
            Err(e) => panic!("host {host:?} of {indicator:?} does not normalize: {e}"),
        }
    }
}

/// A verified entry is what the store keeps: it must survive the store's round trip (encode,
/// decode, read back) unchanged, verify again, and carry a canonical indicator.
fn assert_entry_holds(v: &VerifiedEntry) {
    let bytes = v.raw().encode_to_vec();
    let decoded = pb::SignedEntry::decode(bytes.as_slice())
        .unwrap_or_else(|e| panic!("a verified entry does not decode once encoded: {e}"));
    assert_eq!(decoded.encode_to_vec(), bytes, "re-encoding is not stable");
    let again = verify_entry(
        decoded,
        fixtures::keys().as_ref(),
        &fixtures::verify_config(),
    )
    .unwrap_or_else(|e| panic!("a verified entry fails verification once re-encoded: {e}"));
    assert_eq!(again.hash(), v.hash());
    assert_eq!(again.header(), v.header());
    assert_eq!(again.payload(), v.payload());
    match read_stored(v.raw()) {
        Ok((header, payload)) => {
            assert_eq!(&header, v.header(), "read back, the header differs");
            assert_eq!(
                payload.as_ref(),
                v.payload(),
                "read back, the payload differs"
            );
        }
        Err(e) => panic!("a verified entry cannot be read back from the store: {e}"),
    }
    if let Some(p) = v.payload() {
        assert_canonical(&p.indicator);
    }
    // A sealed entry the peer reads: what it opens to is canonical, and what the store keeps
    // of it reads back as the same payload.
    let me = fixtures::peer();
    if v.is_sealed() {
        if let Ok(opened) = v.clone().open_as(&me, fixtures::peer_decryption_keys()) {
            if let Some(p) = opened.payload() {
                assert_canonical(&p.indicator);
                match read_stored_opened(opened.raw(), opened.opened()) {
                    Ok((_, again)) => assert_eq!(again.as_ref(), Some(p), "opened, read back"),
                    Err(e) => panic!("an opened entry cannot be read back: {e}"),
                }
            }
        }
    }
}

/// A Federation frame as a receiving node handles it, before its store: size cap, decode,
/// count caps, vectors and asks kept bounded, fork proofs and entry batches verified.
pub fn frame(data: &[u8]) {
    let keys = fixtures::keys();
    let members = keys.members().len();
    let cfg = InspectConfig {
        limits: Limits::default(),
        keys,
        verify: fixtures::verify_config(),
    };
    match inspect_frame(data, &cfg) {
        Inspected::Hello(r) | Inspected::Progress(r) => {
            assert!(r.heads.len() <= members, "a vector kept non-members");
            assert!(
                r.hashes.len() <= members,
                "a vector kept non-members' hashes"
            );
        }
        Inspected::Want { kept } => assert!(kept <= Asked::MAX, "asks kept beyond the cap"),
        Inspected::Relays(orgs) => {
            assert!(orgs.len() <= MAX_FRAME_RELAYS, "relays kept beyond the cap");
            assert!(orgs.windows(2).all(|w| w[0] < w[1]), "a relay kept twice");
        }
        Inspected::Entries(checked) => {
            for v in &checked.good {
                assert!(cfg.keys.is_member(&v.header().origin));
                assert_entry_holds(v);
            }
        }
        Inspected::TooLarge { .. }
        | Inspected::Undecodable(_)
        | Inspected::Empty
        | Inspected::Refused(_)
        | Inspected::Heartbeat
        | Inspected::Evidence { .. } => {}
    }
}

/// One signed entry through verification; one that verifies holds up (see
/// [`assert_entry_holds`]).
pub fn entry(data: &[u8]) {
    let Ok(raw) = pb::SignedEntry::decode(data) else {
        return;
    };
    if let Ok(v) = verify_entry(raw, fixtures::keys().as_ref(), &fixtures::verify_config()) {
        assert_entry_holds(&v);
    }
}

/// A payload's bytes through the decoder a receiver runs once the commitment matched: any
/// indicator it yields is canonical.
pub fn payload(data: &[u8]) {
    if let Ok(Content::Indicator(p)) = decode_content(data) {
        assert_canonical(&p.indicator);
    }
}

/// A value as an analyst types it (defanged, in any case, with spaces): detection and
/// normalization as each type yield canonical values, and normalizing is idempotent.
pub fn indicator(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(found) = detect(&text) {
        assert_canonical(&found);
    }
    for ty in IndicatorType::ALL {
        if let Ok(value) = normalize(ty, &text) {
            assert_eq!(value.ty(), ty, "normalizing as {ty:?} gave another type");
            assert_canonical(&value);
        }
    }
}

/// A node config file and a key registry file: parsed, and a parsed config validated (every
/// finding a message, never a panic).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = NodeConfig::from_text(text, Path::new("/fuzz/node.toml")) {
        for finding in cfg.problems() {
            assert!(
                !finding.to_string().is_empty(),
                "a finding without a message"
            );
        }
        let _ = cfg.org_id();
    }
    let _ = parse_registry(text);
}

/// A roster document and a signed roster as a node receives them: the document rules, and a
/// signed roster taken as a genesis. One that is followed re-checks to the same document.
pub fn roster(data: &[u8]) {
    let _ = check_document(data);
    let Ok(signed) = pb::SignedRoster::decode(data) else {
        return;
    };
    if let Ok(roster) = Roster::genesis(&signed, None) {
        match check_document(&roster.signed().document) {
            Ok(checked) => assert_eq!(&checked.document, roster.document()),
            Err(e) => panic!("a followed roster's document fails its own rules: {e}"),
        }
    }
}
