//! The client commands (`submit`, `get`, `query`, `watch`, `status`; `lookup` is in
//! `lookup_cmd`): parse and check the input, make the call through the node's local API, print
//! the answer.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use intelmesh_core::indicator::{detect, IndicatorType};
use intelmesh_core::{OrgId, Tlp};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use intelmesh_proto::v1::node_status_client::NodeStatusClient;
use serde_json::json;

use crate::conn::{self, connect, rpc_error, ConnectArgs, Target};
use crate::input::{check_values, parse_org, parse_since, parse_tlp, parse_type, read_values};
use crate::publish;
use crate::render;
use crate::usage;

/// Submissions per request: well under the message size limit whatever the values.
const SUBMIT_CHUNK: usize = 500;

#[derive(Args, Debug)]
#[command(after_help = "\
Each run sends an idempotency key (random, or --idempotency-key) and, if the connection breaks \
after a request was sent, retries it with the same key a few times: the node signs nothing \
twice and answers with what the first request published.

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
    /// Who may read it: clear, green, amber, amber+strict or red.
    #[arg(long, default_value = "amber", value_parser = parse_tlp)]
    pub tlp: Tlp,
    /// With amber+strict or red: an org that may read it besides yours (repeatable).
    #[arg(long = "recipient", value_name = "ORG", value_parser = parse_org)]
    pub recipients: Vec<OrgId>,
    /// How sure you are, 0 to 100.
    #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub confidence: u32,
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
    #[arg(long, requires = "reason", conflicts_with_all = ["tags", "threat_types", "description"])]
    pub revoke: bool,
    /// Why the values are revoked (with --revoke).
    #[arg(long, requires = "revoke")]
    pub reason: Option<String>,
    /// Drop values that are not valid indicators (and say which) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Idempotency key of this submission (default: a new random one). Re-running with the key
    /// of an earlier run and the same values publishes only what that run did not.
    #[arg(long, value_name = "KEY", value_parser = publish::parse_key)]
    pub idempotency_key: Option<String>,
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// `TYPE VALUE`, or just `VALUE` to detect the type.
    #[arg(value_name = "TYPE_OR_VALUE")]
    pub first: String,
    #[arg(value_name = "VALUE")]
    pub second: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    /// Only this indicator type (repeatable).
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    pub types: Vec<IndicatorType>,
    /// Only indicators with any of these tags (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only indicators asserted or sighted by any of these orgs (repeatable).
    #[arg(long = "origin", value_name = "ORG", value_parser = parse_org)]
    pub origins: Vec<OrgId>,
    /// Most restrictive TLP to return (e.g. green leaves out amber and red).
    #[arg(long, value_name = "TLP", value_parser = parse_tlp)]
    pub tlp_ceiling: Option<Tlp>,
    /// Only indicators updated since then: Unix milliseconds or an age (90s, 15m, 12h, 7d).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<i64>,
}

