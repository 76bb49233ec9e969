//! The publishing client commands: `submit` (assertions with their validity, and revocations
//! that keep the distribution of what they revoke) and `sighting` (`ReportSighting`). Both
//! send idempotency keys and retry through `publish`, and print what was signed alike.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use intelmesh_core::indicator::{detect, normalize, IndicatorType};
use intelmesh_core::{OrgId, Tlp, VerifyConfig};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::client_cmd::{indicators, print_json};
use crate::conn::{ConnectArgs, Target};
use crate::import_known::own_assertions;
use crate::input::{check_values, parse_org, parse_time, parse_tlp, parse_type, read_values};
use crate::publish;
use crate::render;
use crate::usage;

/// Submissions per request: well under the message size limit whatever the values.
const SUBMIT_CHUNK: usize = 500;

/// TLP of an assertion or sighting when `--tlp` is not given.
const DEFAULT_TLP: Tlp = Tlp::Amber;

#[derive(Args, Debug)]
#[command(after_help = "\
Each run sends an idempotency key (random, or --idempotency-key) and, if the connection breaks \
after a request was sent, retries it with the same key a few times: the node signs nothing \
twice and answers with what the first request published.

--revoke withdraws this org's own assertion of each value: values the node holds no assertion \
of this org for (or only a revoked one) are refused before anything is sent, and each \
revocation keeps the TLP and recipients of the assertion it revokes unless --tlp or \
--recipient is given.

Exit status: 0 published; 1 failed; 2 bad input; 3 outcome unknown (the connection broke after \
a request was sent and no retry got an answer): it may have been published, and re-running \
with the --idempotency-key the message gives finishes it safely.")]
pub struct SubmitArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Indicator type of every value; without it each value's type is detected.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    pub ty: Option<IndicatorType>,
    /// Values (defanged forms such as `evil[.]example` or `hxxp://…` are fine).
    #[arg(value_name = "VALUE")]
    pub values: Vec<String>,
    /// Read values from FILE (`-` for stdin): one per line, `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub share: ShareArgs,
    /// How sure you are, 0 to 100.
    #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub confidence: u32,
    /// When the assertion takes effect: RFC 3339 or Unix milliseconds (default: when signed).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub valid_from: Option<i64>,
    /// When the assertion expires: RFC 3339 or Unix milliseconds, after --valid-from and now
    /// (default: never).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub valid_until: Option<i64>,
    /// A tag (repeatable), e.g. `--tag apt29 --tag c2`.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A threat type (repeatable), e.g. `malware`, `phishing`.
    #[arg(long = "threat-type", value_name = "NAME")]
    pub threat_types: Vec<String>,
    /// Free text shared with the assertion.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Withdraw your earlier assertion of these values instead of asserting them.
    #[arg(long, requires = "reason", conflicts_with_all = [
        "tags", "threat_types", "description", "confidence", "valid_from", "valid_until"])]
    pub revoke: bool,
    /// Why the values are revoked (with --revoke).
    #[arg(long, requires = "revoke")]
    pub reason: Option<String>,
    /// Drop values that are not valid indicators (and say which) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Publish values on the node's warninglists of known-benign values too (without it the
    /// node refuses the whole request, naming them).
    #[arg(long, conflicts_with = "revoke")]
    pub force: bool,
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// Who may read what is published.
#[derive(Args, Debug)]
pub struct ShareArgs {
    /// Who may read it: clear, green, amber, amber+strict or red (default amber; a revocation
    /// keeps the revoked assertion's).
    #[arg(long, value_parser = parse_tlp)]
    pub tlp: Option<Tlp>,
    /// With amber+strict or red: an org that may read it besides yours (repeatable).
    #[arg(long = "recipient", value_name = "ORG", value_parser = parse_org)]
    pub recipients: Vec<OrgId>,
    /// Share a value this node knows only as RED or AMBER+STRICT wider than those entries'
    /// readers (without it the node refuses, naming who may read it): for what this agency
    /// knows on its own, not what it was told.
    #[arg(long)]
    pub share_wider: bool,
}

