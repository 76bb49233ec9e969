//! Generated protobuf messages and gRPC stubs of the `intelmesh.v1` package.
#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("intelmesh.v1");
}
