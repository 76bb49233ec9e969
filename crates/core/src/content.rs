//! What a payload says once decoded and checked ([`Content`]): an indicator upsert, revocation
//! or sighting whose indicator is in canonical form, a control-plane entry (a roster version or
//! checkpoint), or a sealed envelope.

use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::indicator::{normalize, Indicator, IndicatorType};
use crate::payload::{MAX_NONCE_LEN, MIN_NONCE_LEN};
use crate::verify_error::PayloadDefect;

/// The decoded, checked content of an indicator payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    pub indicator: Indicator,
    pub body: pb::payload::Body,
}

/// The payload of a control-plane entry: a roster version (only in the authority's log) or a
/// member's roster checkpoint. Neither names an indicator.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    Roster(pb::SignedRoster),
    Checkpoint(pb::RosterCheckpoint),
}

/// What a payload carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Indicator(Payload),
    Control(Control),
    /// An envelope sealed to the origin and the recipients, well-formed; only a reader can
    /// open it ([`VerifiedEntry::open_as`]).
    Sealed,
}

impl Content {
    pub fn indicator(self) -> Option<Payload> {
        match self {
            Content::Indicator(p) => Some(p),
            Content::Control(_) | Content::Sealed => None,
        }
    }
}

/// Decodes a payload and checks its nonce and, for an indicator payload, that its indicator is
/// in canonical form.
pub fn decode_content(bytes: &[u8]) -> Result<Content, PayloadDefect> {
    use pb::payload::Body;
    let payload =
        pb::Payload::decode(bytes).map_err(|e| PayloadDefect::Undecodable(e.to_string()))?;
    if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&payload.nonce.len()) {
        return Err(PayloadDefect::Nonce(payload.nonce.len()));
    }
    let body = payload.body.ok_or(PayloadDefect::MissingBody)?;
    let indicator = match &body {
        Body::Roster(r) => return Ok(Content::Control(Control::Roster(r.clone()))),
        Body::Checkpoint(c) => return Ok(Content::Control(Control::Checkpoint(c.clone()))),
        Body::Upsert(u) if u.confidence > 100 => {
            return Err(PayloadDefect::Confidence(u.confidence))
        }
        Body::Sighting(s) if s.count == 0 => return Err(PayloadDefect::ZeroCount),
        Body::Upsert(pb::IndicatorUpsert { indicator, .. })
        | Body::Revoke(pb::IndicatorRevoke { indicator, .. })
        | Body::Sighting(pb::Sighting { indicator, .. }) => {
            indicator.as_ref().ok_or(PayloadDefect::MissingIndicator)?
        }
    };
    let indicator = canonical_indicator(indicator)?;
    Ok(Content::Indicator(Payload { indicator, body }))
}

/// [`decode_content`] of a payload that must carry an indicator; `Ok(None)` for a control
/// payload (a roster version or checkpoint), which has none.
pub fn decode_payload(bytes: &[u8]) -> Result<Option<Payload>, PayloadDefect> {
    decode_content(bytes).map(Content::indicator)
}

fn canonical_indicator(wire: &pb::IndicatorRef) -> Result<Indicator, PayloadDefect> {
    let ty =
        IndicatorType::from_proto(wire.r#type).ok_or(PayloadDefect::UnknownType(wire.r#type))?;
    let indicator = normalize(ty, &wire.value).map_err(PayloadDefect::InvalidValue)?;
    if indicator.value() != wire.value {
        return Err(PayloadDefect::NotCanonical {
            value: wire.value.chars().take(256).collect(),
            canonical: indicator.into_value(),
        });
    }
    Ok(indicator)
}
