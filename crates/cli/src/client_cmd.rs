//! The reading client commands (`get`, `query`, `watch`, `status`; `lookup` is in
//! `lookup_cmd`, the publishing ones in `submit_cmd`): parse and check the input, make the call through the node's local API, print
//! the answer.

use std::process::ExitCode;

use clap::Args;
use intelmesh_core::indicator::{detect, IndicatorType};
use intelmesh_core::{OrgId, Tlp};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use intelmesh_proto::v1::node_status_client::NodeStatusClient;
use serde_json::json;

use crate::conn::{self, connect, rpc_error, ConnectArgs, Target};
use crate::input::{parse_org, parse_since, parse_tlp, parse_type};
use crate::render;
use crate::usage;

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
