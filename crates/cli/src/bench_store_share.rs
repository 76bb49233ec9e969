//! What a bench reads from its node's `/metrics`: the share of the node's time its store spent
//! writing, by phase (`intelmesh_store_write_seconds_total{phase}` before and after a stretch
//! of work; writes run one at a time, so a share near 1 says they limited that stretch), and
//! plain gauges (how much of the index the lookup table holds when lookups are timed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERIES: &str = "intelmesh_store_write_seconds_total{phase=\"";

/// The node's write seconds by phase at one moment.
pub(crate) struct WriteClock {
    addr: SocketAddr,
    at: Instant,
    seconds: BTreeMap<String, f64>,
}

/// Each phase's seconds over the wall time of a stretch; `busy` is their sum.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WriteShare {
    pub(crate) busy: f64,
    pub(crate) phases: BTreeMap<String, f64>,
}

impl WriteClock {
    pub(crate) async fn start(addr: SocketAddr) -> anyhow::Result<WriteClock> {
        Ok(WriteClock {
            addr,
            at: Instant::now(),
            seconds: scrape(addr).await?,
        })
    }

    /// The shares since this clock started.
    pub(crate) async fn share(&self) -> anyhow::Result<WriteShare> {
        let now = scrape(self.addr).await?;
        Ok(share_between(
            &self.seconds,
            &now,
            self.at.elapsed().as_secs_f64(),
        ))
    }
}

impl WriteShare {
    pub(crate) fn json(&self) -> serde_json::Value {
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        let mut v = serde_json::Map::new();
        v.insert("busy".into(), round(self.busy).into());
        for (phase, share) in &self.phases {
            v.insert(phase.clone(), round(*share).into());
        }
        v.into()
    }
}

impl std::fmt::Display for WriteShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut phases: Vec<_> = self.phases.iter().collect();
        phases.sort_by(|a, b| b.1.total_cmp(a.1));
        let parts: Vec<String> = phases
            .iter()
            .map(|(p, s)| format!("{p} {:.0}%", *s * 100.0))
            .collect();
        write!(f, "{:.0}% ({})", self.busy * 100.0, parts.join(", "))
    }
}

fn share_between(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    wall_secs: f64,
) -> WriteShare {
    let phases: BTreeMap<String, f64> = after
        .iter()
        .map(|(phase, s)| {
            let spent = s - before.get(phase).copied().unwrap_or(0.0);
            (phase.clone(), spent / wall_secs.max(f64::MIN_POSITIVE))
        })
        .collect();
    WriteShare {
        busy: phases.values().sum(),
        phases,
    }
}

/// The write seconds by phase in an OpenMetrics text.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(SERIES)?;
            let (phase, value) = rest.split_once("\"} ")?;
            let value = value.split_whitespace().next()?.parse().ok()?;
            Some((phase.to_string(), value))
        })
        .collect()
}

/// The value of the unlabelled series `name` in an OpenMetrics text.
pub(crate) fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The node's whole `/metrics` answer (headers included: no series line starts like one).
pub(crate) async fn metrics_text(addr: SocketAddr) -> anyhow::Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the node's metrics at {addr}"))?;
    // Named by its address: the listener answers no other name it was not given.
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await?;
    Ok(answer)
}

async fn scrape(addr: SocketAddr) -> anyhow::Result<BTreeMap<String, f64>> {
    let seconds = parse(&metrics_text(addr).await?);
    anyhow::ensure!(
        !seconds.is_empty(),
        "the node's metrics at {addr} have no store write seconds"
    );
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_the_phases_seconds_over_the_wall_time() {
        let text = "# TYPE intelmesh_store_write_seconds counter\n\
            intelmesh_store_write_seconds_total{phase=\"commit\"} 3.5\n\
            intelmesh_store_write_seconds_total{phase=\"placing\"} 1.0\n\
            intelmesh_apply_duration_seconds_count 7\n";
        let before = parse(text);
        assert_eq!(before.len(), 2);
        assert_eq!(before["commit"], 3.5);
        let after = parse(
            "intelmesh_store_write_seconds_total{phase=\"commit\"} 4.5 1700000000.0\n\
             intelmesh_store_write_seconds_total{phase=\"placing\"} 1.5\n",
        );
        let share = share_between(&before, &after, 2.0);
        assert_eq!(share.phases["commit"], 0.5);
        assert_eq!(share.phases["placing"], 0.25);
        assert_eq!(share.busy, 0.75);
        assert_eq!(share.to_string(), "75% (commit 50%, placing 25%)");
        assert_eq!(share.json()["busy"], 0.75);
    }

    #[test]
    fn other_series_and_malformed_lines_are_not_read() {
        let text = "intelmesh_store_write_seconds_total{phase=\"commit\"} many\n\
            intelmesh_store_write_seconds_total{phase=\"placing\"\n\
            intelmesh_store_writes_total{phase=\"commit\"} 1\n";
        assert!(parse(text).is_empty());
    }

    #[test]
    fn a_gauge_is_read_by_its_exact_name() {
        let text = "HTTP/1.0 200 OK\r\n\r\n\
            # HELP intelmesh_indicators Indicators in the index\n\
            intelmesh_indicators_total 9\n\
            intelmesh_indicators 2000000\n\
            intelmesh_lookup_table_indicators 1750000\n\
            intelmesh_broken many\n";
        assert_eq!(gauge(text, "intelmesh_indicators"), Some(2_000_000.0));
        assert_eq!(
            gauge(text, "intelmesh_lookup_table_indicators"),
            Some(1_750_000.0)
        );
        assert_eq!(gauge(text, "intelmesh_broken"), None);
        assert_eq!(gauge(text, "intelmesh_absent"), None);
    }
}
