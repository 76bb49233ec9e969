//! The `import` client command: files of indicators (STIX, MISP, MISP feed, CSV, plain lists)
//! read through `import_read`, checked against warninglists, submitted in keyed batches through
//! the node's API as `submit` does, and summed up: imported, duplicate, warned, rejected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use intelmesh_core::{OrgId, Tlp};
use intelmesh_interop::text::printable;
use intelmesh_interop::Warninglists;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use prost::Message;
use serde_json::json;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::client_cmd::{indicators, print_json};
use crate::conn::ConnectArgs;
use crate::import_known;
use crate::import_read::{self, Candidate, FileRead, Format, Left};
use crate::input::{parse_org, parse_tlp};
use crate::publish;
use crate::usage;

/// Submissions per request: well within the node's `MAX_SUBMISSIONS` (10,000) and the message
/// size limit, with descriptions clipped to 2 KB.
const IMPORT_CHUNK: usize = 500;
/// Examples shown per reason.
const EXAMPLES: usize = 3;

#[derive(Args, Debug)]
#[command(after_help = "\
Formats, when --format is not given: JSON shaped as a STIX bundle or object is stix, JSON with \
Event or response is misp, a directory with manifest.json is a MISP feed, a .csv file is csv, \
anything else one value per line (defanged values are refanged, each value's type detected).

TLP, confidence, validity and tags come from the file where it gives them; --tlp and \
--confidence apply where it does not. --recipient is added to the values whose TLP is \
AMBER+STRICT or RED (without one, only your org reads those), except those a MISP \
distribution of \"your organisation only\" marks. A value given more than once is submitted \
once, at the strictest TLP any of them gave it.

Re-importing signs nothing new: a value this org already asserts identically (same TLP, \
recipients, confidence, validity, tags and description, as the node's Get answers) is not sent \
again, and each file's requests carry idempotency keys derived from what they submit, so a \
request repeated after a lost answer is not signed twice. Both count as duplicate.

Exit status: 0 every file read and its values submitted; 1 the node refused or failed; 2 a file \
could not be read (the other files are still imported) or bad options; 3 outcome unknown \
(re-running the same import finishes it safely).")]
pub struct ImportArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Files to import (or MISP feed directories).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Format of every FILE (default: detected per file).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// TLP where the file gives none: clear, green, amber, amber+strict or red.
    #[arg(long, default_value = "amber", value_parser = parse_tlp)]
    pub tlp: Tlp,
    /// An org that may read the AMBER+STRICT and RED values besides yours (repeatable).
    #[arg(long = "recipient", value_name = "ORG", value_parser = parse_org)]
    pub recipients: Vec<OrgId>,
    /// Confidence, 0 to 100, where the file gives none.
    #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub confidence: u32,
    /// A tag added to every value (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A MISP warninglist file, or a directory searched for them (repeatable): values on a
    /// list are warned and not submitted, unless --force.
    #[arg(long = "warninglist", value_name = "PATH")]
    pub warninglists: Vec<PathBuf>,
    /// Submit values on a warninglist too, the node's own or a --warninglist (they are still
    /// reported as warned).
    #[arg(long)]
    pub force: bool,
    /// Share values this node knows only as RED or AMBER+STRICT wider than those entries'
    /// readers (without it the node refuses the request holding one, naming who may read it).
    #[arg(long)]
    pub share_wider: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Counts per reason, with the first few examples.
#[derive(Default)]
struct Reasons(BTreeMap<String, (usize, Vec<String>)>);

impl Reasons {
    fn add(&mut self, reason: &str, example: String) {
        let (n, examples) = self.0.entry(reason.to_string()).or_default();
        *n += 1;
        if examples.len() < EXAMPLES {
            examples.push(example);
        }
    }

    /// `n` more of `reason`, with no example.
    fn add_count(&mut self, reason: &str, n: usize) {
        self.0.entry(reason.to_string()).or_default().0 += n;
    }

    fn total(&self) -> usize {
        self.0.values().map(|(n, _)| n).sum()
    }

    fn json(&self) -> serde_json::Value {
        let mut items: Vec<_> = self.0.iter().collect();
        items.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        items
            .into_iter()
            .map(|(reason, (count, examples))| {
                json!({"reason": reason, "count": count, "examples": examples})
            })
            .collect()
    }

    fn print(&self, title: &str, show: bool) {
        if self.0.is_empty() {
            return;
        }
        out!("{title}: {}", self.total());
        let mut items: Vec<_> = self.0.iter().collect();
        items.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        for (reason, (count, examples)) in items {
            // Reasons and examples quote the files: nothing in them may act on the terminal.
            out!("  {count:>6}  {}", printable(reason));
            for e in examples.iter().take(if show { EXAMPLES } else { 0 }) {
                out!("          e.g. {}", printable(e));
            }
        }
    }
}

/// One readable file's plan: what to submit and under which key.
struct Plan {
    path: PathBuf,
    format: Format,
    submissions: Vec<pb::Submission>,
    /// The value of each submission, in order.
    indicators: Vec<intelmesh_core::Indicator>,
}

/// What became of one plan's submissions.
struct Done<'a> {
    plan: &'a Plan,
    /// Newly signed.
    new: usize,
    /// Held by the node already, identically: not sent.
    held: usize,
    /// Sent, but answered as a repeat of an earlier request with the same key.
    replayed: usize,
    key: String,
    /// Values on the node's warninglists: (reason, example), for the tally.
    warned: Vec<(String, String)>,
}

/// Everything counted over the run.
#[derive(Default)]
struct Tally {
    imported: usize,
    duplicate: usize,
    /// Values an earlier file of this run, or earlier in the same file, already gave: the first
    /// one is submitted, so a value in two files is asserted once and a re-run finds it
    /// unchanged, but under the strictest TLP level any of them gave it (`strictest`).
    repeated_in_input: usize,
    /// Each value's strictest TLP in the input, and whether any of it was its org's alone.
    strictest: HashMap<intelmesh_core::Indicator, (Tlp, bool)>,
    /// Values a copy of which is settled: submitted, or held back for a warninglist. A copy
    /// refused (outside its validity, say) settles nothing: a later valid copy is submitted.
    settled: std::collections::HashSet<intelmesh_core::Indicator>,
    /// Values some object or row gave under a TLP that could not be read: wherever else the
    /// input gives them, they are submitted RED to this org alone.
    withheld: std::collections::HashSet<intelmesh_core::Indicator>,
    warned: Reasons,
    rejected: Reasons,
    skipped: Reasons,
    unreadable: Vec<String>,
    restricted_without_recipient: usize,
}

fn left(reasons: &mut Reasons, items: Vec<Left>) {
    for l in items {
        reasons.add(&l.reason, l.example);
    }
}

/// Loads every warninglist named (files, or directories searched for `*.json`), as the node
/// loads its own.
fn load_warninglists(paths: &[PathBuf]) -> anyhow::Result<Warninglists> {
    intelmesh_node::warninglists::load(paths)
        .map_err(|e| usage(format!("--warninglist {}: {}", e.path.display(), e.reason)))
}

/// A candidate as the node takes it, or why it is rejected.
fn submission(c: &Candidate, args: &ImportArgs) -> Result<pb::Submission, &'static str> {
    let tlp = c.tlp.unwrap_or(args.tlp);
    let valid_from = c.valid_from_unix_ms.unwrap_or(0);
    // As the node checks each submission: one it refuses would fail its whole batch.
    if valid_from < 0 {
        return Err("valid_from is before 1970");
    }
    if c.valid_until_unix_ms.is_some_and(|u| u <= valid_from) {
        return Err("valid_until is not after valid_from");
    }
    let mut tags = c.tags.clone();
    for t in &args.tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    Ok(pb::Submission {
        r#type: c.indicator.ty().to_proto() as i32,
        value: c.indicator.value().to_string(),
        distribution: Some(pb::Distribution {
            tlp: tlp.to_proto() as i32,
            recipients: recipients_for(tlp, c.org_only, args),
        }),
        body: Some(pb::submission::Body::Upsert(pb::IndicatorUpsert {
            indicator: None,
            confidence: c.confidence.unwrap_or(args.confidence).min(100),
            valid_from_unix_ms: valid_from,
            valid_until_unix_ms: c.valid_until_unix_ms,
            tags,
            threat_types: Vec::new(),
            description: c.description.clone(),
            external_references: Vec::new(),
        })),
    })
}