/// How a publishing run is keyed and printed.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Idempotency key of this run (default: a new random one). Re-running with the key of an
    /// earlier run and the same input publishes only what that run did not.
    #[arg(long, value_name = "KEY", value_parser = publish::parse_key)]
    pub idempotency_key: Option<String>,
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Retried with the same idempotency key like submit; exit status as for submit (3: outcome \
unknown, re-run with the --idempotency-key the message gives).")]
pub struct SightingArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// The value seen (defanged forms are fine).
    #[arg(value_name = "VALUE")]
    pub value: String,
    /// Its indicator type; without it the type is detected.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    pub ty: Option<IndicatorType>,
    /// How many times it was seen.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// When it was (last) seen: RFC 3339 or Unix milliseconds (default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub seen_at: Option<i64>,
    #[command(flatten)]
    pub share: ShareArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
}

impl ShareArgs {
    /// The distribution `--tlp` and `--recipient` give, with `tlp` when `--tlp` is absent.
    fn distribution(&self, tlp: Tlp) -> anyhow::Result<pb::Distribution> {
        let tlp = self.tlp.unwrap_or(tlp);
        if !tlp.is_restricted() && !self.recipients.is_empty() {
            return Err(usage(format!(
                "--recipient applies to --tlp amber+strict or red; TLP:{tlp} goes to every member"
            )));
        }
        Ok(pb::Distribution {
            tlp: tlp.to_proto() as i32,
            recipients: self.recipients.iter().map(ToString::to_string).collect(),
        })
    }

    /// Whether the command line says who may read it (else a revocation keeps the revoked
    /// assertion's distribution).
    fn given(&self) -> bool {
        self.tlp.is_some() || !self.recipients.is_empty()
    }
}

/// Refuses a validity window that is empty or already over: the node refuses the first, and
/// would sign the second as an assertion nobody acts on.
pub(crate) fn check_validity(
    from: Option<i64>,
    until: Option<i64>,
    now: i64,
) -> Result<(), String> {
    let Some(until) = until else { return Ok(()) };
    if let Some(from) = from.filter(|from| until <= *from) {
        return Err(format!(
            "--valid-until {} is not after --valid-from {}",
            render::fmt_time(until),
            render::fmt_time(from)
        ));
    }
    if until <= now {
        return Err(format!(
            "--valid-until {} is not in the future (now is {}): the assertion would be expired when signed",
            render::fmt_time(until),
            render::fmt_time(now)
        ));
    }
    Ok(())
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    check_validity(
        args.valid_from,
        args.valid_until,
        intelmesh_core::now_unix_ms(),
    )
    .map_err(usage)?;
    // Checked before anything is read, so a wrong --recipient is named first. A revocation's
    // comes from the assertion it revokes (see `revocations`), which may be restricted.
    let asserted = if args.revoke {
        None
    } else {
        Some(args.share.distribution(DEFAULT_TLP)?)
    };
    let values = read_values(&args.values, args.file.as_deref())?;
    let (checked, skipped) = check_values(values, args.ty, args.skip_invalid)?;
    for s in &skipped {
        eprintln!("skipped {s}");
    }
    let body = if args.revoke {
        pb::submission::Body::Revoke(pb::IndicatorRevoke {
            indicator: None,
            reason: args.reason.clone().unwrap_or_default(),
        })
    } else {
        pb::submission::Body::Upsert(pb::IndicatorUpsert {
            indicator: None,
            confidence: args.confidence,
            valid_from_unix_ms: args.valid_from.unwrap_or(0),
            valid_until_unix_ms: args.valid_until,
            tags: args.tags.clone(),
            threat_types: args.threat_types.clone(),
            description: args.description.clone(),
            external_references: Vec::new(),
        })
    };
    // The node normalizes the raw value itself (the check above only catches mistakes before
    // anything is signed) and fills the body's indicator from type and value.
    let mut submissions: Vec<pb::Submission> = checked
        .iter()
        .map(|c| pb::Submission {
            r#type: c.indicator.ty().to_proto() as i32,
            value: c.raw.value.clone(),
            distribution: asserted.clone(),
            body: Some(body.clone()),
        })
        .collect();
    let (target, client) = indicators(&args.conn).await?;
    if args.revoke {
        revocations(&target, &client, &args.share, &mut submissions).await?;
    }
    let key = args
        .publish
        .idempotency_key
        .clone()
        .unwrap_or_else(publish::new_key);
    let check = |i: usize| {
        checked
            .get(i)
            .map(|c| c.indicator.value().to_string())
            .unwrap_or_default()
    };
    let rerun = format!("re-run with --idempotency-key {key}");
    let requests = publish::Requests {
        target: &target,
        client: &client,
        chunk: SUBMIT_CHUNK,
        key: &key,
        rerun: &rerun,
        overrides: publish::Overrides {
            force: args.force,
            share_wider: args.share.share_wider,
        },
    };
    let answers = publish::submit_in_requests(&requests, &submissions, &check, |_, _| {}).await?;
    let tlps: BTreeSet<i32> = submissions
        .iter()
        .filter_map(|s| s.distribution.as_ref().map(|d| d.tlp))
        .collect();
    let shown = Published {
        target: &target,
        what: if args.revoke {
            "revocation"
        } else {
            "indicator"
        },
        tlp: match tlps.iter().collect::<Vec<_>>().as_slice() {
            [one] => format!("TLP:{}", render::tlp_name(**one)),
            _ => "each with the revoked assertion's TLP".to_string(),
        },
        skipped: &skipped,
        key: &key,
        json: args.publish.json,
    };
    shown.print(answers)?;
    Ok(ExitCode::SUCCESS)
}

