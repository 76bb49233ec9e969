//! The `export` client command: the node's indicators matching filters, read page by page
//! through the API's `Query`, written as a STIX 2.1 bundle or a MISP feed directory
//! (`intelmesh-interop`), a DNS RPZ zone (`export_rpz`), a plain one-value-per-line list or
//! CSV.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use intelmesh_core::indicator::normalize;
use intelmesh_core::{Indicator, IndicatorType, Tlp};
use intelmesh_interop::misp_feed;
use intelmesh_interop::stix_export::export_bundle;
use intelmesh_node::api::stix::{stix_parts, StixParts};
use intelmesh_proto::v1 as pb;

use crate::client_cmd::{query_pages, FilterArgs, Pages};
use crate::conn::ConnectArgs;
use crate::export_benign::{blocked_name, on_warninglists, without_benign};
use crate::export_rpz::{parse_zone_name, rpz_zone, DEFAULT_ZONE};
use crate::usage;

/// Indicators per `Query` page.
const PAGE: u32 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A STIX 2.1 bundle: identities, TLP markings, one indicator per origin's assertion,
    /// sightings.
    Stix,
    /// One value per line, each indicator once (revoked-only and warninglisted ones left out).
    Plain,
    /// type,value,origin,tlp,confidence,revoked,valid_from,valid_until,tags (one row per
    /// origin's assertion).
    Csv,
    /// A DNS Response Policy Zone (BIND, Unbound, PowerDNS): NXDOMAIN for each domain and its
    /// subdomains, each URL's host, each address and CIDR block (revoked-only ones, and
    /// warninglisted ones or URLs of a warninglisted host, left out).
    Rpz,
    /// A MISP feed directory (--out DIR): manifest.json, an event per origin, hashes.csv.
    MispFeed,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long, value_enum, default_value = "stix")]
    pub format: ExportFormat,
    /// Write to FILE instead of standard output (with misp-feed: the directory, required).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// With rpz: the zone's name, as the DNS server's configuration names it.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ZONE, value_parser = parse_zone_name)]
    pub rpz_zone: String,
    /// With plain and rpz: keep values the node's warninglists name as known-benign (public
    /// resolvers, top domains, shared hosts of URLs). By default they are left out and counted.
    #[arg(long)]
    pub keep_warninglisted: bool,
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

/// A CSV cell of text another member may have written. A cell a spreadsheet would read as a
/// formula (starting `=`, `+`, `-`, `@`, a tab or a carriage return) is led by `'`, so a tag
/// `=HYPERLINK(…)` stays text in the analyst's spreadsheet (OWASP's CSV injection advice).
fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula || s.contains([',', '"', '\n', '\r', ';']) {
        let lead = if formula { "'" } else { "" };
        format!("\"{lead}{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// An assertion's tags as one cell: `;` between tags, and a `;` or `\\` inside one escaped
/// with `\\`, so the cell splits back into the tags it was made of.
fn tags_cell(tags: &[String]) -> String {
    let escaped: Vec<String> = tags
        .iter()
        .map(|t| t.replace('\\', "\\\\").replace(';', "\\;"))
        .collect();
    csv_field(&escaped.join(";"))
}

/// Whether any origin's assertion of the state is in force (not revoked).
fn in_force(s: &pb::IndicatorState) -> bool {
    s.assertions.iter().any(|a| !a.revoked)
}

/// The indicators some origin asserts in force, in canonical form.
fn asserted(states: &[pb::IndicatorState]) -> Vec<Indicator> {
    states
        .iter()
        .filter(|s| in_force(s))
        .filter_map(|s| {
            let r = s.indicator.as_ref()?;
            normalize(IndicatorType::from_proto(r.r#type)?, &r.value).ok()
        })
        .collect()
}

/// The values a block list of `format` would hold (in force, readable), without those the
/// node's warninglists name unless the caller keeps them (the count left out goes to stderr).
async fn block_list(
    args: &ExportArgs,
    states: &[pb::IndicatorState],
) -> anyhow::Result<Vec<Indicator>> {
    let (values, everything): (Vec<_>, Vec<_>) = asserted(states)
        .into_iter()
        .partition(|v| !(v.ty() == IndicatorType::Cidr && v.value().ends_with("/0")));
    if !everything.is_empty() {
        eprintln!(
            "left out {} block(s) of prefix length 0: on a block list they match every address",
            everything.len()
        );
    }
    if args.keep_warninglisted {
        return Ok(values);
    }
    let by_host = args.format == ExportFormat::Rpz;
    let names = values
        .iter()
        .filter_map(|v| blocked_name(v, by_host))
        .collect();
    let benign = on_warninglists(&args.conn, names).await?;
    let (kept, left_out) = without_benign(values, &benign, by_host);
    if left_out > 0 {
        eprintln!(
            "left out {left_out} value(s) on the node's warninglists (known-benign{}); --keep-warninglisted keeps them",
            if by_host { ", or a URL whose host is" } else { "" }
        );
    }
    Ok(kept)
}

fn render(
    args: &ExportArgs,
    states: &[pb::IndicatorState],
    blocked: Vec<Indicator>,
) -> anyhow::Result<(String, usize)> {
    let format = args.format;
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
            for value in &blocked {
                text.push_str(value.value());
                text.push('\n');
            }
            count = blocked.len();
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
                        tags_cell(&a.tags),
                    ];
                    text.push_str(&row.join(","));
                    text.push('\n');
                    count += 1;
                }
            }
        }
        ExportFormat::Rpz => {
            // The serial only has to grow from one export to the next.
            let serial = u32::try_from(intelmesh_core::now_unix_ms() / 1000).unwrap_or(u32::MAX);
            let zone = rpz_zone(&args.rpz_zone, serial, &blocked);
            if !zone.skipped.is_empty() {
                let parts: Vec<String> = zone
                    .skipped
                    .iter()
                    .map(|(what, n)| format!("{n} {what}"))
                    .collect();
                eprintln!(
                    "rpz: left out {} (RPZ rules name hosts and addresses only)",
                    parts.join(", ")
                );
            }
            text = zone.text;
            count = zone.rules;
        }
        // A directory, not text: written by `misp_feed_dir`.
        ExportFormat::MispFeed => anyhow::bail!("misp-feed is written as a directory"),
    }
    Ok((text, count))
}

