//! The node's guard against known-benign values (MISP warninglists: public resolvers, top
//! domains, cloud ranges, CDN names): the lists named by `warninglists` in the config, loaded
//! at start; `Submit` refuses an upsert of a listed value unless forced, and `Lookup` and TAXII
//! reads name the lists a value is on. One member must never push `8.8.8.8` to every
//! country's firewalls by accident.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use intelmesh_core::Indicator;
use intelmesh_interop::{parse_warninglist, Warninglists};

use crate::state::NodeState;

/// Why the configured warninglists cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("warninglists: {path}: {reason}")]
pub struct LoadError {
    pub path: PathBuf,
    pub reason: String,
}

/// Every warninglist in `paths`: files, or directories searched (with their subdirectories)
/// for `*.json`. A file that is not a warninglist is an error naming it.
pub fn load(paths: &[PathBuf]) -> Result<Warninglists, LoadError> {
    let mut files = Vec::new();
    for p in paths {
        collect_json(p, &mut files).map_err(|e| LoadError {
            path: p.clone(),
            reason: e.to_string(),
        })?;
    }
    files.sort();
    let mut lists = Warninglists::new();
    for f in &files {
        let fail = |reason: String| LoadError {
            path: f.clone(),
            reason,
        };
        let text = std::fs::read_to_string(f).map_err(|e| fail(e.to_string()))?;
        let list = parse_warninglist(&text).map_err(|e| fail(e.to_string()))?;
        lists.add(&list);
    }
    if !paths.is_empty() && lists.is_empty() {
        return Err(LoadError {
            path: paths[0].clone(),
            reason: "no warninglist (*.json) found".into(),
        });
    }
    Ok(lists)
}

fn collect_json(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !path.is_dir() {
        std::fs::metadata(path)?;
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.is_dir() {
            collect_json(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    Ok(())
}

/// The names of the lists `indicator` is on, sorted, each once.
pub fn lists_of(lists: &Warninglists, indicator: &Indicator) -> Vec<String> {
    lists_of_with_host(lists, indicator, indicator.host().as_ref())
}

/// [`lists_of`] with `indicator.host()` worked out by the caller.
pub fn lists_of_with_host(
    lists: &Warninglists,
    indicator: &Indicator,
    host: Option<&Indicator>,
) -> Vec<String> {
    let mut names: Vec<String> = lists
        .matches_with_host(indicator, host)
        .into_iter()
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Why a submission is refused: the listed values (at most ten named) and their lists.
pub fn refusal(listed: &[(&Indicator, Vec<String>)]) -> String {
    let named: Vec<String> = listed
        .iter()
        .take(10)
        .map(|(i, lists)| format!("{} (on {})", i.value(), lists.join(", ")))
        .collect();
    let more = listed.len().saturating_sub(10);
    format!(
        "{} value(s) on the node's warninglists of known-benign values (or blocks and domains \
         covering a listed one): {}{}; nothing was published; resubmit with force to publish \
         them anyway",
        listed.len(),
        named.join("; "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

impl NodeState {
    /// The warninglists in force.
    pub fn warninglists(&self) -> Arc<Warninglists> {
        Arc::clone(&self.warninglists.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the warninglists in force (at start, from the config).
    pub fn set_warninglists(&self, lists: Warninglists) {
        *self.warninglists.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(lists);
    }
}
