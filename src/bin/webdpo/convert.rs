//! `webdpo convert`: a model's weights re-saved in another precision.

use std::path::PathBuf;

use webdpo::hf::safetensors::to_safetensors;
use webdpo::{ComputeDevice, Dtype, Error, ModelDir, Result, block_on};

use crate::output::write_file;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory to read.
    #[arg(long)]
    model: PathBuf,
    /// The safetensors file to write (may be the model's own model.safetensors).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = Dtype::F16)]
    dtype: Dtype,
}

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
    let dir = ModelDir::load(&a.model, &device.device)?;
    let bytes = block_on(to_safetensors(&dir.model, a.dtype))?;
    // Written beside the target and renamed over it: a failure leaves the old file intact.
    let partial = a.out.with_extension("safetensors.partial");
    write_file(&partial, &bytes)?;
    std::fs::rename(&partial, &a.out).map_err(|e| Error::io(&a.out, e))?;
    eprintln!("wrote {} ({} bytes)", a.out.display(), bytes.len());
    Ok(())
}
