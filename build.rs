//! Compiles `proto/` with protox (pure Rust), so building needs no system `protoc`:
//! our `governance/v1`, and Envoy's external authorization API as Envoy
//! publishes it (`proto/third_party/`, see its README).
//!
//! The encoded descriptor set is written next to the generated code: the
//! server registers it with gRPC reflection so that `grpcurl describe` shows
//! the commented API.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["governance/v1/governance.proto", "envoy/service/auth/v3/external_auth.proto"];
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile(protos, ["proto", "proto/third_party"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("governance_descriptor.bin"), descriptors.encode_to_vec())?;

    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
