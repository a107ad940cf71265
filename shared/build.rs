//! Packs the learned injection model (`src/injection/model.bin`, as `guard-train` writes it) with the
//! canonical Huffman code of `src/injection/huffman.rs` into the build's output folder, where
//! `injection::model` embeds it: a third of the bytes in every `.wasm` that carries the detector.

#[allow(dead_code)]
#[path = "src/injection/huffman.rs"]
mod huffman;

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=src/injection/model.bin");
    println!("cargo:rerun-if-changed=src/injection/huffman.rs");
    let model = std::fs::read("src/injection/model.bin")?;
    let packed = huffman::encode(&model);
    if huffman::decode(&packed).as_deref() != Some(&model[..]) {
        return Err("the packed model does not decode to model.bin".into());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("model.huf");
    std::fs::write(out, packed)?;
    Ok(())
}