/// Turns `submissions` (revocations) into what `target.org` can revoke: each value must carry
/// an assertion of this org in force, and each revocation takes that assertion's distribution
/// unless `share` gives one, so it reaches exactly the readers of what it withdraws. Anything
/// else is refused before a request is sent, naming the values.
async fn revocations(
    target: &Target,
    client: &IndicatorsClient<Channel>,
    share: &ShareArgs,
    submissions: &mut [pb::Submission],
) -> anyhow::Result<()> {
    let items: Vec<(usize, &pb::Submission)> = submissions.iter().enumerate().collect();
    let found = own_assertions(target, client, &items).await?;
    let mut refused = Vec::new();
    let mut kept = Vec::with_capacity(found.len());
    for (i, ours) in found {
        let value = submissions
            .get(i)
            .map(|s| s.value.clone())
            .unwrap_or_default();
        match ours {
            None => refused.push(format!("{value}: {} never asserted it", target.org)),
            Some(a) if a.revoked => {
                refused.push(format!("{value}: {} already revoked it", target.org))
            }
            Some(a) => kept.push((i, a.distribution)),
        }
    }
    if !refused.is_empty() {
        let shown: Vec<&str> = refused.iter().take(3).map(String::as_str).collect();
        return Err(usage(format!(
            "nothing to revoke for {} value(s): {}{}; nothing was sent",
            refused.len(),
            shown.join("; "),
            if refused.len() > shown.len() {
                "; …"
            } else {
                ""
            }
        )));
    }
    for (i, distribution) in kept {
        let Some(s) = submissions.get_mut(i) else {
            continue;
        };
        if share.given() {
            // The assertion's TLP still applies when only --recipient changes (RED, the safe
            // reading, if the node showed none).
            let tlp = distribution
                .as_ref()
                .and_then(|d| Tlp::from_proto(d.tlp))
                .unwrap_or(Tlp::Red);
            let revoking = format!("revoking {}", s.value);
            s.distribution = Some(share.distribution(tlp).map_err(|e| e.context(revoking))?);
            // Readers of the assertion outside the new distribution never see it withdrawn.
            if share.tlp.is_some_and(|new| new > tlp) {
                eprintln!(
                    "warning: {}: the revocation is stricter than the TLP:{tlp} assertion it revokes; its readers outside TLP:{} keep the assertion",
                    s.value,
                    share.tlp.unwrap_or(tlp)
                );
            }
        } else {
            s.distribution = distribution;
        }
    }
    Ok(())
}

