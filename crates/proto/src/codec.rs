//! The gRPC codec of every intelmesh service: prost's, with a `SyncFrame` checked for its
//! shape ([`crate::shape`]) before it is decoded, on both ends of a federation link, and an
//! API request for what it would decode to ([`crate::api_shape`]).

use std::any::TypeId;
use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::api_shape::check_request;
use crate::shape::check_sync_frame;
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
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder {
            inner: self.inner.decoder(),
            _decodes: PhantomData,
        }
    }
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
        checked.map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Prost's decoder calls a message that does not decode an INTERNAL error, which
        // blames the receiver; the sender's bytes are at fault.
        self.inner.decode(buf).map_err(|e| match e.code() {
            Code::Internal => Status::invalid_argument(e.message().to_owned()),
            _ => e,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}
