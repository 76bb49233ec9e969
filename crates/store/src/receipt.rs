//! Receipts of the node's own publications, by idempotency key: a client that lost the answer to
//! a Submit repeats it with the same key and gets the first answer back, and nothing is signed
//! twice. A receipt is written in the same batch as the entries it describes, so it exists
//! exactly when they are durable; receipts older than [`RECEIPT_TTL_MS`] are pruned as new ones
//! are written.

use intelmesh_core::Hash;

use crate::StoreError;

/// How long a receipt answers repeats: a day, longer than any client's retries.
pub const RECEIPT_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Longest idempotency key accepted, in bytes (callers scope it further by caller).
pub const MAX_RECEIPT_KEY: usize = 256;
/// Receipts pruned per write, so pruning never makes one publication slow.
pub(crate) const PRUNE_PER_WRITE: usize = 64;

/// What the store keeps of one publication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Digest of the request, so a key reused for another request is told apart.
    pub request: Hash,
    pub at_unix_ms: i64,
    /// The answer given, encoded by the caller.
    pub answer: Vec<u8>,
}

const RECEIPT: u8 = b'R';
const RECEIPT_AGE: u8 = b'T';

pub(crate) fn key(scoped: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + scoped.len());
    k.push(RECEIPT);
    k.extend_from_slice(scoped);
    k
}

/// The key that orders receipts by age: `T`, time (i64 BE, offset so it sorts), key.
pub(crate) fn age_key(at_unix_ms: i64, scoped: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + scoped.len());
    k.push(RECEIPT_AGE);
    k.extend_from_slice(&((at_unix_ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(scoped);
    k
}

pub(crate) fn age_prefix() -> [u8; 1] {
    [RECEIPT_AGE]
}

/// The time and receipt key an age key names.
pub(crate) fn parse_age_key(k: &[u8]) -> Option<(i64, &[u8])> {
    let time = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?) ^ (1 << 63);
    Some((time as i64, k.get(9..)?))
}

pub(crate) fn encode(r: &Receipt) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + r.answer.len());
    v.extend_from_slice(&r.request);
    v.extend_from_slice(&r.at_unix_ms.to_be_bytes());
    v.extend_from_slice(&r.answer);
    v
}

pub(crate) fn decode(v: &[u8]) -> Result<Receipt, StoreError> {
    let bad = || StoreError::Corrupt("a publication receipt does not decode".into());
    let request: Hash = v.get(..32).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
    let at = i64::from_be_bytes(
        v.get(32..40)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    Ok(Receipt {
        request,
        at_unix_ms: at,
        answer: v[40..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip_and_age_keys_sort_by_time() {
        let r = Receipt {
            request: [7; 32],
            at_unix_ms: 1_700_000_000_000,
            answer: b"answer".to_vec(),
        };
        assert_eq!(decode(&encode(&r)).unwrap(), r);
        assert!(decode(&[1, 2, 3]).is_err());
        let (a, b) = (age_key(-5, b"x"), age_key(1_700_000_000_000, b"a"));
        assert!(a < b);
        assert_eq!(parse_age_key(&b), Some((1_700_000_000_000, &b"a"[..])));
    }
}
