//! The `export` client command: the node's indicators matching filters, read page by page
//! through the API's `Query`, written as a STIX 2.1 bundle or a MISP feed directory
//! (`intelmesh-interop`), a DNS RPZ zone (`export_rpz`), a plain one-value-per-line list or
//! CSV.

use std::collections::BTreeMap;
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
use intelmesh_node::api::view::in_force;
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
    /// Write to FILE instead of standard output (with misp-feed: the directory, required; the
    /// event files an earlier export's manifest there lists and this one does not hold are
    /// removed, other files are left).
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
/// with `\\`, so the cell splits back into the tags it was made of. A line break inside one is
/// written `\\n` (`\\r`): quoted, it is valid CSV, but a reader going by lines (grep, awk, a
/// plain list reader) would take the rest as a row of its own, whose origin and TLP cells
/// another member wrote.
fn tags_cell(tags: &[String]) -> String {
    let escaped: Vec<String> = tags
        .iter()
        .map(|t| {
            t.replace('\\', "\\\\")
                .replace(';', "\\;")
                .replace('\n', "\\n")
                .replace('\r', "\\r")
        })
        .collect();
    csv_field(&escaped.join(";"))
}

/// The indicators some origin asserts in force at `now` (not revoked, inside its validity
/// window), in canonical form.
fn asserted(states: &[pb::IndicatorState], now: i64) -> Vec<Indicator> {
    states
        .iter()
        .filter(|s| s.assertions.iter().any(|a| in_force(a, now)))
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
    let mut wide: BTreeMap<&str, usize> = BTreeMap::new();
    let values: Vec<Indicator> = asserted(states, intelmesh_core::now_unix_ms())
        .into_iter()
        .filter(|v| match too_wide(v) {
            Some(why) => {
                *wide.entry(why).or_default() += 1;
                false
            }
            None => true,
        })
        .collect();
    for (why, n) in wide {
        eprintln!("left out {n} {why}: on a block list they would block far more than a threat");
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

/// Widest IPv4 and IPv6 blocks a block list takes.
const WIDEST_V4_PREFIX: u8 = 8;
const WIDEST_V6_PREFIX: u8 = 16;

/// The IPv4-mapped IPv6 range `::ffff:0:0/96`, as a number.
const V4_MAPPED: u128 = 0xffff_0000_0000;

/// Why a CIDR block is too wide for a block list, if it is. Another member's `0.0.0.0/1` would
/// block half the Internet; and an IPv6 block holding `::ffff:0:0/96` blocks every IPv4 address
/// wherever IPv4 rules are kept as IPv4-mapped IPv6 ones (BIND's RPZ does), as a block inside it
/// is an IPv4 block of 96 bits less.
fn too_wide(v: &Indicator) -> Option<&'static str> {
    const V4: &str = "IPv4 block(s) wider than /8";
    if v.ty() != IndicatorType::Cidr {
        return None;
    }
    let (address, prefix) = v.value().split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    if address.parse::<std::net::Ipv4Addr>().is_ok() {
        return (prefix < WIDEST_V4_PREFIX).then_some(V4);
    }
    let bits = u128::from(address.parse::<std::net::Ipv6Addr>().ok()?);
    let same_prefix = |len: u8| len == 0 || (bits ^ V4_MAPPED) >> (128 - u32::from(len)) == 0;
    if prefix >= 96 && same_prefix(96) {
        (prefix < 96 + WIDEST_V4_PREFIX).then_some(V4)
    } else if same_prefix(prefix.min(96)) {
        Some("IPv6 block(s) holding every IPv4-mapped address (::ffff:0:0/96)")
    } else {
        (prefix < WIDEST_V6_PREFIX).then_some("IPv6 block(s) wider than /16")
    }
}

/// Each state with only the assertions (and sightings) the filter's origins and tags select:
/// the node selects indicators, and an indicator one trusted origin names may carry another
/// member's assertions, which `--origin` means to leave out. States left with nothing go.
fn narrowed(states: Vec<pb::IndicatorState>, f: &FilterArgs) -> Vec<pb::IndicatorState> {
    // As the node matches them: trimmed, lowercase, empty ones dropped.
    let tags: Vec<String> = f
        .tags
        .iter()
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let by_origin =
        |origin: &str| f.origins.is_empty() || f.origins.iter().any(|o| o.as_str() == origin);
    let by_tag = |a: &pb::OriginAssertion| {
        tags.is_empty()
            || a.tags
                .iter()
                .any(|t| tags.contains(&t.trim().to_lowercase()))
    };
    states
        .into_iter()
        .filter_map(|mut s| {
            s.assertions.retain(|a| by_origin(&a.origin) && by_tag(a));
            s.sightings
                .retain(|x| tags.is_empty() && by_origin(&x.origin));
            (!s.assertions.is_empty() || !s.sightings.is_empty()).then_some(s)
        })
        .collect()
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
    // The events an earlier export's manifest lists, read before it is replaced.
    let earlier = earlier_events(dir);
    // A feed holding restricted records is for its owner alone, as an --out file is: the
    // directory narrowed (an existing one too) and each file written 0600.
    let restricted = holds_restricted(states);
    if restricted {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("narrowing {} to its owner", dir.display()))?;
    }
    let write =
        |name: String, text: String| write_export(&dir.join(name), text.as_bytes(), restricted);
    for (uuid, event) in &feed.events {
        write(format!("{uuid}.json"), serde_json::to_string_pretty(event)?)?;
    }
    write("hashes.csv".into(), feed.hashes.clone())?;
    // Last: a fetcher reading the directory meanwhile finds only events whose files exist.
    write(
        "manifest.json".into(),
        serde_json::to_string_pretty(&feed.manifest)?,
    )?;
    // An event of an earlier export that this one does not hold (an origin now all above the
    // ceiling, filtered out or withdrawn) would still be served to whoever fetches it by its
    // name: the names are predictable, so it goes. Only events the manifest listed: other
    // files in the directory are not the feed's.
    let kept: std::collections::HashSet<String> = feed
        .events
        .iter()
        .map(|(uuid, _)| format!("{uuid}.json"))
        .collect();
    let removed = remove_stale_events(dir, &earlier, &kept)?;
    if removed > 0 {
        eprintln!(
            "removed {removed} event file(s) of an earlier export that this one does not hold"
        );
    }
    eprintln!(
        "wrote {} attributes in {} event(s) to {} (and {} revoked assertion(s) as deleted attributes)",
        feed.attributes,
        feed.events.len(),
        dir.display(),
        feed.revoked
    );
    Ok(())
}

