//! Writes a target's seed corpus into a folder: `intelmesh-fuzz-seeds TARGET DIR [SHARED]`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use intelmesh_fuzz::seeds::{seeds, SeedSources};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, dir, rest @ ..] = args.as_slice() else {
        bail!("usage: intelmesh-fuzz-seeds TARGET DIR [SHARED]");
    };
    if intelmesh_fuzz::target(target).is_none() {
        let names: Vec<&str> = intelmesh_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        bail!("unknown target {target}; targets: {}", names.join(", "));
    }
    let sources = SeedSources {
        repo: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
        shared: rest.first().map(PathBuf::from),
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let all = seeds(target, &sources);
    for (i, seed) in all.iter().enumerate() {
        let path = dir.join(format!("seed-{i:04}"));
        std::fs::write(&path, seed).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{target}: {} seeds in {}", all.len(), dir.display());
    Ok(())
}
