//! Generated protobuf messages and gRPC stubs of the `intelmesh.v1` package, and the codec
//! they use (prost's, with a federation frame's shape checked before it is decoded).
#![allow(clippy::all, missing_docs)]

pub mod codec;
pub mod shape;

pub mod v1 {
    tonic::include_proto!("intelmesh.v1");
}

/// The encoded `FileDescriptorSet` of `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("intelmesh_descriptor");
