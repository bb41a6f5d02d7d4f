//! The generated wire types of `proto/governance/v1/governance.proto`.

#![allow(clippy::all, missing_docs, unused_qualifications, rust_2018_idioms)]

pub mod governance {
    pub mod v1 {
        tonic::include_proto!("governance.v1");
    }
}

pub use governance::v1::*;

/// The encoded descriptors of our protos, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("governance_descriptor");
