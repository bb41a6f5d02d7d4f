//! The generated wire types: `proto/governance/v1/governance.proto`, and
//! Envoy's external authorization API (`proto/third_party/`) with the
//! packages its messages use.

#![allow(clippy::all, missing_docs, unused_qualifications, rust_2018_idioms)]

pub mod governance {
    pub mod v1 {
        tonic::include_proto!("governance.v1");
    }
}

pub use governance::v1::*;

/// Envoy's packages, nested as their names are, since the generated code
/// refers to its neighbours by relative paths (`super::super::…`).
pub mod envoy {
    pub mod config {
        pub mod core {
            pub mod v3 {
                tonic::include_proto!("envoy.config.core.v3");
            }
        }
    }
    pub mod r#type {
        pub mod v3 {
            tonic::include_proto!("envoy.r#type.v3");
        }
    }
    pub mod service {
        pub mod auth {
            pub mod v3 {
                tonic::include_proto!("envoy.service.auth.v3");
            }
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub mod udpa {
    pub mod annotations {
        tonic::include_proto!("udpa.annotations");
    }
}

pub mod validate {
    tonic::include_proto!("validate");
}

pub mod xds {
    pub mod annotations {
        pub mod v3 {
            tonic::include_proto!("xds.annotations.v3");
        }
    }
    pub mod core {
        pub mod v3 {
            tonic::include_proto!("xds.core.v3");
        }
    }
}

/// The encoded descriptors of our protos and Envoy's, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("governance_descriptor");
