//! Generated protobuf messages and gRPC stubs of the `intelmesh.v1` package, and the codec
//! they use (prost's, with a federation frame's shape checked before it is decoded).
#![allow(clippy::all, missing_docs)]

pub mod api_shape;
pub mod codec;
pub mod lookup_response;
pub mod shape;

pub mod v1 {
    tonic::include_proto!("intelmesh.v1");

    pub use crate::lookup_response::LookupResponse;

    impl SignedEntry {
        /// A copy holding its own bytes. A decoded entry's fields are slices of the whole
        /// received frame (up to the frame size), which stays allocated while any of them
        /// lives: an entry kept beyond its frame's handling must not pin the frame.
        pub fn detached(&self) -> Self {
            let copy = |b: &bytes::Bytes| bytes::Bytes::copy_from_slice(b);
            SignedEntry {
                header: copy(&self.header),
                signature: copy(&self.signature),
                payload: self.payload.as_ref().map(copy),
            }
        }
    }
}

/// The encoded `FileDescriptorSet` of `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("intelmesh_descriptor");
