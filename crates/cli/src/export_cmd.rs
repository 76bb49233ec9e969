//! The `export` client command: the node's indicators matching filters, read page by page
//! through the API's `Query`, written as a STIX 2.1 bundle (`intelmesh-interop`), a plain
//! one-value-per-line list or CSV.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use intelmesh_core::{IndicatorType, Tlp};
use intelmesh_interop::stix_export::export_bundle;
use intelmesh_node::api::stix::{stix_parts, StixParts};
use intelmesh_proto::v1 as pb;

use crate::client_cmd::{query_pages, FilterArgs, Pages};
use crate::conn::ConnectArgs;

/// Indicators per `Query` page.
const PAGE: u32 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A STIX 2.1 bundle: identities, TLP markings, one indicator per origin's assertion,
    /// sightings.
    Stix,
    /// One value per line, each indicator once (revoked-only ones left out).
    Plain,
    /// type,value,origin,tlp,confidence,revoked,valid_from,valid_until,tags (one row per
    /// origin's assertion).
    Csv,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long, value_enum, default_value = "stix")]
    pub format: ExportFormat,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Every state matching the filter, all pages.
async fn states(args: &ExportArgs) -> anyhow::Result<Vec<pb::IndicatorState>> {
    let pages = Pages {
        page_size: PAGE,
        token: String::new(),
        all: true,
    };
    let (states, _) = query_pages(&args.conn, args.filter.to_proto(), pages, |_| {}).await?;
    Ok(states)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn render(format: ExportFormat, states: &[pb::IndicatorState]) -> anyhow::Result<(String, usize)> {
    let mut text = String::new();
    let mut count = 0;
    match format {
        ExportFormat::Stix => {
            let StixParts {
                indicators: found,
                sightings,
                unreadable,
            } = stix_parts(states);
            if unreadable > 0 {
                eprintln!("warning: {unreadable} indicator(s) whose value this version cannot read were left out");
            }
            count = found.len();
            let created = found
                .iter()
                .map(|e| e.created_unix_ms)
                .min()
                .unwrap_or_else(intelmesh_core::now_unix_ms);
            let bundle = export_bundle(&found, &sightings, created);
            text = serde_json::to_string_pretty(&bundle)?;
            text.push('\n');
        }
        ExportFormat::Plain => {
            for s in states {
                let in_force = s.assertions.iter().any(|a| !a.revoked);
                if let (true, Some(r)) = (in_force, &s.indicator) {
                    text.push_str(&r.value);
                    text.push('\n');
                    count += 1;
                }
            }
        }
        ExportFormat::Csv => {
            text.push_str("type,value,origin,tlp,confidence,revoked,valid_from_unix_ms,valid_until_unix_ms,tags\n");
            for s in states {
                let Some(r) = &s.indicator else { continue };
                let ty = IndicatorType::from_proto(r.r#type).map_or("unknown", |t| t.as_str());
                for a in &s.assertions {
                    let row = [
                        ty.to_string(),
                        csv_field(&r.value),
                        csv_field(&a.origin),
                        a.distribution
                            .as_ref()
                            .and_then(|d| Tlp::from_proto(d.tlp))
                            .unwrap_or(Tlp::Red)
                            .as_str()
                            .to_string(),
                        a.confidence.to_string(),
                        a.revoked.to_string(),
                        a.valid_from_unix_ms.to_string(),
                        a.valid_until_unix_ms
                            .map(|t| t.to_string())
                            .unwrap_or_default(),
                        csv_field(&a.tags.join(";")),
                    ];
                    text.push_str(&row.join(","));
                    text.push('\n');
                    count += 1;
                }
            }
        }
    }
    Ok((text, count))
}

pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let states = states(&args).await?;
    let (text, count) = render(args.format, &states)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {count} {} of {} indicators to {}",
                if args.format == ExportFormat::Plain {
                    "values"
                } else {
                    "assertions"
                },
                states.len(),
                path.display()
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(anyhow::anyhow!("writing to standard output: {e}")),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