/// The event files the manifest in `dir` lists (`UUID.json`: `read_feed_manifest` names only
/// keys of hex digits and dashes, so never a path out of `dir`), if it has one that reads as a
/// manifest.
fn earlier_events(dir: &std::path::Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) else {
        return Vec::new();
    };
    intelmesh_interop::read_feed_manifest(&text)
        .map(|entries| {
            entries
                .into_iter()
                .filter_map(|e| match e {
                    intelmesh_interop::ManifestEntry::Event(file) => Some(file),
                    intelmesh_interop::ManifestEntry::NotAUuid(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Removes from `dir` the event files of `earlier` not in `kept`; how many.
fn remove_stale_events(
    dir: &std::path::Path,
    earlier: &[String],
    kept: &std::collections::HashSet<String>,
) -> anyhow::Result<usize> {
    let mut removed = 0;
    for name in earlier {
        if kept.contains(name) {
            continue;
        }
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(removed)
}

/// Whether any record of `states` is AMBER+STRICT or RED.
fn holds_restricted(states: &[pb::IndicatorState]) -> bool {
    let restricted = |d: Option<&pb::Distribution>| {
        d.and_then(|d| Tlp::from_proto(d.tlp))
            .is_some_and(Tlp::is_restricted)
    };
    states.iter().any(|s| {
        s.assertions
            .iter()
            .any(|a| restricted(a.distribution.as_ref()))
            || s.sightings
                .iter()
                .any(|x| restricted(x.distribution.as_ref()))
    })
}

/// Writes an export to `path`, whole where it can: a new file, or a plain file of this user
/// and group, is replaced at once (a firewall reading it sees the old list or the new one, and
/// a failed export leaves the old one). Anything else (a link, a pipe, a file of another owner
/// or group, one in a directory this user may not write) is written in place, so it keeps what
/// the operator set up. One holding restricted records is readable by its owner alone
/// (whatever the umask), since the shell's umask would give every local user a copy of RED
/// values.
pub(crate) fn write_export(
    path: &std::path::Path,
    text: &[u8],
    restricted: bool,
) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let writing = || format!("writing {}", path.display());
    let this_user = std::fs::metadata("/proc/self")
        .ok()
        .map(|m| (m.uid(), m.gid()));
    let whole = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0o666),
        Err(_) => None,
        Ok(m) => (m.file_type().is_file() && Some((m.uid(), m.gid())) == this_user)
            .then(|| m.permissions().mode() & 0o777),
    };
    if let Some(mode) = whole {
        let replaced = match restricted {
            true => intelmesh_node::durable::replace_exact(path, text, 0o600),
            false if mode == 0o666 => intelmesh_node::durable::replace(path, text, mode),
            false => intelmesh_node::durable::replace_exact(path, text, mode),
        };
        match replaced {
            Ok(()) => return Ok(()),
            // A directory this user may not write: in place, as before.
            Err(e) if e.source.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e).with_context(writing),
        }
    }
    write_in_place(path, text, restricted).with_context(writing)
}

fn write_in_place(path: &std::path::Path, text: &[u8], restricted: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Not truncated on open: a file this user may write but not narrow (another owner's, through
    // its group) is refused with its content intact, not left empty for the resolver reading it.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    if restricted {
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let is_file = file.metadata()?.is_file();
    if restricted && is_file {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    if is_file {
        file.set_len(0)?;
    }
    file.write_all(text)
}

pub async fn export(mut args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.format == ExportFormat::MispFeed && args.out.is_none() {
        return Err(usage(
            "--format misp-feed writes a directory: name it with --out DIR",
        ));
    }
    // MISP's feed fetcher gives every attribute the feed's own distribution, whatever the event
    // says: a restricted assertion in a feed reaches whoever that MISP shares with.
    if args.format == ExportFormat::MispFeed && args.filter.tlp_ceiling.is_none() {
        eprintln!(
            "misp-feed: only CLEAR and GREEN assertions by default (MISP gives a feed's attributes the feed's distribution); --tlp-ceiling amber or red includes more"
        );
        args.filter.tlp_ceiling = Some(Tlp::Green);
    }
    let states = narrowed(states(&args).await?, &args.filter);
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
            let restricted = holds_restricted(&states);
            write_export(path, text.as_bytes(), restricted)?;
            if restricted {
                eprintln!(
                    "{} holds AMBER+STRICT or RED assertions: written for its owner alone (0600)",
                    path.display()
                );
            }
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
#[path = "export_cmd_tests.rs"]
mod tests;
