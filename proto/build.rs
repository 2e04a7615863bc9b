//! Generates the tonic code for persona/v1 with a vendored protoc (none is installed
//! on the build machines), and the file descriptor set gRPC reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("persona_v1_descriptor.bin"))
        .compile_with_config(
            config,
            &["persona/v1/persona.proto", "persona/v1/trusted.proto"],
            &["."],
        )?;
    println!("cargo:rerun-if-changed=persona/v1/persona.proto");
    println!("cargo:rerun-if-changed=persona/v1/trusted.proto");
    Ok(())
}
