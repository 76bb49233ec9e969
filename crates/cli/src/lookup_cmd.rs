//! The `lookup` client command: bulk values through the node's `Lookup`, each printed with
//! its verdict and, when blocks, parent domains or a host matched, a line per match.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use intelmesh_proto::v1 as pb;
use serde_json::{json, Value};

use crate::client_cmd::{indicators, print_json};
use crate::conn::{self, rpc_error, ConnectArgs};
use crate::input::read_values;
use crate::render;

/// Values per request: a tenth of what the node takes (`MAX_LOOKUPS`), so one answer stays
/// well inside the message size limit even when many values match several blocks.
const LOOKUP_CHUNK: usize = 1000;

#[derive(Args, Debug)]
pub struct LookupArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Raw values, in any case, defanged or not.
    #[arg(value_name = "VALUE")]
    pub values: Vec<String>,
    /// Read values from FILE (`-` for stdin): one per line, `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub async fn lookup(args: LookupArgs) -> anyhow::Result<ExitCode> {
    let values: Vec<String> = read_values(&args.values, args.file.as_deref())?
        .into_iter()
        .map(|v| v.value)
        .collect();
    let results = lookup_values(&args.conn, &values).await?;
    if args.json {
        let items: Vec<Value> = results.iter().map(result_json).collect();
        print_json(&json!({"results": items}))?;
        return Ok(ExitCode::SUCCESS);
    }
    for line in results.iter().flat_map(lines) {
        out!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The node's answer for each of `values`, in order, asked [`LOOKUP_CHUNK`] at a time.
pub(crate) async fn lookup_values(
    conn: &ConnectArgs,
    values: &[String],
) -> anyhow::Result<Vec<pb::LookupResult>> {
    let (target, mut client) = indicators(conn).await?;
    let mut results = Vec::with_capacity(values.len());
    for chunk in values.chunks(LOOKUP_CHUNK) {
        let response = client
            .lookup(conn::request(
                &target,
                pb::LookupRequest {
                    values: chunk.to_vec(),
                },
            ))
            .await
            .map_err(|s| rpc_error(&target, "Lookup", s))?
            .into_inner();
        if response.results.len() != chunk.len() {
            anyhow::bail!(
                "Lookup answered {} results for {} values",
                response.results.len(),
                chunk.len()
            );
        }
        results.extend(response.results);
    }
    Ok(results)
}

fn kind_name(kind: i32) -> &'static str {
    match pb::MatchKind::try_from(kind) {
        Ok(pb::MatchKind::Exact) => "exact",
        Ok(pb::MatchKind::Cidr) => "cidr",
        Ok(pb::MatchKind::ParentDomain) => "parent domain",
        Ok(pb::MatchKind::Host) => "host",
        Ok(pb::MatchKind::Unspecified) | Err(_) => "unspecified",
    }
}

/// " confidence N from A,B", or nothing when no origin is behind it.
fn backing(confidence: u32, origins: &[String]) -> String {
    if origins.is_empty() {
        String::new()
    } else {
        format!(" confidence {confidence} from {}", origins.join(","))
    }
}

/// The text of one result: the value and its overall verdict, then, if anything other than the
/// value itself matched, one line per match ("10.1.2.3 listed via 10.0.0.0/8 (cidr) ...").
fn lines(r: &pb::LookupResult) -> Vec<String> {
    if !r.error.is_empty() {
        return vec![format!("{}  invalid: {}", r.input, r.error)];
    }
    let mut out = vec![format!(
        "{}  {}  {}{}",
        r.input,
        render::indicator_text(r.indicator.as_ref()),
        render::verdict_name(r.verdict),
        backing(r.max_confidence, &r.origins)
    )];
    if !r.warninglists.is_empty() {
        out.push(format!(
            "{} on the node's warninglist {} (known benign: do not block)",
            r.input,
            r.warninglists.join(", ")
        ));
    }
    if r.matches.iter().all(|m| m.kind() == pb::MatchKind::Exact) {
        return out;
    }
    for m in &r.matches {
        let how = match m.verdict() {
            pb::Verdict::Malicious => "listed",
            pb::Verdict::Revoked => "revoked",
            pb::Verdict::Seen => "seen",
            pb::Verdict::Unknown | pb::Verdict::Unspecified => "known",
        };
        let what = m.indicator.as_ref().map_or("?", |i| i.value.as_str());
        out.push(format!(
            "{} {how} via {what} ({}){}",
            r.input,
            kind_name(m.kind),
            backing(m.max_confidence, &m.origins)
        ));
    }
    out
}

fn result_json(r: &pb::LookupResult) -> Value {
    let matches: Vec<Value> = r
        .matches
        .iter()
        .map(|m| {
            json!({
                "indicator": render::indicator_json(m.indicator.as_ref()),
                "kind": kind_name(m.kind),
                "verdict": render::verdict_name(m.verdict),
                "max_confidence": m.max_confidence,
                "origins": m.origins,
            })
        })
        .collect();
    json!({
        "input": r.input,
        "indicator": render::indicator_json(r.indicator.as_ref()),
        "verdict": render::verdict_name(r.verdict),
        "error": r.error,
        "max_confidence": r.max_confidence,
        "origins": r.origins,
        "matches": matches,
        "warninglists": r.warninglists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(value: &str, ty: pb::IndicatorType) -> Option<pb::IndicatorRef> {
        Some(pb::IndicatorRef {
            r#type: ty as i32,
            value: value.into(),
        })
    }

    fn m(value: &str, kind: pb::MatchKind, verdict: pb::Verdict, c: u32) -> pb::LookupMatch {
        pb::LookupMatch {
            indicator: r(value, pb::IndicatorType::Cidr),
            kind: kind as i32,
            verdict: verdict as i32,
            max_confidence: c,
            origins: vec!["AU-AFP".into()],
        }
    }

    #[test]
    fn containing_matches_get_a_line_each_and_exact_ones_stay_one_line() {
        let mut found = pb::LookupResult {
            input: "10.1.2.3".into(),
            indicator: r("10.1.2.3", pb::IndicatorType::Ipv4),
            verdict: pb::Verdict::Malicious as i32,
            max_confidence: 80,
            origins: vec!["AU-AFP".into()],
            matches: vec![
                m("10.1.2.0/24", pb::MatchKind::Cidr, pb::Verdict::Revoked, 0),
                m(
                    "10.0.0.0/8",
                    pb::MatchKind::Cidr,
                    pb::Verdict::Malicious,
                    80,
                ),
            ],
            ..Default::default()
        };
        assert_eq!(
            lines(&found),
            [
                "10.1.2.3  ipv4 10.1.2.3  malicious confidence 80 from AU-AFP",
                "10.1.2.3 revoked via 10.1.2.0/24 (cidr) confidence 0 from AU-AFP",
                "10.1.2.3 listed via 10.0.0.0/8 (cidr) confidence 80 from AU-AFP",
            ]
        );
        let j = result_json(&found);
        assert_eq!(j["matches"][1]["kind"], "cidr");
        assert_eq!(j["matches"][1]["indicator"]["value"], "10.0.0.0/8");
        found.matches = vec![m(
            "10.1.2.3",
            pb::MatchKind::Exact,
            pb::Verdict::Malicious,
            80,
        )];
        assert_eq!(lines(&found).len(), 1);
    }
}