/// The idempotency key stem of a file's requests: a hash of exactly what they submit, so the
/// same file with the same options repeats its keys and anything else gets new ones.
fn content_key(submissions: &[pb::Submission]) -> String {
    let mut h = Sha256::new();
    h.update(format!("intelmesh import v1 chunk {IMPORT_CHUNK}\n").as_bytes());
    for s in submissions {
        let bytes = s.encode_to_vec();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    format!("import-{}", hex::encode(&h.finalize()[..20]))
}

/// Reads one file into a plan, counting what is left out.
fn plan(
    path: &Path,
    args: &ImportArgs,
    lists: Option<&Warninglists>,
    tally: &mut Tally,
) -> anyhow::Result<Plan> {
    let (format, read) = import_read::read(path, args.format, args.tlp)?;
    let FileRead {
        candidates,
        rejected,
        skipped,
        rejected_beyond,
        skipped_beyond,
        withheld,
    } = read;
    tally.withheld.extend(withheld);
    left(&mut tally.rejected, rejected);
    for (reason, n) in rejected_beyond {
        tally.rejected.add_count(&reason, n);
    }
    left(&mut tally.skipped, skipped);
    for (reason, n) in skipped_beyond {
        tally.skipped.add_count(&reason, n);
    }
    let (mut submissions, mut indicators) = (Vec::new(), Vec::new());
    for c in candidates {
        let tlp = c.tlp.unwrap_or(args.tlp);
        let (first, org_only) = (tally.strictest)
            .entry(c.indicator.clone())
            .or_insert((tlp, c.org_only));
        *first = (*first).max(tlp);
        *org_only |= c.org_only;
        if tally.settled.contains(&c.indicator) {
            tally.repeated_in_input += 1;
            continue;
        }
        let example = format!("{}: {} {}", c.origin, c.indicator.ty(), c.indicator.value());
        if let Some(w) = &c.warning {
            tally.warned.add(w, example.clone());
        }
        if let Some(lists) = lists {
            let on = lists.matches(&c.indicator);
            if !on.is_empty() {
                let held = if args.force {
                    "submitted (--force)"
                } else {
                    "not submitted"
                };
                tally.warned.add(
                    &format!("on warninglist {}: {held}", on.join(", ")),
                    example.clone(),
                );
                if !args.force {
                    tally.settled.insert(c.indicator);
                    continue;
                }
            }
        }
        match submission(&c, args) {
            Ok(s) => {
                submissions.push(s);
                tally.settled.insert(c.indicator.clone());
                indicators.push(c.indicator);
            }
            Err(reason) => tally.rejected.add(reason, example),
        }
    }
    Ok(Plan {
        path: path.to_path_buf(),
        format,
        submissions,
        indicators,
    })
}

/// Whom a value at `tlp` is addressed to: `--recipient` when restricted, unless the input
/// kept it to the importing org alone.
fn recipients_for(tlp: Tlp, org_only: bool, args: &ImportArgs) -> Vec<String> {
    match tlp.is_restricted() && !org_only {
        true => args.recipients.iter().map(ToString::to_string).collect(),
        false => Vec::new(),
    }
}

/// Gives each submission the strictest TLP level its value had anywhere in the input (a value
/// given CLEAR in one object and RED in a later one was signed CLEAR: the first won), and
/// counts the restricted ones that name no recipient.
fn narrow_repeats(plans: &mut [Plan], args: &ImportArgs, tally: &mut Tally) {
    for plan in plans {
        for (s, indicator) in plan.submissions.iter_mut().zip(&plan.indicators) {
            let d = s.distribution.get_or_insert_with(Default::default);
            let now = Tlp::from_proto(d.tlp).unwrap_or(args.tlp);
            let (strictest, org_only) = match tally.withheld.contains(indicator) {
                true => {
                    tally.warned.add(
                        "given elsewhere in the input under a TLP that could not be read: submitted RED to this org alone",
                        format!("{}: {} {}", plan.path.display(), indicator.ty(), indicator.value()),
                    );
                    (Tlp::Red, true)
                }
                false => (tally.strictest.get(indicator).copied()).unwrap_or((now, false)),
            };
            // Its org's alone wherever the input gave it so.
            d.recipients = recipients_for(strictest.max(now), org_only, args);
            if strictest > now {
                d.tlp = strictest.to_proto() as i32;
                tally.warned.add(
                    &format!(
                        "given a stricter TLP level elsewhere in the input: submitted {strictest}"
                    ),
                    format!(
                        "{}: {} {}",
                        plan.path.display(),
                        indicator.ty(),
                        indicator.value()
                    ),
                );
            }
            if strictest.is_restricted() && args.recipients.is_empty() {
                tally.restricted_without_recipient += 1;
            }
        }
    }
}

fn progress_bar(total: usize, json: bool) -> indicatif::ProgressBar {
    if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} values  {elapsed_precise}  {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

pub async fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    // A file's tags and these together must fit an entry, or every value would be refused.
    let room = intelmesh_core::entry::MAX_TAGS - crate::import_read::MAX_TAGS;
    if args.tags.len() > room {
        return Err(crate::usage(format!(
            "--tag given {} times; at most {room}",
            args.tags.len()
        )));
    }
    let longest = intelmesh_core::entry::MAX_TAG_BYTES;
    if let Some(t) = args.tags.iter().find(|t| t.len() > longest) {
        return Err(crate::usage(format!(
            "--tag of {} bytes; at most {longest}",
            t.len()
        )));
    }
    let lists = if args.warninglists.is_empty() {
        None
    } else {
        Some(load_warninglists(&args.warninglists)?)
    };
    let mut tally = Tally::default();
    let mut plans = Vec::new();
    for path in &args.files {
        match plan(path, &args, lists.as_ref(), &mut tally) {
            Ok(p) => plans.push(p),
            Err(e) => {
                eprintln!("error: {e:#}");
                tally.unreadable.push(format!("{e:#}"));
            }
        }
    }
    narrow_repeats(&mut plans, &args, &mut tally);
    let total: usize = plans.iter().map(|p| p.submissions.len()).sum();
    let mut org = String::new();
    let mut per_file = Vec::new();
    if total > 0 {
        let (target, client) = indicators(&args.conn).await?;
        org = target.org.to_string();
        let bar = progress_bar(total, args.json);
        for plan in &plans {
            bar.set_message(plan.path.display().to_string());
            let overrides = publish::Overrides {
                force: args.force,
                share_wider: args.share_wider,
            };
            let done = submit_plan(plan, &target, &client, &bar, overrides).await;
            let done = match done {
                Ok(d) => d,
                Err(e) => {
                    bar.abandon();
                    return Err(e.context(format!("importing {}", plan.path.display())));
                }
            };
            tally.imported += done.new;
            tally.duplicate += done.held + done.replayed;
            for (reason, example) in &done.warned {
                tally.warned.add(reason, example.clone());
            }
            per_file.push(done);
        }
        bar.finish_and_clear();
    } else {
        per_file.extend(plans.iter().map(|plan| Done {
            plan,
            new: 0,
            held: 0,
            replayed: 0,
            key: String::new(),
            warned: Vec::new(),
        }));
    }
    report(&args, &tally, &per_file, &org)?;
    Ok(if tally.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Leaves out what the node already holds identically, then submits the rest in requests
/// keyed by their content.
async fn submit_plan<'a>(
    plan: &'a Plan,
    target: &crate::conn::Target,
    client: &IndicatorsClient<Channel>,
    bar: &indicatif::ProgressBar,
    overrides: publish::Overrides,
) -> anyhow::Result<Done<'a>> {
    let force = overrides.force;
    let known = if plan.submissions.is_empty() {
        import_known::Known::default()
    } else {
        import_known::already_held(target, client, &plan.submissions).await?
    };
    let held = known.held;
    bar.inc(held.len() as u64);
    let mut held_set: HashSet<usize> = held.iter().copied().collect();
    // Values on the node's own warninglists: warned, and left out unless --force (the node
    // would refuse the whole request otherwise).
    let mut warned = Vec::new();
    for (i, lists) in &known.listed {
        let Some(s) = plan.submissions.get(*i) else {
            continue;
        };
        let fate = if force {
            "submitted (--force)"
        } else {
            "not submitted"
        };
        let reason = format!("on the node's warninglist {}: {fate}", lists.join(", "));
        warned.push((reason, s.value.clone()));
        if !force && held_set.insert(*i) {
            bar.inc(1);
        }
    }
    let rest: Vec<pb::Submission> = plan
        .submissions
        .iter()
        .enumerate()
        .filter(|(i, _)| !held_set.contains(i))
        .map(|(_, s)| s.clone())
        .collect();
    let key = content_key(&rest);
    let (mut new, mut replayed) = (0, 0);
    if !rest.is_empty() {
        let check = |i: usize| rest.get(i).map(|s| s.value.clone()).unwrap_or_default();
        let rerun = format!("re-run the same import of {}", plan.path.display());
        let requests = publish::Requests {
            target,
            client,
            chunk: IMPORT_CHUNK,
            key: &key,
            rerun: &rerun,
            overrides,
        };
        publish::submit_in_requests(&requests, &rest, &check, |part, answer| {
            bar.inc(part.len() as u64);
            if answer.replayed {
                replayed += answer.assigned.len();
            } else {
                new += answer.assigned.len();
            }
        })
        .await?;
    }
    Ok(Done {
        plan,
        new,
        held: held.len(),
        replayed,
        key,
        warned,
    })
}

fn report(args: &ImportArgs, tally: &Tally, per_file: &[Done], org: &str) -> anyhow::Result<()> {
    let duplicate = tally.duplicate + tally.repeated_in_input;
    if args.json {
        let files: Vec<_> = per_file
            .iter()
            .map(|d| {
                json!({"path": d.plan.path, "format": d.plan.format.name(),
                       "values": d.plan.submissions.len(), "imported": d.new,
                       "already_held": d.held, "replayed": d.replayed, "idempotency_key": d.key})
            })
            .collect();
        return print_json(&json!({
            "imported": tally.imported,
            "duplicate": duplicate,
            "duplicate_already_held": tally.duplicate,
            "duplicate_in_input": tally.repeated_in_input,
            "warned": tally.warned.total(),
            "rejected": tally.rejected.total(),
            "skipped": tally.skipped.total(),
            "unreadable": tally.unreadable,
            "restricted_without_recipient": tally.restricted_without_recipient,
            "files": files,
            "reasons": {
                "warned": tally.warned.json(),
                "rejected": tally.rejected.json(),
                "skipped": tally.skipped.json(),
            },
        }));
    }
    for d in per_file {
        out!(
            "{} ({}): {} values, {} new, {} already held by the node",
            d.plan.path.display(),
            d.plan.format.name(),
            d.plan.submissions.len(),
            d.new,
            d.held + d.replayed
        );
    }
    tally.rejected.print("rejected", true);
    tally.warned.print("warned", true);
    tally.skipped.print("skipped (no indicator)", false);
    if tally.restricted_without_recipient > 0 {
        out!(
            "note: {} values are AMBER+STRICT or RED with no --recipient: only {} reads them",
            tally.restricted_without_recipient,
            if org.is_empty() { "your org" } else { org }
        );
    }
    out!(
        "imported {} (new entries{}), duplicate {duplicate} ({} already asserted identically, not signed again; {} repeated in the input), warned {}, rejected {}, skipped {}{}",
        tally.imported,
        if org.is_empty() { String::new() } else { format!(" signed by {org}") },
        tally.duplicate,
        tally.repeated_in_input,
        tally.warned.total(),
        tally.rejected.total(),
        tally.skipped.total(),
        match tally.unreadable.len() {
            0 => String::new(),
            n => format!("; {n} file(s) could not be read (see the errors above)"),
        }
    );
    Ok(())
}
