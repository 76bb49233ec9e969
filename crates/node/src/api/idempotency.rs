//! Idempotency keys of the publishing calls (`Submit`, `ReportSighting`), as plain functions:
//! whose key it is (the calling service's), and which request it stands for (a digest), so a
//! repeat is answered from the first call's receipt and a key reused for another request is
//! told apart.

use intelmesh_core::entry::sha256;
use intelmesh_core::{Hash, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_store::receipt::MAX_RECEIPT_KEY;
use prost::Message;

use super::view::Invalid;

/// A publishing request that may carry an idempotency key.
pub trait Repeatable: Message + Clone {
    /// Which call it is: the same key and bytes sent to another call are another request.
    const CALL: &'static str;
    fn idempotency_key(&self) -> &str;
    fn without_key(&self) -> Self;
}

impl Repeatable for pb::SubmitRequest {
    const CALL: &'static str = "Submit";
    fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }
    fn without_key(&self) -> Self {
        // Nor what it lets through: a run refused part way and run again with the same key and
        // `--force` or `--share-wider` added repeats the requests already published.
        pb::SubmitRequest {
            idempotency_key: String::new(),
            force: false,
            share_wider: false,
            ..self.clone()
        }
    }
}

impl Repeatable for pb::ReportSightingRequest {
    const CALL: &'static str = "ReportSighting";
    fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }
    fn without_key(&self) -> Self {
        pb::ReportSightingRequest {
            idempotency_key: String::new(),
            share_wider: false,
            ..self.clone()
        }
    }
}

/// The receipt key for `key` sent by service `service` of `org`: two services never share a
/// key, whatever they choose. `None` for the empty key (no protection asked for).
pub fn receipt_key(org: &OrgId, service: &str, key: &str) -> Result<Option<Vec<u8>>, Invalid> {
    if key.is_empty() {
        return Ok(None);
    }
    if key.len() > MAX_RECEIPT_KEY {
        return Err(Invalid(format!(
            "idempotency_key is {} bytes, over the {MAX_RECEIPT_KEY} allowed: use a shorter one (a random UUID is plenty)",
            key.len()
        )));
    }
    // Org ids hold no 0x00, and the service name is length-prefixed: no two scopes run into
    // each other.
    let mut scoped = Vec::with_capacity(org.as_str().len() + 5 + service.len() + key.len());
    scoped.extend_from_slice(org.as_str().as_bytes());
    scoped.push(0);
    scoped.extend_from_slice(&(service.len() as u32).to_be_bytes());
    scoped.extend_from_slice(service.as_bytes());
    scoped.extend_from_slice(key.as_bytes());
    Ok(Some(scoped))
}

/// What a repeat must match: SHA-256 over the call's name and the request's bytes without
/// its key. A client repeating a call sends the same message, so the same bytes.
pub fn request_digest<R: Repeatable>(request: &R) -> Hash {
    let mut bytes = b"intelmesh/v1 idempotent-request\0".to_vec();
    bytes.extend_from_slice(R::CALL.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&request.without_key().encode_to_vec());
    sha256(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).unwrap()
    }

    #[test]
    fn keys_are_scoped_by_service_and_bounded() {
        let au = org("AU-AFP");
        assert_eq!(receipt_key(&au, "soc", ""), Ok(None));
        let soc = receipt_key(&au, "soc", "k1").unwrap().unwrap();
        assert_ne!(Some(soc.clone()), receipt_key(&au, "fw", "k1").unwrap());
        assert_ne!(
            Some(soc.clone()),
            receipt_key(&org("BR-PF"), "soc", "k1").unwrap()
        );
        // A name that ends like another's key does not make the two meet.
        assert_ne!(
            receipt_key(&au, "so", "ck1").unwrap(),
            receipt_key(&au, "soc", "k1").unwrap()
        );
        let longest = "k".repeat(MAX_RECEIPT_KEY);
        assert!(receipt_key(&au, "soc", &longest).unwrap().is_some());
        let e = receipt_key(&au, "soc", &format!("{longest}k")).unwrap_err();
        assert!(e.0.contains("257 bytes, over the 256"), "{e}");
    }

    #[test]
    fn the_digest_ignores_the_key_and_tells_requests_and_calls_apart() {
        let submit = |key: &str, value: &str| pb::SubmitRequest {
            submissions: vec![pb::Submission {
                value: value.into(),
                ..Default::default()
            }],
            idempotency_key: key.into(),
            ..Default::default()
        };
        let d = request_digest(&submit("a", "evil.example"));
        assert_eq!(d, request_digest(&submit("b", "evil.example")));
        let overridden = pb::SubmitRequest {
            force: true,
            share_wider: true,
            ..submit("a", "evil.example")
        };
        assert_eq!(
            d,
            request_digest(&overridden),
            "the overrides are not the request"
        );
        assert_ne!(d, request_digest(&submit("a", "other.example")));
        let sighting = pb::ReportSightingRequest {
            value: "evil.example".into(),
            idempotency_key: "a".into(),
            ..Default::default()
        };
        assert_ne!(
            request_digest(&sighting),
            request_digest(&pb::SubmitRequest::default())
        );
        assert_ne!(
            request_digest(&pb::ReportSightingRequest::default()),
            request_digest(&pb::SubmitRequest::default()),
            "empty requests of two calls differ too"
        );
    }
}
