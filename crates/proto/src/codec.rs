//! The gRPC codec of every intelmesh service: prost's, with a `SyncFrame` checked for its
//! shape ([`crate::shape`]) before it is decoded, on both ends of a federation link, and an
//! API request for what it would decode to ([`crate::api_shape`]).

use std::any::TypeId;
use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder};

use crate::api_shape::check_request;
use crate::shape::{check_sync_frame, ShapeError};
use crate::v1::SyncFrame;

/// What the generated services and clients use (`codec_path` in `build.rs`).
#[derive(Debug, Clone)]
pub struct BoundedCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        BoundedCodec {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ReservingEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ReservingEncoder {
            buffer_settings: self.inner.encoder().buffer_settings(),
            _encodes: PhantomData,
        }
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder {
            inner: self.inner.decoder(),
            _decodes: PhantomData,
        }
    }
}

/// Prost's encoder, but the buffer is grown to the message's length before it is written.
///
/// Why: tonic's buffer starts at 8 KiB and prost writes into it piece by piece, so a large
/// message (a `Lookup` answer of 10,000 values is about a megabyte) grew it by doubling, each
/// step a fresh allocation, a copy of what was written and, for the larger steps, fresh pages
/// the kernel zeroed: 1.3% of a lookup's CPU at 10M, beside the 2.3% of writing it once.
/// Prost computes the length before it writes anyway (to check the room), so this costs nothing.
#[derive(Debug, Clone)]
pub struct ReservingEncoder<T> {
    buffer_settings: BufferSettings,
    _encodes: PhantomData<T>,
}

impl<T: Message> Encoder for ReservingEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode_raw(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.buffer_settings
    }
}

/// The messages the services take as requests (a `SyncFrame` both ways), with their names.
fn requests() -> [(TypeId, &'static str); 17] {
    use crate::v1 as pb;
    fn of<T: 'static>(name: &'static str) -> (TypeId, &'static str) {
        (TypeId::of::<T>(), name)
    }
    [
        of::<pb::SubmitRequest>("SubmitRequest"),
        of::<pb::GetRequest>("GetRequest"),
        of::<pb::QueryRequest>("QueryRequest"),
        of::<pb::LookupRequest>("LookupRequest"),
        of::<pb::WatchRequest>("WatchRequest"),
        of::<pb::ReportSightingRequest>("ReportSightingRequest"),
        of::<pb::StatusRequest>("StatusRequest"),
        of::<pb::SyncFrame>("SyncFrame"),
        of::<pb::ListMembersRequest>("ListMembersRequest"),
        of::<pb::ProposeRequest>("ProposeRequest"),
        of::<pb::ProposalRef>("ProposalRef"),
        of::<pb::ListProposalsRequest>("ListProposalsRequest"),
        of::<pb::SignProposalRequest>("SignProposalRequest"),
        of::<pb::GetRosterRequest>("GetRosterRequest"),
        of::<pb::IssueBundleRequest>("IssueBundleRequest"),
        of::<pb::FederationStatusRequest>("FederationStatusRequest"),
        of::<pb::AuditRequest>("AuditRequest"),
    ]
}

fn is_request<U: 'static>() -> bool {
    let t = TypeId::of::<U>();
    requests().iter().any(|(r, _)| *r == t)
}

/// Prost's decoder, behind the shape check for `SyncFrame`.
#[derive(Debug)]
pub struct BoundedDecoder<U> {
    inner: ProstDecoder<U>,
    _decodes: PhantomData<U>,
}

impl<U: Message + Default + 'static> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // A message is handed over whole, in one contiguous chunk; were it not, a check
        // would see a prefix and refuse it as malformed, never let it through.
        let whole = buf.chunk();
        let whole = &whole[..whole.len().min(buf.remaining())];
        let checked = if TypeId::of::<U>() == TypeId::of::<SyncFrame>() {
            check_sync_frame(whole)
        } else {
            check_request::<U>(whole)
        };
        checked.map_err(|e| match e {
            // Too much, as a message over the size cap is: counted as a size refusal.
            ShapeError::TooManyElements { .. } => Status::resource_exhausted(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        })?;
        // Prost's decoder calls a message that does not decode an INTERNAL error, which
        // blames the receiver; a request's sender is at fault. (A response that does not
        // decode stays INTERNAL: the client's caller did nothing wrong.)
        self.inner.decode(buf).map_err(|e| match e.code() {
            Code::Internal if is_request::<U>() => Status::invalid_argument(e.message().to_owned()),
            _ => e,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_of_the_services_is_known_as_one() {
        let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        let mut inputs: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| &f.service)
            .flat_map(|s| &s.method)
            .filter_map(|m| m.input_type.as_deref())
            .map(|t| t.trim_start_matches(".intelmesh.v1.").to_string())
            .collect();
        inputs.sort();
        inputs.dedup();
        let mut known: Vec<String> = requests().iter().map(|(_, n)| n.to_string()).collect();
        known.sort();
        assert_eq!(known, inputs);
        assert!(is_request::<crate::v1::ProposalRef>());
        assert!(!is_request::<crate::v1::StatusResponse>());
    }
}
