//! `intelmesh.v1.LookupResponse`, written by hand so a server can send answers it encoded
//! already, where it worked them out.
//!
//! A large lookup is answered in chunks on blocking threads. Encoded there, each answer's
//! strings and vectors are freed by the thread that made them, once, instead of living until
//! the response is encoded on a runtime thread and freed there (a free from another thread
//! costs the allocator a trip through that thread's queue), and the bytes a chunk adds are the
//! exact measure of its answers for the call's size budget. On the wire nothing changes: a run
//! of encoded answers is field 1 repeated, as `results` is, so a decoder sees one list.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{message, skip_field, DecodeContext, WireType};
use prost::DecodeError;

use crate::v1::LookupResult;

/// The answers of a `Lookup` call, one per value, in request order: `results` first, then
/// the runs of `encoded_results`. Decoding puts every answer in `results`.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct LookupResponse {
    pub results: Vec<LookupResult>,
    /// Answers already encoded, each run a sequence of field 1 as [`encode_result`] writes it.
    pub encoded_results: Vec<Bytes>,
}

/// The field number of `results` (`repeated LookupResult results = 1`).
const RESULTS: u32 = 1;

/// The field number of `LookupResult.input`.
const INPUT: u32 = 1;

/// Appends `result` to `out` as one element of `results` would be encoded.
pub fn encode_result(result: &LookupResult, out: &mut impl BufMut) {
    message::encode(RESULTS, result, out);
}

/// Appends `result` as [`encode_result`] would with its `input` set to `input`, so an answer
/// need not own a copy of the value it answers; `result.input` is left empty. `scratch` is a
/// buffer reused from one answer to the next.
pub fn encode_result_for(
    input: &str,
    result: &LookupResult,
    scratch: &mut Vec<u8>,
    out: &mut impl BufMut,
) {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len};
    use prost::Message as _;
    debug_assert!(result.input.is_empty(), "the input is written from `input`");
    scratch.clear();
    result.encode_raw(scratch);
    // `input` is field 1 of the result, so prost writes it first: the bytes are the same.
    let input_field = match input.len() {
        0 => 0,
        len => key_len(INPUT) + encoded_len_varint(len as u64) + len,
    };
    encode_key(RESULTS, WireType::LengthDelimited, out);
    encode_varint((input_field + scratch.len()) as u64, out);
    if !input.is_empty() {
        encode_key(INPUT, WireType::LengthDelimited, out);
        encode_varint(input.len() as u64, out);
        out.put_slice(input.as_bytes());
    }
    out.put_slice(scratch);
}

impl prost::Message for LookupResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for result in &self.results {
            encode_result(result, buf);
        }
        for run in &self.encoded_results {
            buf.put_slice(run);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            RESULTS => {
                message::merge_repeated(wire_type, &mut self.results, buf, ctx).map_err(|mut e| {
                    e.push("LookupResponse", "results");
                    e
                })
            }
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        message::encoded_len_repeated(RESULTS, &self.results)
            + self.encoded_results.iter().map(Bytes::len).sum::<usize>()
    }

    fn clear(&mut self) {
        self.results.clear();
        self.encoded_results.clear();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn answer(input: &str, verdict: crate::v1::Verdict) -> LookupResult {
        LookupResult {
            input: input.to_owned(),
            verdict: verdict as i32,
            origins: vec!["FR".to_owned()],
            ..Default::default()
        }
    }

    #[test]
    fn encoded_runs_decode_as_results_after_the_listed_ones() {
        use crate::v1::Verdict;
        let (a, b, c) = (
            answer("1.2.3.4", Verdict::Malicious),
            answer("example.org", Verdict::Unknown),
            answer("bad", Verdict::Unknown),
        );
        let mut run = Vec::new();
        encode_result(&b, &mut run);
        encode_result(&c, &mut run);
        let sent = LookupResponse {
            results: vec![a.clone()],
            encoded_results: vec![Bytes::from(run)],
        };
        let bytes = sent.encode_to_vec();
        assert_eq!(bytes.len(), sent.encoded_len());
        let got = LookupResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(got.results, vec![a, b, c]);
        assert!(got.encoded_results.is_empty());
    }

    #[test]
    fn the_same_answers_encode_alike_listed_or_encoded() {
        let results = vec![
            answer("1.2.3.4", crate::v1::Verdict::Seen),
            answer("2.3.4.5", crate::v1::Verdict::Revoked),
        ];
        let mut run = Vec::new();
        results.iter().for_each(|r| encode_result(r, &mut run));
        let listed = LookupResponse {
            results,
            ..Default::default()
        };
        let encoded = LookupResponse {
            encoded_results: vec![Bytes::from(run)],
            ..Default::default()
        };
        assert_eq!(listed.encode_to_vec(), encoded.encode_to_vec());
    }

    #[test]
    fn an_answer_encoded_for_a_borrowed_input_is_the_answer_encoded_with_it() {
        let mut scratch = Vec::new();
        for input in ["1.2.3.4", "", &"x".repeat(300)] {
            let with = LookupResult {
                input: input.to_owned(),
                ..answer("", crate::v1::Verdict::Malicious)
            };
            let without = LookupResult {
                input: String::new(),
                ..with.clone()
            };
            let (mut owned, mut borrowed) = (Vec::new(), Vec::new());
            encode_result(&with, &mut owned);
            encode_result_for(input, &without, &mut scratch, &mut borrowed);
            assert_eq!(borrowed, owned, "input of {} bytes", input.len());
        }
    }

    #[test]
    fn a_truncated_answer_is_a_decode_error() {
        let mut run = Vec::new();
        encode_result(&answer("1.2.3.4", crate::v1::Verdict::Seen), &mut run);
        run.pop();
        assert!(LookupResponse::decode(run.as_slice()).is_err());
    }
}
