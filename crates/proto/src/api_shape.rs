//! A wire-level estimate of what an API request decodes to, checked before it is decoded.
//!
//! Why: decoding allocates per element. An empty `Submission` is 2 bytes on the wire and a
//! few hundred decoded, an empty string 2 bytes and 24 decoded, so an 8 MiB `Submit` of them
//! would cost a gigabyte before any count limit of the handler could look at it. The estimate
//! walks the request's fields with the few message types the API's requests nest (a
//! length-delimited field of no known message counts as a string), adding each message's size
//! and each string's, and refuses a request past [`MAX_DECODED_BYTES`]. The largest request
//! the handlers accept (10,000 submissions with their tags) stays far below it.

use std::any::TypeId;
use std::mem::size_of;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::shape::{for_each_field, ShapeError};
use crate::v1 as pb;

/// Most bytes one API request may decode to, as estimated here, unless a node allows more
/// ([`allow_decoded`]).
pub const MAX_DECODED_BYTES: usize = 64 << 20;

static ALLOWED: AtomicUsize = AtomicUsize::new(MAX_DECODED_BYTES);

/// Lets requests decode to `bytes` (never less than [`MAX_DECODED_BYTES`]): a node whose
/// message size is raised takes requests that much larger.
pub fn allow_decoded(bytes: usize) {
    ALLOWED.store(bytes.max(MAX_DECODED_BYTES), Ordering::Relaxed);
}

/// The API's request messages and the messages they nest.
#[derive(Clone, Copy, Debug)]
enum Kind {
    SubmitRequest,
    Submission,
    Distribution,
    Upsert,
    Revoke,
    IndicatorRef,
    ExternalReference,
    LookupRequest,
    GetRequest,
    QueryRequest,
    WatchRequest,
    Filter,
    ReportSightingRequest,
}

impl Kind {
    /// The kind of request `U` is, if it is one the API takes.
    fn of<U: 'static>() -> Option<Kind> {
        let t = TypeId::of::<U>();
        [
            (TypeId::of::<pb::SubmitRequest>(), Kind::SubmitRequest),
            (TypeId::of::<pb::LookupRequest>(), Kind::LookupRequest),
            (TypeId::of::<pb::GetRequest>(), Kind::GetRequest),
            (TypeId::of::<pb::QueryRequest>(), Kind::QueryRequest),
            (TypeId::of::<pb::WatchRequest>(), Kind::WatchRequest),
            (
                TypeId::of::<pb::ReportSightingRequest>(),
                Kind::ReportSightingRequest,
            ),
        ]
        .into_iter()
        .find_map(|(id, kind)| (id == t).then_some(kind))
    }

    fn size(self) -> usize {
        match self {
            Kind::SubmitRequest => size_of::<pb::SubmitRequest>(),
            Kind::Submission => size_of::<pb::Submission>(),
            Kind::Distribution => size_of::<pb::Distribution>(),
            Kind::Upsert => size_of::<pb::IndicatorUpsert>(),
            Kind::Revoke => size_of::<pb::IndicatorRevoke>(),
            Kind::IndicatorRef => size_of::<pb::IndicatorRef>(),
            Kind::ExternalReference => size_of::<pb::ExternalReference>(),
            Kind::LookupRequest => size_of::<pb::LookupRequest>(),
            Kind::GetRequest => size_of::<pb::GetRequest>(),
            Kind::QueryRequest => size_of::<pb::QueryRequest>(),
            Kind::WatchRequest => size_of::<pb::WatchRequest>(),
            Kind::Filter => size_of::<pb::Filter>(),
            Kind::ReportSightingRequest => size_of::<pb::ReportSightingRequest>(),
        }
    }

    /// The message a field of this kind holds, for the fields that hold messages.
    fn nested(self, field: u32) -> Option<Kind> {
        match (self, field) {
            (Kind::SubmitRequest, 1) => Some(Kind::Submission),
            (Kind::Submission, 3) | (Kind::ReportSightingRequest, 5) => Some(Kind::Distribution),
            (Kind::Submission, 4) => Some(Kind::Upsert),
            (Kind::Submission, 5) => Some(Kind::Revoke),
            (Kind::Upsert, 1) | (Kind::Revoke, 1) => Some(Kind::IndicatorRef),
            (Kind::Upsert, 8) => Some(Kind::ExternalReference),
            (Kind::QueryRequest, 1) | (Kind::WatchRequest, 1) => Some(Kind::Filter),
            _ => None,
        }
    }
}

