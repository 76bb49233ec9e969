//! `intelmesh bench …`: throughput figures on this machine. Each prints a human summary and,
//! as its last line, one JSON object.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Subcommand;
use intelmesh_core::entry::sha256;
use intelmesh_proto::v1 as pb;

#[path = "bench_federation.rs"]
mod federation;
#[path = "bench_ingest.rs"]
mod ingest;
#[path = "bench_scale_load.rs"]
mod load;
#[path = "bench_scale_lookup.rs"]
mod lookup;
#[path = "bench_net.rs"]
mod net;
#[path = "bench_peer.rs"]
mod peer;
#[path = "bench_roster.rs"]
mod roster;
#[path = "bench_scale.rs"]
mod scale;
#[path = "bench_shapes.rs"]
mod shapes;
#[path = "bench_store_share.rs"]
mod store_share;
#[path = "bench_sys.rs"]
mod sys;
#[path = "bench_taxii.rs"]
mod taxii;

#[derive(Subcommand)]
pub enum Which {
    /// The TAXII 2.1 gateway: a node in this process; N STIX indicators POSTed in envelopes
    /// over TLS (each answered once durable), then the collection read back page by page,
    /// every page timed.
    Taxii {
        #[arg(long, default_value_t = 2_000)]
        objects: usize,
        /// Objects per POST.
        #[arg(long, default_value_t = 1_000)]
        envelope: usize,
        /// POSTs in flight at once on the one HTTP/2 connection (several feeds posting at
        /// once); 1 posts each envelope after the last was answered, as one client does.
        #[arg(long, default_value_t = 1)]
        in_flight: usize,
        /// `limit` of each read.
        #[arg(long, default_value_t = 1_000)]
        page: usize,
        /// Where to put the store (default: a temporary directory, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// A node's receiving path: a real node in this process, and this bench as its peer sending
    /// signed entries over a mutual-TLS `Federation.Sync` stream on 127.0.0.1 until the node's
    /// progress covers them all; plus two ceilings, verification alone (the node's function on
    /// all cores) and the store alone (the same entries pre-verified, same batches).
    Ingest {
        /// How many signed upserts to generate and send.
        #[arg(long, default_value_t = 200_000)]
        updates: usize,
        /// Most entries per EntryBatch frame (the node's `limits.max_batch_entries`; frames
        /// also stay under its message byte cap). One flush each.
        #[arg(long, default_value_t = intelmesh_node::config::Limits::default().max_batch_entries)]
        batch: usize,
        /// Where to put the stores (default: a temporary directory, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rounds of path and ceilings, alternating; the best of each is reported, so a burst
        /// of load from elsewhere on a shared machine does not skew the ratio.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Measure also the receiving path of RED entries sealed to the node and two other
        /// recipients (HPKE), beside the unrestricted figure, and the origin's signing rate
        /// with and without sealing.
        #[arg(long)]
        restricted: bool,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Propagation latency: a hub and N agencies in this process over mutual-TLS gRPC on
    /// 127.0.0.1; one agency gets `Indicators.Submit` calls at a steady rate; latency is from
    /// the call to the entry being durable at every other node.
    Propagate {
        /// N: agencies besides the hub, so N + 1 nodes (a star: every agency dials the hub).
        #[arg(long = "nodes", value_name = "N", default_value_t = 10)]
        agencies: usize,
        /// Submissions per second.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        rate: u64,
        /// How long to submit.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Submissions per Submit call (one call per tick).
        #[arg(long, default_value_t = 10)]
        batch: usize,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Catch-up: a node whose store holds `missing` entries from several origins, and an empty
    /// node that links to it; rate until their vectors match, and bytes received per byte of
    /// entries.
    Catchup {
        /// Entries the empty node lacks.
        #[arg(long, default_value_t = 1_000_000)]
        missing: usize,
        /// Origins those entries come from.
        #[arg(long, default_value_t = 16)]
        origins: usize,
        /// Most entries per EntryBatch frame (the nodes' `limits.max_batch_entries`).
        #[arg(long, default_value_t = intelmesh_node::config::Limits::default().max_batch_entries)]
        batch: usize,
        /// Where to put the stores (default: a temporary directory, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Suspension across the mesh: a hub and N agencies in this process in roster mode, the
    /// agencies enrolled by one roster version; the hub publishes a version suspending one, and
    /// the time from publication to each other node refusing it (following that version) is
    /// measured, and the hub's cut of its link.
    Roster {
        /// N: agencies besides the hub, so N + 1 nodes.
        #[arg(long, default_value_t = 190)]
        members: usize,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// A node holding N real-shaped indicators, as a child process (`intelmesh run`), filled
    /// through its own ingest path by this bench as its mutual-TLS peer; then its memory while
    /// serving bulk lookups, its disk per byte of entries, its ingest rate at full against at
    /// empty, and a SIGKILL and restart (time until its API answers and it federates again,
    /// peak memory of the new process).
    Scale {
        /// Distinct indicators to list (about 4.5% more entries: revocations, sightings and
        /// second origins' listings).
        #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(scale::MIN_INDICATORS..))]
        indicators: u64,
        /// Values to look up over the API, in calls of the most values one call may carry.
        #[arg(long, default_value_t = 1_000_000)]
        lookups: usize,
        /// Lookup calls in flight, each client on its own connection.
        #[arg(long, default_value_t = 8)]
        lookup_clients: usize,
        /// Where to put the federation and the node's data, kept afterwards (default: a
        /// temporary directory, removed at the end).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Hubs and M agencies, each a node process (`intelmesh run`), every agency submitting
    /// through its API at a steady rate; the time from the last submit to every node holding
    /// the same vector and state digest, and each process's memory.
    Federation {
        /// M: agencies besides the hubs.
        #[arg(long, default_value_t = 190)]
        members: usize,
        /// Hubs: each agency links to every hub, and the hubs to each other. Two by default,
        /// as a federation that must survive the loss of a hub runs.
        #[arg(long, default_value_t = 2)]
        hubs: usize,
        /// Submissions per second at each agency (fractions allowed: 0.5 is one every 2 s).
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// How long the agencies submit.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Taxii {
            objects,
            envelope,
            in_flight,
            page,
            dir,
            json,
        } => taxii::taxii(taxii::TaxiiOpts {
            objects,
            envelope,
            in_flight,
            page,
            dir,
            json,
        }),
        Which::Ingest {
            updates,
            batch,
            dir,
            rounds,
            restricted,
            json,
        } => ingest::ingest(ingest::IngestOpts {
            updates,
            batch,
            dir,
            rounds,
            restricted,
            json,
        }),
        Which::Propagate {
            agencies,
            rate,
            secs,
            batch,
            json,
        } => net::propagate(net::PropagateOpts {
            agencies,
            rate,
            secs,
            batch,
            json,
        }),
        Which::Catchup {
            missing,
            origins,
            batch,
            dir,
            json,
        } => net::catchup(net::CatchupOpts {
            missing,
            origins,
            batch,
            dir,
            json,
        }),
        Which::Roster { members, json } => roster::roster(roster::RosterOpts { members, json }),
        Which::Scale {
            indicators,
            lookups,
            lookup_clients,
            dir,
            json,
        } => scale::scale(scale::ScaleOpts {
            indicators,
            lookups,
            lookup_clients,
            dir,
            json,
        }),
        Which::Federation {
            members,
            hubs,
            rate,
            secs,
            json,
        } => federation::federation(federation::FederationOpts {
            members,
            hubs,
            rate,
            secs,
            json,
        }),
    }
}

/// A realistic upsert; `n` picks the type and makes the value unique.
pub(crate) fn sample_upsert(n: u64) -> pb::Payload {
    let (ty, value) = match n % 4 {
        0 => (
            pb::IndicatorType::Ipv4,
            Ipv4Addr::from(0x0B00_0000 + n as u32).to_string(),
        ),
        1 => (pb::IndicatorType::Domain, format!("c2-{n}.bad-example.com")),
        2 => (
            pb::IndicatorType::Sha256,
            hex::encode(sha256(&n.to_be_bytes())),
        ),
        _ => (
            pb::IndicatorType::Url,
            format!("http://drop-{n}.bad-example.net/gate.php"),
        ),
    };
    pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: ty as i32,
                value,
            }),
            confidence: 80,
            valid_from_unix_ms: 1_700_000_000_000,
            valid_until_unix_ms: Some(1_900_000_000_000),
            tags: vec!["botnet".into(), format!("campaign-{}", n % 97)],
            threat_types: vec!["c2".into()],
            description: "observed beaconing in incident response".into(),
            external_references: vec![],
        })),
        ..Default::default()
    }
}
