//! `webdpo export-trl`: the same arguments as `train`, written as a TRL job folder (model,
//! data, script, accelerate config) to run on real hardware.

use std::path::PathBuf;

use webdpo::hf::trl::{
    ACCELERATE_CONFIG, ACCELERATE_YAML, DATA_FILE, MODEL_DIR, REQUIREMENTS, SCRIPT, TrlJob,
};
use webdpo::{ComputeDevice, Error, Result, block_on};

use crate::dpo_args::{DpoArgs, OptimiserArgs, Setup, setup};
use crate::output::write_file;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    dpo: DpoArgs,
    /// The job folder to write (must not exist yet).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    optimiser: OptimiserArgs,
}

pub fn run(a: Args, device: &ComputeDevice) -> Result<()> {
    if a.dpo.reference.is_some() {
        return Err(Error::Setting(
            "export-trl: TRL's reference is a frozen copy of --model; drop --ref".into(),
        ));
    }
    if a.dpo.lora.adapter.is_some() {
        return Err(Error::Setting(
            "export-trl starts from the model alone; to go on from an adapter, write the merged \
             model with `webdpo train --adapter … --out DIR` and export from DIR"
                .into(),
        ));
    }
    if a.out.exists() {
        return Err(Error::Setting(format!(
            "{} exists; export-trl writes a new folder",
            a.out.display()
        )));
    }
    // The rows are read and tokenised as `train` reads them, so that a bad row fails here.
    let Setup {
        dir,
        lora,
        rows,
        train,
        ..
    } = setup(&a.dpo, device)?;
    let train = a.optimiser.apply(train);
    let job = TrlJob {
        train: &train,
        lora: lora.as_ref(),
        batch_size: a.dpo.batch_size,
        epochs: a.optimiser.epochs,
    };
    // Written beside the target and renamed into place once whole.
    let partial = a.out.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    block_on(dir.save(&dir.model, &partial.join(MODEL_DIR)))?;
    let data = std::fs::read(&a.dpo.data).map_err(|e| Error::io(&a.dpo.data, e))?;
    let command = ["webdpo".to_string()]
        .into_iter()
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let (script, readme) = (job.script(), job.readme(&command));
    let files: [(&str, &[u8]); 5] = [
        (DATA_FILE, &data),
        (SCRIPT, script.as_bytes()),
        (ACCELERATE_CONFIG, ACCELERATE_YAML.as_bytes()),
        ("requirements.txt", REQUIREMENTS.as_bytes()),
        ("README.md", readme.as_bytes()),
    ];
    for (name, bytes) in files {
        write_file(&partial.join(name), bytes)?;
    }
    std::fs::rename(&partial, &a.out).map_err(|e| Error::io(&a.out, e))?;
    eprintln!(
        "wrote {} ({} rows); run it with `accelerate launch --config_file {ACCELERATE_CONFIG} {SCRIPT}` there",
        a.out.display(),
        rows.len()
    );
    Ok(())
}
