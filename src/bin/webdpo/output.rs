//! What every command writes with: progress bars and files whose errors name the path.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use webdpo::{Error, Result};

pub fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64).with_message(what.to_string());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} pairs, {elapsed} (eta {eta}) {prefix}",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    bar
}

pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