pub async fn sighting(args: SightingArgs) -> anyhow::Result<ExitCode> {
    let indicator = match args.ty {
        Some(ty) => normalize(ty, &args.value),
        None => detect(&args.value),
    }
    .map_err(|e| {
        usage(format!(
            "{:?}: {e}{}",
            args.value,
            if args.ty.is_none() {
                "; give its type with --type"
            } else {
                ""
            }
        ))
    })?;
    let now = intelmesh_core::now_unix_ms();
    if let Some(t) = args.seen_at {
        // The node refuses the same (it allows its clock skew); said here with readable times.
        if t > now.saturating_add(VerifyConfig::DEFAULT_SKEW_MS) {
            return Err(usage(format!(
                "--seen-at {} is in the future (now is {})",
                render::fmt_time(t),
                render::fmt_time(now)
            )));
        }
    }
    let distribution = args.share.distribution(DEFAULT_TLP)?;
    let key = args
        .publish
        .idempotency_key
        .clone()
        .unwrap_or_else(publish::new_key);
    let request = pb::ReportSightingRequest {
        r#type: indicator.ty().to_proto() as i32,
        value: args.value.clone(),
        seen_at_unix_ms: args.seen_at.unwrap_or(0),
        count: args.count,
        distribution: Some(distribution.clone()),
        idempotency_key: key.clone(),
        share_wider: args.share.share_wider,
    };
    let (target, client) = indicators(&args.conn).await?;
    let answer = publish::until_known(|| {
        let mut client = client.clone();
        let request = crate::conn::request(&target, request.clone());
        async move {
            client
                .report_sighting(request)
                .await
                .map(tonic::Response::into_inner)
        }
    })
    .await
    .map_err(|failed| {
        let rerun = format!("re-run with --idempotency-key {key}");
        publish::failed_error(&target, "ReportSighting", failed, &rerun, indicator.value())
    })?;
    let shown = Published {
        target: &target,
        what: "sighting",
        tlp: format!("TLP:{}", render::tlp_name(distribution.tlp)),
        skipped: &[],
        key: &key,
        json: args.publish.json,
    };
    shown.print(vec![answer])?;
    Ok(ExitCode::SUCCESS)
}

/// How a publishing command's answers are printed.
struct Published<'a> {
    target: &'a Target,
    /// What each signed entry is ("indicator", "revocation", "sighting").
    what: &'a str,
    /// Who may read them, e.g. `TLP:AMBER`.
    tlp: String,
    skipped: &'a [String],
    key: &'a str,
    json: bool,
}

impl Published<'_> {
    fn print(&self, answers: Vec<pb::SubmitResponse>) -> anyhow::Result<()> {
        let key = self.key;
        let mut assigned = Vec::new();
        // Entries an earlier request with the same key published.
        let mut replayed = 0;
        for response in answers {
            if response.replayed {
                replayed += response.assigned.len();
            }
            assigned.extend(response.assigned);
        }
        if self.json {
            let items: Vec<_> = assigned
                .iter()
                .map(|a| {
                    json!({"origin": a.origin, "seq": a.seq,
                           "indicator": render::indicator_json(a.indicator.as_ref())})
                })
                .collect();
            return print_json(&json!({"assigned": items, "skipped": self.skipped,
                                      "idempotency_key": key, "replayed": replayed > 0}));
        }
        for a in &assigned {
            out!(
                "{}#{}  {}",
                a.origin,
                a.seq,
                render::indicator_text(a.indicator.as_ref())
            );
        }
        out!(
            "{} {}{} signed by {} and durable ({}){}{}",
            assigned.len(),
            self.what,
            if assigned.len() == 1 { "" } else { "s" },
            self.target.org,
            self.tlp,
            if self.skipped.is_empty() {
                String::new()
            } else {
                format!(", {} invalid value(s) skipped", self.skipped.len())
            },
            match replayed {
                0 => String::new(),
                n if n == assigned.len() => format!(
                    "; published by an earlier request with idempotency key {key}, nothing signed again"
                ),
                n => format!(
                    "; {n} of them published by an earlier request with idempotency key {key}, not signed again"
                ),
            }
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validity_window_must_be_open_and_not_over() {
        let now = 1_700_000_000_000;
        assert!(check_validity(None, None, now).is_ok());
        assert!(check_validity(None, Some(now + 1), now).is_ok());
        assert!(check_validity(Some(now - 10), Some(now + 5), now).is_ok());
        assert!(check_validity(Some(now - 10), Some(now - 5), now).is_err());
        let past = check_validity(None, Some(now), now).unwrap_err();
        assert!(past.contains("not in the future"), "{past}");
        let empty = check_validity(Some(now + 10), Some(now + 10), now).unwrap_err();
        assert!(empty.contains("not after --valid-from"), "{empty}");
    }
}