/// Writes the MISP feed of `states` into `dir` (created if missing; files of earlier exports
/// are replaced, so a feed directory can be refreshed in place).
fn misp_feed_dir(dir: &std::path::Path, states: &[pb::IndicatorState]) -> anyhow::Result<()> {
    let StixParts {
        indicators: found,
        unreadable,
        ..
    } = stix_parts(states);
    if unreadable > 0 {
        eprintln!(
            "warning: {unreadable} indicator(s) whose value this version cannot read were left out"
        );
    }
    let feed = misp_feed(&found);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: String, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    for (uuid, event) in &feed.events {
        write(format!("{uuid}.json"), serde_json::to_string_pretty(event)?)?;
    }
    write("hashes.csv".into(), feed.hashes.clone())?;
    // Last: a fetcher reading the directory meanwhile finds only events whose files exist.
    write(
        "manifest.json".into(),
        serde_json::to_string_pretty(&feed.manifest)?,
    )?;
    eprintln!(
        "wrote {} attributes in {} event(s) to {} (and {} revoked assertion(s) as deleted attributes)",
        feed.attributes,
        feed.events.len(),
        dir.display(),
        feed.revoked
    );
    Ok(())
}

pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.format == ExportFormat::MispFeed && args.out.is_none() {
        return Err(usage(
            "--format misp-feed writes a directory: name it with --out DIR",
        ));
    }
    let states = states(&args).await?;
    if let (ExportFormat::MispFeed, Some(dir)) = (args.format, &args.out) {
        misp_feed_dir(dir, &states)?;
        return Ok(ExitCode::SUCCESS);
    }
    let blocked = match args.format {
        ExportFormat::Plain | ExportFormat::Rpz => block_list(&args, &states).await?,
        _ => Vec::new(),
    };
    let (text, count) = render(&args, &states, blocked)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {count} {} of {} indicators to {}",
                if args.format == ExportFormat::Plain {
                    "values"
                } else if args.format == ExportFormat::Rpz {
                    "rules"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_stay_text_in_a_spreadsheet() {
        let cases = [
            ("evil.example", "evil.example"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            (
                "=HYPERLINK(\"http://x/\",\"open\")",
                "\"'=HYPERLINK(\"\"http://x/\"\",\"\"open\"\")\"",
            ),
            ("+1", "\"'+1\""),
            ("-2+3+cmd|' /C calc'!A0", "\"'-2+3+cmd|' /C calc'!A0\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("\tx", "\"'\tx\""),
            ("line\nbreak", "\"line\nbreak\""),
            ("", ""),
        ];
        for (text, cell) in cases {
            assert_eq!(csv_field(text), cell, "{text:?}");
        }
    }

    #[test]
    fn a_tags_cell_splits_back_into_its_tags() {
        let tags = [
            "c2".to_string(),
            "a;b".into(),
            "back\\slash".into(),
            "=1".into(),
        ];
        let cell = tags_cell(&tags);
        assert_eq!(cell, "\"c2;a\\;b;back\\\\slash;=1\"");
        // Split on `;` not escaped, unescape: the tags again.
        let inner = cell.trim_matches('"');
        let mut back = vec![String::new()];
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => back.last_mut().unwrap().extend(chars.next()),
                ';' => back.push(String::new()),
                c => back.last_mut().unwrap().push(c),
            }
        }
        assert_eq!(back, tags);
        // Led by a formula character, the cell is marked as text.
        assert_eq!(tags_cell(&["=1".to_string()]), "\"'=1\"");
    }
}