impl FilterArgs {
    pub(crate) fn to_proto(&self) -> pb::Filter {
        pb::Filter {
            types: self.types.iter().map(|t| t.to_proto() as i32).collect(),
            tags: self.tags.clone(),
            origins: self.origins.iter().map(ToString::to_string).collect(),
            tlp_ceiling: self.tlp_ceiling.map_or(0, |t| t.to_proto() as i32),
            updated_since_unix_ms: self.since.unwrap_or(0),
        }
    }
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Indicators per page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub page_size: u32,
    /// Continue from the token a previous page printed.
    #[arg(long, value_name = "TOKEN", default_value = "")]
    pub page_token: String,
    /// Follow every page to the end.
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Resume after this cursor (printed with every event).
    #[arg(long, value_name = "CURSOR", conflicts_with = "from_start")]
    pub cursor: Option<String>,
    /// Replay the whole log before following live changes.
    #[arg(long)]
    pub from_start: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn indicators(
    conn: &ConnectArgs,
) -> anyhow::Result<(Target, IndicatorsClient<tonic::transport::Channel>)> {
    let target = conn.target()?;
    let channel = connect(&target).await?;
    Ok((target, IndicatorsClient::new(channel)))
}

pub(crate) fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    if !args.tlp.is_restricted() && !args.recipients.is_empty() {
        return Err(usage(format!(
            "--recipient applies to --tlp amber+strict or red; TLP:{} goes to every member",
            args.tlp
        )));
    }
    let values = read_values(&args.values, args.file.as_deref())?;
    let (checked, skipped) = check_values(values, args.ty, args.skip_invalid)?;
    for s in &skipped {
        eprintln!("skipped {s}");
    }
    let distribution = pb::Distribution {
        tlp: args.tlp.to_proto() as i32,
        recipients: args.recipients.iter().map(ToString::to_string).collect(),
    };
    let submissions: Vec<pb::Submission> = checked
        .iter()
        .map(|c| {
            let ty = c.indicator.ty().to_proto() as i32;
            // The node normalizes the raw value itself (the check above only catches mistakes
            // before anything is signed) and fills the body's indicator from type and value.
            let body = if args.revoke {
                pb::submission::Body::Revoke(pb::IndicatorRevoke {
                    indicator: None,
                    reason: args.reason.clone().unwrap_or_default(),
                })
            } else {
                pb::submission::Body::Upsert(pb::IndicatorUpsert {
                    indicator: None,
                    confidence: args.confidence,
                    valid_from_unix_ms: 0,
                    valid_until_unix_ms: None,
                    tags: args.tags.clone(),
                    threat_types: args.threat_types.clone(),
                    description: args.description.clone(),
                    external_references: Vec::new(),
                })
            };
            pb::Submission {
                r#type: ty,
                value: c.raw.value.clone(),
                distribution: Some(distribution.clone()),
                body: Some(body),
            }
        })
        .collect();
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(publish::new_key);
    let (target, client) = indicators(&args.conn).await?;
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
        force: false,
    };
    let answers = publish::submit_in_requests(&requests, &submissions, &check, |_, _| {}).await?;
    let mut assigned = Vec::new();
    // Entries an earlier request with the same key published.
    let mut replayed = 0;
    for response in answers {
        if response.replayed {
            replayed += response.assigned.len();
        }
        assigned.extend(response.assigned);
    }
    if args.json {
        let items: Vec<_> = assigned
            .iter()
            .map(|a| {
                json!({"origin": a.origin, "seq": a.seq,
                       "indicator": render::indicator_json(a.indicator.as_ref())})
            })
            .collect();
        print_json(&json!({"assigned": items, "skipped": skipped,
                           "idempotency_key": key, "replayed": replayed > 0}))?;
    } else {
        for a in &assigned {
            out!(
                "{}#{}  {}",
                a.origin,
                a.seq,
                render::indicator_text(a.indicator.as_ref())
            );
        }
        out!(
            "{} {}{} signed by {} and durable (TLP:{}){}{}",
            assigned.len(),
            if args.revoke {
                "revocation"
            } else {
                "indicator"
            },
            if assigned.len() == 1 { "" } else { "s" },
            target.org,
            args.tlp,
            if skipped.is_empty() {
                String::new()
            } else {
                format!(", {} invalid value(s) skipped", skipped.len())
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
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let (ty, value) = match &args.second {
        Some(value) => (parse_type(&args.first).map_err(usage)?, value.clone()),
        None => {
            let indicator = detect(&args.first).map_err(|e| {
                usage(format!(
                    "{:?}: {e}; give the type first, e.g. `get domain VALUE`",
                    args.first
                ))
            })?;
            (indicator.ty(), args.first.clone())
        }
    };
    let (target, mut client) = indicators(&args.conn).await?;
    let response = client
        .get(conn::request(
            &target,
            pb::GetRequest {
                r#type: ty.to_proto() as i32,
                value: value.clone(),
            },
        ))
        .await
        .map_err(|s| rpc_error(&target, "Get", s))?
        .into_inner();
    let verdict = render::verdict_name(response.verdict);
    if args.json {
        let provenance: Vec<_> = response
            .provenance
            .iter()
            .map(|p| json!({"origin": p.origin, "seq": p.seq, "header_hash": p.header_hash}))
            .collect();
        print_json(&json!({
            "found": response.found,
            "verdict": verdict,
            "state": response.state.as_ref().map(render::state_json),
            "provenance": provenance,
        }))?;
    } else if !response.found {
        out!("{ty} {value}: not known to {}", target.org);
    } else {
        match &response.state {
            Some(state) => out!("{}\n  verdict: {verdict}", render::state_text(state)),
            None => out!("{ty} {value}: verdict {verdict}"),
        }
        for p in &response.provenance {
            out!(
                "  {}#{} signed entry header sha256 {}",
                p.origin,
                p.seq,
                p.header_hash
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a paged read starts and how far it goes.
pub(crate) struct Pages {
    pub page_size: u32,
    pub token: String,
    /// Every page to the end, or only the first.
    pub all: bool,
}

/// The states a filter matches, page by page from `pages.token`, each page shown to `each` as
/// it arrives; with the token of the next page (empty at the end).
pub(crate) async fn query_pages(
    conn: &ConnectArgs,
    filter: pb::Filter,
    pages: Pages,
    mut each: impl FnMut(&[pb::IndicatorState]),
) -> anyhow::Result<(Vec<pb::IndicatorState>, String)> {
    let (target, mut client) = indicators(conn).await?;
    let mut token = pages.token;
    let mut states = Vec::new();
    loop {
        let page = client
            .query(conn::request(
                &target,
                pb::QueryRequest {
                    filter: Some(filter.clone()),
                    page_size: pages.page_size,
                    page_token: token.clone(),
                },
            ))
            .await
            .map_err(|s| rpc_error(&target, "Query", s))?
            .into_inner();
        each(&page.states);
        states.extend(page.states);
        token = page.next_page_token;
        if token.is_empty() || !pages.all {
            return Ok((states, token));
        }
    }
}

pub async fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let pages = Pages {
        page_size: args.page_size,
        token: args.page_token.clone(),
        all: args.all,
    };
    let (states, token) = query_pages(&args.conn, args.filter.to_proto(), pages, |page| {
        if !args.json {
            for s in page {
                out!("{}", render::state_summary(s));
            }
        }
    })
    .await?;
    if args.json {
        let items: Vec<_> = states.iter().map(render::state_json).collect();
        print_json(&json!({"states": items, "next_page_token": token}))?;
    } else if token.is_empty() {
        out!("{} indicators", states.len());
    } else {
        out!(
            "{} indicators; more with --page-token {token} (or --all)",
            states.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let (target, mut client) = indicators(&args.conn).await?;
    let mut stream = client
        .watch(pb::WatchRequest {
            filter: Some(args.filter.to_proto()),
            cursor: args.cursor.clone().unwrap_or_default(),
            from_start: args.from_start,
        })
        .await
        .map_err(|s| rpc_error(&target, "Watch", s))?
        .into_inner();
    // One SIGINT listener for the whole stream, so a Ctrl-C between two events is not lost.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut last_cursor = args.cursor.clone().unwrap_or_default();
    let mut seen = 0u64;
    let resume_hint = |cursor: &str| {
        if cursor.is_empty() {
            String::new()
        } else {
            format!("; resume with --cursor {cursor}")
        }
    };
    loop {
        if args.count.is_some_and(|n| seen >= n) {
            return Ok(ExitCode::SUCCESS);
        }
        let next = tokio::select! {
            m = stream.message() => m,
            _ = sigint.recv() => {
                eprintln!("interrupted{}", resume_hint(&last_cursor));
                return Ok(ExitCode::from(crate::EXIT_INTERRUPTED));
            }
        };
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) => {
                eprintln!("the node ended the stream{}", resume_hint(&last_cursor));
                return Ok(ExitCode::SUCCESS);
            }
            Err(status) => {
                return Err(rpc_error(&target, "Watch", status)
                    .context(format!("stream broken{}", resume_hint(&last_cursor))))
            }
        };
        seen += 1;
        last_cursor.clone_from(&event.cursor);
        if args.json {
            out!(
                "{}",
                json!({
                    "origin": event.origin,
                    "seq": event.seq,
                    "cursor": event.cursor,
                    "durable_at_unix_ms": event.durable_at_unix_ms,
                    "state": event.state.as_ref().map(render::state_json),
                })
            );
        } else {
            let what = event
                .state
                .as_ref()
                .map(render::state_summary)
                .unwrap_or_else(|| "(withheld)".to_string());
            out!(
                "{} {}#{} {}  cursor={}",
                render::fmt_time(event.durable_at_unix_ms),
                event.origin,
                event.seq,
                what,
                event.cursor
            );
        }
    }
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let target = args.conn.target()?;
    let channel = connect(&target).await?;
    let response = NodeStatusClient::new(channel)
        .status(conn::request(&target, pb::StatusRequest {}))
        .await
        .map_err(|s| rpc_error(&target, "Status", s))?
        .into_inner();
    if args.json {
        print_json(&render::status_json(&response))?;
    } else {
        out!(
            "{}",
            render::status_text(&response, intelmesh_core::now_unix_ms())
        );
    }
    Ok(ExitCode::SUCCESS)
}
