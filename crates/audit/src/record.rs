//! One audit record, its canonical line (fixed field order, then its own hash), the head that
//! anchors a trail's end, and the trail's file names.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ValueDigest;

/// Value digests one record holds at most: a bulk lookup of 300k values is recorded as one
/// call over several records (`part` 1..=`parts`), each line about 35 KB, so a reader or the
/// writer never holds a line of megabytes, and no digest is dropped.
pub const DIGESTS_PER_RECORD: usize = 1000;

/// Domain separation of a record's hash.
const RECORD_CONTEXT: &[u8] = b"intelmesh/v1 audit-record\0";
/// The field a line ends with: `,"hash":"<64 hex>"}`.
const HASH_FIELD: &str = ",\"hash\":\"";

/// Who called: the org and name from its certificate (or TAXII user), and the role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// Empty when the caller named nobody (no or unreadable certificate, wrong password).
    pub org: String,
    pub name: String,
    /// `service`, `admin`, `node`, `taxii-user`, or `none`.
    pub role: String,
}

/// One API call, as the node hands it to the trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// When the call came in (Unix ms).
    pub time_ms: i64,
    pub caller: Caller,
    /// `Indicators/Lookup`, `TAXII GET /intelmesh/collections/{collection}/objects/`, …
    pub method: String,
    /// Values the call asked about or published (0 for filters and other calls).
    pub values: u64,
    /// Keyed digests of those values (see [`crate::AuditKey`]), in request order; written as
    /// hex straight into the record (a lookup's call names thousands).
    pub digests: Vec<ValueDigest>,
    /// gRPC status code (0 = OK) or HTTP status.
    pub code: u32,
    /// The code's name (`OK`, `PermissionDenied`, `HTTP 401`); never the error message,
    /// which may quote the values.
    pub result: String,
}

/// A record as a line holds it, in this field order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub time_ms: i64,
    pub org: String,
    pub name: String,
    pub role: String,
    pub method: String,
    pub values: u64,
    pub part: u32,
    pub parts: u32,
    pub digests: Vec<String>,
    pub code: u32,
    pub result: String,
    /// Hex hash of the record before (64 zeros for the first).
    pub prev: String,
}

/// The end of a chain: the last record's seq and hash (seq 0 and zeros before any record).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    #[serde(with = "hex_hash")]
    pub hash: [u8; 32],
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        super::parse_hash(&text).ok_or_else(|| serde::de::Error::custom("not 64 hex digits"))
    }
}

impl Head {
    /// The head as its file holds it (one JSON line).
    pub fn encode(&self) -> String {
        // A struct of an integer and a string always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<Head, String> {
        serde_json::from_str(text.trim()).map_err(|e| e.to_string())
    }
}

/// Where a trail begins once its earliest files were archived (`intelmesh audit archive`): its
/// first file, and the last archived record, which the first record kept links to. A trail
/// without one begins at the first file and seq 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub file: u64,
    pub after: Head,
}

impl Start {
    /// As its file holds it (one JSON line).
    pub fn encode(&self) -> String {
        // A struct of integers and a string always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<Start, String> {
        let start: Start = serde_json::from_str(text.trim()).map_err(|e| e.to_string())?;
        match start.file {
            0 => Err("file 0: trail files are numbered from 1".into()),
            _ => Ok(start),
        }
    }
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// A parsed line: its record and the hash it states (checked against its bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub record: Record,
    pub hash: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("the line is not an audit record: {0}")]
    NotARecord(String),
    #[error("the record's bytes do not hash to the hash it states")]
    HashMismatch,
}

fn record_hash(body: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(RECORD_CONTEXT)
        .chain_update(body)
        .finalize()
        .into()
}

/// [`seal_into`]'s lines one by one, for tests that edit a trail line by line.
#[cfg(test)]
pub(crate) fn seal(head: &mut Head, call: &Call) -> Vec<String> {
    let mut out = Vec::new();
    seal_into(head, call, &mut out);
    // Each line is JSON text and its newline.
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect()
}

/// About what a digest takes in a record: 32 hex digits, quotes and a comma.
const DIGEST_TEXT: usize = 35;
/// About what a record takes besides its digests.
const RECORD_TEXT: usize = 512;

