//! Generates the gRPC code from `proto/` with protox, so that building needs no `protoc`.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../../proto");
    let files = [
        "records.proto",
        "adapter.proto",
        "exchange.proto",
        "admin.proto",
        "audit.proto",
    ]
    .map(|f| root.join("huitong/v1").join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let fds = protox::Compiler::new([&root])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)?
        .file_descriptor_set();

    // Served by gRPC server reflection, so that grpcurl and friends need no local .proto files.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("huitong_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        .codec_path("crate::codec::HuitongCodec")
        .compile_fds(fds)?;
    Ok(())
}