/// Checks `request`, an encoded request of type `U`; messages the API does not take as
/// requests pass unchecked.
pub fn check_request<U: 'static>(request: &[u8]) -> Result<(), ShapeError> {
    match Kind::of::<U>() {
        Some(kind) => estimate(kind, request, 0, ALLOWED.load(Ordering::Relaxed)).map(|_| ()),
        None => Ok(()),
    }
}

/// What a message of `kind` encoded as `bytes` decodes to, at most, given `so_far` counted
/// before it in the request.
fn estimate(kind: Kind, bytes: &[u8], so_far: usize, max: usize) -> Result<usize, ShapeError> {
    let mut total = so_far + kind.size();
    for_each_field(bytes, |field, value| {
        total = match (kind.nested(field), value) {
            // A number: a singular one is in its message's size, one of an unpacked list
            // takes a slot of its own.
            (_, None) => total + size_of::<u64>(),
            (Some(inner), Some(value)) => estimate(inner, value, total, max)?,
            // A packed list of enums: four bytes each, from one byte on the wire.
            (None, Some(value)) if matches!((kind, field), (Kind::Filter, 1)) => {
                total + size_of::<Vec<i32>>() + 4 * value.len()
            }
            // A string or bytes.
            (None, Some(value)) => total + size_of::<String>() + value.len(),
        };
        if total > max {
            return Err(ShapeError::TooLarge { max });
        }
        Ok(())
    })?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A length-delimited field: its key byte, its length, `body`.
    fn field(key: u8, body: Vec<u8>) -> Vec<u8> {
        let mut out = vec![key];
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend(body);
        out
    }

    fn submission(value: &str, tags: usize) -> pb::Submission {
        pb::Submission {
            r#type: pb::IndicatorType::Domain as i32,
            value: value.into(),
            distribution: Some(pb::Distribution {
                tlp: pb::Tlp::Green as i32,
                recipients: vec![],
            }),
            body: Some(pb::submission::Body::Upsert(pb::IndicatorUpsert {
                confidence: 80,
                tags: (0..tags).map(|t| format!("campaign-tag-{t}")).collect(),
                description: "seen in phishing mail".into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn the_largest_request_the_api_takes_passes() {
        let request = pb::SubmitRequest {
            submissions: (0..10_000)
                .map(|i| submission(&format!("host-{i}.evil.example"), 16))
                .collect(),
            idempotency_key: "k".into(),
            ..Default::default()
        };
        assert_eq!(
            check_request::<pb::SubmitRequest>(&request.encode_to_vec()),
            Ok(())
        );
        let lookup = pb::LookupRequest {
            values: (0..10_000)
                .map(|i| format!("198.51.100.{}", i % 256))
                .collect(),
        };
        assert_eq!(
            check_request::<pb::LookupRequest>(&lookup.encode_to_vec()),
            Ok(())
        );
    }

    #[test]
    fn requests_of_many_tiny_elements_are_refused_before_decoding() {
        // 4 million empty submissions: 8 MiB on the wire, gigabytes decoded.
        let empty_submissions = vec![0x0a, 0x00].repeat(4 << 20);
        // Empty strings: a Lookup's values, an upsert's tags.
        let empty_values = vec![0x0a, 0x00].repeat(4 << 20);
        let mut tags = Vec::new();
        for _ in 0..(3 << 20) {
            tags.extend_from_slice(&[0x2a, 0x00]);
        }
        let one_submission = field(0x0a, field(0x22, tags));
        let too_large = Err(ShapeError::TooLarge {
            max: MAX_DECODED_BYTES,
        });
        assert_eq!(
            check_request::<pb::SubmitRequest>(&empty_submissions),
            too_large
        );
        assert_eq!(check_request::<pb::LookupRequest>(&empty_values), too_large);
        assert_eq!(
            check_request::<pb::SubmitRequest>(&one_submission),
            too_large
        );
        // Not an API request: not this check's to refuse.
        assert_eq!(check_request::<pb::SubmitResponse>(&empty_values), Ok(()));
        // Not protobuf at all.
        assert!(matches!(
            check_request::<pb::LookupRequest>(&[0x0a, 0xff]),
            Err(ShapeError::Malformed(_))
        ));
    }
}