/// Turns `call` into its lines (one per [`DIGESTS_PER_RECORD`] digests, at least one), each
/// chained onto `head`, which moves to the last, and appends them to `out`, each ended by a
/// newline. A record is serialized once, straight into the buffer the trail writes, its hash
/// written after it in place. (Serialized into a string of its own, then copied with its hash
/// into a line, then into the buffer, a lookup's record of a thousand digests was copied three
/// times and its string grown by doubling: 1% of a lookup's CPU at 10M.)
pub fn seal_into(head: &mut Head, call: &Call, out: &mut Vec<u8>) {
    let chunks: Vec<&[ValueDigest]> = if call.digests.is_empty() {
        vec![&[]]
    } else {
        call.digests.chunks(DIGESTS_PER_RECORD).collect()
    };
    let parts = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    for (i, chunk) in chunks.into_iter().enumerate() {
        let seq = head.seq + 1;
        let record = RecordOut {
            seq,
            time_ms: call.time_ms,
            org: &call.caller.org,
            name: &call.caller.name,
            role: &call.caller.role,
            method: &call.method,
            values: call.values,
            part: u32::try_from(i + 1).unwrap_or(u32::MAX),
            parts,
            digests: chunk,
            code: call.code,
            result: &call.result,
            prev: hex::encode(head.hash),
        };
        out.reserve(RECORD_TEXT + chunk.len() * DIGEST_TEXT + call.result.len());
        let start = out.len();
        // Strings, integers and a list of strings always serialize (into memory).
        if serde_json::to_writer(&mut *out, &record).is_err() {
            out.truncate(start);
            out.extend_from_slice(b"{}");
        }
        let hash = record_hash(&out[start..]);
        // The record's closing brace goes after its hash field.
        out.pop();
        out.extend_from_slice(HASH_FIELD.as_bytes());
        let mut digits = [0u8; 64];
        // 32 bytes always fit 64 digits.
        if hex::encode_to_slice(hash, &mut digits).is_ok() {
            out.extend_from_slice(&digits);
        }
        out.extend_from_slice(b"\"}\n");
        *head = Head { seq, hash };
    }
}

/// A [`Record`] as [`seal_into`] writes it, borrowing the call's fields: a lookup's record holds a
/// thousand digests, which a `Record` would copy one by one.
#[derive(Serialize)]
struct RecordOut<'a> {
    seq: u64,
    time_ms: i64,
    org: &'a str,
    name: &'a str,
    role: &'a str,
    method: &'a str,
    values: u64,
    part: u32,
    parts: u32,
    digests: &'a [ValueDigest],
    code: u32,
    result: &'a str,
    prev: String,
}

/// Reads one line (without its newline): the record, if its bytes hash to the hash it states.
pub fn parse_line(line: &str) -> Result<Sealed, LineError> {
    let not = |why: &str| LineError::NotARecord(why.to_string());
    let at = line
        .rfind(HASH_FIELD)
        .ok_or_else(|| not("no \"hash\" field at its end"))?;
    let tail = &line[at + HASH_FIELD.len()..];
    let stated = tail
        .strip_suffix("\"}")
        .and_then(parse_hash)
        .ok_or_else(|| not("its \"hash\" is not 64 hex digits closing the line"))?;
    let body = format!("{}}}", &line[..at]);
    let record: Record =
        serde_json::from_str(&body).map_err(|e| LineError::NotARecord(e.to_string()))?;
    if record_hash(body.as_bytes()) != stated {
        return Err(LineError::HashMismatch);
    }
    Ok(Sealed {
        record,
        hash: stated,
    })
}

impl Record {
    /// The hash this record names as its predecessor's, if well formed.
    pub fn prev_hash(&self) -> Option<[u8; 32]> {
        parse_hash(&self.prev)
    }
}

/// The name of trail file `n` (from 1).
pub fn file_name(n: u64) -> String {
    format!("trail-{n:06}.jsonl")
}

/// The number of a trail file's name, `None` for other names.
pub fn file_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("trail-")?.strip_suffix(".jsonl")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}
