//! `bench taxii`: add and paged-read throughput through a node's TAXII 2.1 gateway over TLS.
//!
//! One node runs in this process (provisioned in a temporary directory, gateway on); the bench
//! is an HTTP/2 client over TLS with the node's service certificate. It POSTs N STIX
//! indicators in envelopes written before the clock starts (each acknowledged once its
//! entries are durable; `--in-flight` of them at once on the one connection), then pages through
//! the whole collection with `limit` and `next`, timing every page, so the figures show whether
//! a page costs the same at the end of a large collection as at its start. The reads start once
//! the process is idle again after the adds.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use h2::client::SendRequest;
use intelmesh_interop::taxii::TAXII_MEDIA_TYPE;
use intelmesh_node::provision::{free_loopback_addr, loopback_specs, provision};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::net::{bench_dir, org, percentile, round2, runtime};
use super::sys::{cpu_seconds, settle};

pub struct TaxiiOpts {
    pub objects: usize,
    pub envelope: usize,
    pub in_flight: usize,
    pub page: usize,
    pub dir: Option<std::path::PathBuf>,
    pub json: bool,
}

/// A TLS HTTP/2 connection to the gateway; clones share it, each call its own stream.
#[derive(Clone)]
struct Client {
    send: SendRequest<Bytes>,
    authority: String,
}

impl Client {
    async fn connect(
        addr: std::net::SocketAddr,
        org: &intelmesh_core::OrgId,
        files: (&Path, &Path, &Path),
    ) -> anyhow::Result<Client> {
        let (ca, cert, key) = files;
        let tls = intelmesh_node::tls::client_for(org, ca, cert, key)?;
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream = TlsConnector::from(tls.config.clone())
            .connect(tls.server_name.clone(), tcp)
            .await
            .context("TLS to the gateway")?;
        let (send, connection) = h2::client::handshake(stream).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Client {
            send,
            authority: addr.to_string(),
        })
    }

    /// One request; the status and the whole body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority))
            .header("accept", TAXII_MEDIA_TYPE);
        if body.is_some() {
            request = request.header("content-type", TAXII_MEDIA_TYPE);
        }
        let request = request.body(())?;
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(request, body.is_none())?;
        if let Some(body) = body {
            stream.send_data(Bytes::from(body), true)?;
        }
        let response = response.await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            out.extend_from_slice(&chunk);
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        Ok((status, out))
    }
}

/// What the bench reads of a status resource.
#[derive(serde::Deserialize)]
struct Counted {
    success_count: usize,
}

/// The `n`-th indicator object: a mix of types, each value unique.
fn indicator(n: usize) -> Value {
    let pattern = match n % 4 {
        0 => format!(
            "[ipv4-addr:value = '{}']",
            std::net::Ipv4Addr::from(0x0B00_0000 + n as u32)
        ),
        1 => format!("[domain-name:value = 'c2-{n}.bad-example.com']"),
        2 => format!(
            "[file:hashes.'SHA-256' = '{}']",
            hex::encode(intelmesh_core::entry::sha256(&n.to_be_bytes()))
        ),
        _ => format!("[url:value = 'http://drop-{n}.bad-example.net/gate.php']"),
    };
    json!({
        "type": "indicator", "spec_version": "2.1",
        "id": format!("indicator--{}", intelmesh_core::object_id::format_uuid(&intelmesh_core::object_id::name_uuid(&["bench", &n.to_string()]))),
        "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
        "pattern": pattern, "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z",
        "labels": ["botnet"], "confidence": 80,
        "object_marking_refs": ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"],
    })
}

pub fn taxii(o: TaxiiOpts) -> anyhow::Result<()> {
    anyhow::ensure!(
        o.objects > 0 && o.envelope > 0 && o.page > 0 && o.in_flight > 0,
        "--objects, --envelope, --in-flight and --page must be at least 1"
    );
    runtime()?.block_on(run(o))
}

