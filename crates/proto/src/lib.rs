//! Generated protobuf messages and gRPC stubs of the `intelmesh.v1` package.
#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("intelmesh.v1");
}

/// The encoded `FileDescriptorSet` of `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("intelmesh_descriptor");
