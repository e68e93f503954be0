//! `cargo panic attack` and `cargo panic timeline`: the IO shell around the
//! attack engine's library side (`cargo_panic_core::attack`).

use std::path::Path;

use anyhow::{Context, Result};
use cargo_panic_core::attack::timeline::Timeline;

/// Reads and validates a timeline file; every error carries file:line:column.
pub fn read_timeline(path: &Path) -> Result<Timeline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the timeline {}", path.display()))?;
    Ok(Timeline::parse(&text, &path.display().to_string())?)
}