async fn run(o: TaxiiOpts) -> anyhow::Result<()> {
    let tmp = bench_dir(o.dir.as_deref())?;
    let mut specs = loopback_specs("SG-IGCI", &[])?;
    specs[0].taxii = Some(free_loopback_addr()?);
    let fed =
        tokio::task::block_in_place(|| provision(tmp.path(), &specs, &[], &Default::default()))?;
    let me = org("SG-IGCI")?;
    let p = &fed.nodes[&me];
    let mut cfg = p.config.clone();
    if let Some(t) = &mut cfg.taxii {
        t.max_page_objects = t.max_page_objects.max(o.page);
        t.max_content_length = t.max_content_length.max(o.envelope * 1024);
    }
    let node = intelmesh_node::start(cfg).await?;
    let addr = node.taxii_addr.context("the gateway listens")?;
    let client = Client::connect(addr, &me, (&p.api_ca, &p.client_cert, &p.client_key)).await?;
    let (status, body) = client.call("GET", "/intelmesh/collections/", None).await?;
    anyhow::ensure!(status == 200, "collections: HTTP {status}");
    let collections: Value = serde_json::from_slice(&body)?;
    let id = collections["collections"][0]["id"]
        .as_str()
        .context("a collection")?
        .to_string();
    let objects_path = format!("/intelmesh/collections/{id}/objects/");

    // The envelopes are written before the clock starts: the figure is the gateway's, not
    // this process's JSON writer's (a feed has its objects ready, and this client shares the
    // node's cores).
    let mut envelopes = (0..o.objects)
        .step_by(o.envelope)
        .map(|first| {
            let n = o.envelope.min(o.objects - first);
            let objects: Vec<Value> = (first..first + n).map(indicator).collect();
            (n, json!({ "objects": objects }).to_string().into_bytes())
        })
        .collect::<Vec<_>>()
        .into_iter();
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let mut posts = tokio::task::JoinSet::new();
    let mut sent = 0;
    while sent < o.objects || !posts.is_empty() {
        if sent < o.objects && posts.len() < o.in_flight {
            let (n, body) = envelopes.next().context("an envelope per POST")?;
            let (client, path) = (client.clone(), objects_path.clone());
            posts.spawn(async move {
                let (status, body) = client.call("POST", &path, Some(body)).await?;
                // Only the count is read, as a feed that posts and checks does: the status
                // names every object, and this client shares the node's cores.
                let answer = serde_json::from_slice::<Counted>(&body).ok();
                anyhow::ensure!(
                    status == 202 && answer.is_some_and(|a| a.success_count == n),
                    "POST: HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                Ok(())
            });
            sent += n;
            continue;
        }
        if let Some(done) = posts.join_next().await {
            done??;
        }
    }
    let add_secs = started.elapsed().as_secs_f64();
    // The node's and this client's CPU (one process): the cores the adds kept busy, which
    // says whether a rate is bound by the work or by waiting.
    let add_cpu_secs = cpu_seconds() - cpu_before;
    let (cpu_us_per_object, add_cores) = (
        add_cpu_secs * 1e6 / o.objects as f64,
        add_cpu_secs / add_secs,
    );
    // The node runs in this process: the reads are timed once the adds' background work (the
    // store's memtable flushes and compactions) is done, so the read rate is that of a
    // collection of N objects, not of one still being compacted.
    let idle_after_add = settle(std::process::id(), std::time::Duration::from_secs(120)).await?;

    let started = Instant::now();
    let (mut read, mut next, mut page_ms) = (0usize, None::<String>, Vec::new());
    loop {
        let query = match &next {
            Some(t) => format!("?limit={}&next={t}", o.page),
            None => format!("?limit={}", o.page),
        };
        let t = Instant::now();
        let (status, body) = client
            .call("GET", &format!("{objects_path}{query}"), None)
            .await?;
        anyhow::ensure!(status == 200, "GET objects: HTTP {status}");
        let page: Value = serde_json::from_slice(&body)?;
        page_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        read += page["objects"].as_array().map_or(0, Vec::len);
        match page["next"].as_str() {
            Some(t) if page["more"] == true => next = Some(t.to_string()),
            _ => break,
        }
    }
    let read_secs = started.elapsed().as_secs_f64();
    node.shutdown().await;
    anyhow::ensure!(
        read == o.objects,
        "read {read} objects back, {} were added",
        o.objects
    );

    let tenth = (page_ms.len() / 10).max(1);
    let first: f64 = page_ms[..tenth].iter().sum::<f64>() / tenth as f64;
    let last: f64 = page_ms[page_ms.len() - tenth..].iter().sum::<f64>() / tenth as f64;
    let mut sorted = page_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let add_rate = o.objects as f64 / add_secs;
    let read_rate = read as f64 / read_secs;
    if !o.json {
        println!("added {} objects in envelopes of {}, {} in flight, in {add_secs:.2}s: {add_rate:.0} objects/s (acknowledged durable)", o.objects, o.envelope, o.in_flight);
        println!(
            "the adds used {add_cpu_secs:.2}s of CPU ({cpu_us_per_object:.1} us per object, {add_cores:.2} cores)"
        );
        println!(
            "the node went idle {:.1}s after the adds",
            idle_after_add.as_secs_f64()
        );
        println!(
            "read them back in {} pages of {} in {read_secs:.2}s: {read_rate:.0} objects/s",
            page_ms.len(),
            o.page
        );
        println!("page time: first tenth {first:.1} ms, last tenth {last:.1} ms, p50 {:.1} ms, p99 {:.1} ms", percentile(&sorted, 0.5), percentile(&sorted, 0.99));
    }
    println!(
        "{}",
        json!({
            "bench": "taxii", "objects": o.objects, "envelope": o.envelope, "in_flight": o.in_flight, "page": o.page,
            "add_rate": round2(add_rate), "read_rate": round2(read_rate),
            "add_cpu_us_per_object": round2(cpu_us_per_object), "add_cores": round2(add_cores),
            "pages": page_ms.len(), "idle_after_add_ms": idle_after_add.as_millis() as u64,
            "page_ms_first_tenth": round2(first), "page_ms_last_tenth": round2(last),
            "page_ms_p50": round2(percentile(&sorted, 0.5)), "page_ms_p99": round2(percentile(&sorted, 0.99)),
        })
    );
    drop(tmp);
    Ok(())
}
