//! The audit trail of API access: every call to the gRPC API and the TAXII gateway is recorded
//! in `DATA_DIR/audit` (who, which method, how many values, keyed digests of them, the result),
//! hash-chained and rotated by size (`trail`; the record and chain rules are
//! `intelmesh_audit`).
//!
//! Services hand a finished call to [`AuditLog::record`], which queues it to one writer task
//! (a bounded queue: when it is full the call waits for room; a call dropped before it ends is
//! recorded by its guard without waiting, and one that finds no room then is counted in the
//! next record written, `audit/unrecorded`). The writer
//! digests the values and writes each batch to the OS at once, and fsyncs (then moves the
//! head) at least every second and at shutdown: an answer may leave before its record is
//! durable, by at most a second of records if the machine crashes. The answer of a call that
//! changes something waits until its record is written to the OS ([`Begun::changing`]), so a
//! killed process never answered a publication its trail does not show.

pub mod archive;
mod head_file;
pub mod trail;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use intelmesh_audit::{AuditKey, Caller};
use intelmesh_core::IndicatorType;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::identity::{identity_of, Identity};
use crate::state::NodeState;
use trail::{Trail, TrailError};
use writer::{write_loop, Writer};

/// Calls queued towards the writer before callers wait.
const QUEUE: usize = 4096;
/// Calls written in one batch at most.
const BATCH: usize = 512;
/// Longest time a written record waits for its fsync.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Smallest `max_file_bytes` a config may give.
pub const MIN_FILE_BYTES: u64 = 1024;

/// `[audit]` in the node config. On by default: a police unit must be able to show who saw
/// what.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub enabled: bool,
    /// A trail file is closed and the next begun once it reaches this size.
    pub max_file_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            enabled: true,
            max_file_bytes: 64 << 20,
        }
    }
}

/// The trail's directory for a data directory.
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("audit")
}

/// A value a call named, as the writer digests it.
#[derive(Debug)]
pub enum Value {
    /// Its raw text and, when the call said so, its type: the writer puts it in canonical
    /// form.
    Raw(Option<IndicatorType>, String),
    /// The canonical form the call itself worked out (a lookup's answers, TAXII's published
    /// indicators): digested as it is, not normalized a second time (at 400k lookup values/s
    /// the second normalization took a tenth of the node's CPU).
    Canonical(String),
    /// Its digest under the trail's key ([`AuditLog::key`]), made by the call where its
    /// canonical form was still in the cache of the core that made it: handed to the writer,
    /// each form was a cache miss there, a third of a digest's time at 10M lookups.
    Digested(intelmesh_audit::ValueDigest),
}

/// A value given with its protobuf type (Get, Submit, ReportSighting); `Unspecified` is
/// detected, as the node does.
pub fn typed(ty: i32, value: &str) -> Value {
    Value::Raw(IndicatorType::from_proto(ty), value.to_string())
}

/// A value a lookup answered, `input`, in the canonical form its answer names (the raw text
/// of a value with none), digested here under `key` when there is one.
pub fn named(
    key: Option<&AuditKey>,
    input: &str,
    result: intelmesh_proto::v1::LookupResult,
) -> Value {
    match (result.indicator, key) {
        (Some(i), Some(key)) => Value::Digested(key.value_digest(&i.value)),
        (Some(i), None) => Value::Canonical(i.value),
        (None, _) => raw(input),
    }
}

/// A value given without a type and not answered (Lookup).
pub fn raw(value: &str) -> Value {
    Value::Raw(None, value.to_owned())
}

/// A call as a service hands it over; the writer digests its values.
#[derive(Debug)]
pub struct Pending {
    pub time_ms: i64,
    pub caller: Caller,
    pub method: String,
    pub values: Vec<Value>,
    pub code: u32,
    pub result: String,
}

pub(crate) enum Msg {
    /// A call, and whom to tell once its record is written (to the OS: a killed process
    /// loses it no more).
    Call(Pending, Option<oneshot::Sender<()>>),
    Close(oneshot::Sender<()>),
}

/// The handle services record calls through; cheap to clone. A disabled one records nothing.
#[derive(Clone, Default)]
pub struct AuditLog {
    tx: Option<mpsc::Sender<Msg>>,
    /// The trail's key, for calls that digest their values themselves; `None` when disabled.
    key: Option<Arc<AuditKey>>,
    anonymous: Arc<AnonymousBudget>,
    /// Set while the last write of the trail failed (a full disk): calls that change
    /// something are refused until one succeeds ([`Begun::refusal`]).
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// Records of dropped calls that found the queue full: the writer counts them in its
    /// next `audit/unrecorded` record.
    unqueued: Arc<std::sync::atomic::AtomicU64>,
}

/// Room for one record in the queue, taken before a call is marked ended: a call dropped
/// while it waits for room is then still recorded by its guard, and once it has room its
/// record is queued whatever happens to the call.
pub(crate) struct Room<'a>(Option<mpsc::Permit<'a, Msg>>);

impl Room<'_> {
    /// Queues `call`; when `written`, waits until it is written to the OS.
    pub(crate) async fn record(self, call: Pending, written: bool) {
        let Some(permit) = self.0 else { return };
        if written {
            let (done, wait) = oneshot::channel();
            permit.send(Msg::Call(call, Some(done)));
            let _ = wait.await;
        } else {
            permit.send(Msg::Call(call, None));
        }
    }
}

/// Refusals of callers who proved no identity (no certificate, no valid password) recorded
/// per minute from one source (an IPv4 address, an IPv6 /64), and from all: anyone who
/// reaches the gateway's port can send them, and the trail is kept, so unbounded they would
/// fill the disk, and one source's junk must not use up what records another's. The rest are
/// counted (`intelmesh_audit_refusals_unrecorded_total`); every request is counted by status
/// in `intelmesh_taxii_requests_total` as well.
pub const ANONYMOUS_REFUSALS_PER_SOURCE: u32 = 30;
pub const ANONYMOUS_REFUSALS_PER_MINUTE: u32 = 600;
/// Sources counted in one minute; refusals from further ones that minute are not recorded.
const ANONYMOUS_SOURCES: usize = 1024;

#[derive(Default)]
struct AnonymousBudget(std::sync::Mutex<AnonymousMinute>);

#[derive(Default)]
struct AnonymousMinute {
    minute: i64,
    total: u32,
    by_source: std::collections::HashMap<crate::conn_slots::Source, u32>,
}

impl AuditLog {
    /// Opens (or creates) the trail for this node and starts its writer task.
    pub async fn open(cfg: &AuditConfig, data_dir: &Path) -> Result<AuditLog, TrailError> {
        if !cfg.enabled {
            tracing::warn!(
                "the audit trail is off ([audit] enabled = false): API calls are not recorded"
            );
            return Ok(AuditLog::default());
        }
        let (dir, max) = (dir_of(data_dir), cfg.max_file_bytes);
        let trail = tokio::task::spawn_blocking(move || Trail::open(&dir, max))
            .await
            .map_err(|e| TrailError::Bad {
                path: dir_of(data_dir),
                why: e.to_string(),
            })??;
        let (tx, rx) = mpsc::channel(QUEUE);
        let failing = Arc::<std::sync::atomic::AtomicBool>::default();
        let unqueued = Arc::<std::sync::atomic::AtomicU64>::default();
        let key = Arc::new(trail.key().clone());
        let writer = Writer {
            failing: Arc::clone(&failing),
            unqueued: Arc::clone(&unqueued),
            dir: dir_of(data_dir),
            max,
            key: Arc::clone(&key),
        };
        tokio::spawn(write_loop(trail, rx, writer));
        Ok(AuditLog {
            tx: Some(tx),
            key: Some(key),
            anonymous: Arc::default(),
            failing,
            unqueued,
        })
    }

    /// The trail's key, for a call that digests the values it names itself
    /// ([`Value::Digested`]); `None` when the trail is off.
    pub fn key(&self) -> Option<&Arc<AuditKey>> {
        self.key.as_ref()
    }

    /// Whether a refusal of a caller who proved no identity, from `source` at `now_ms`, is
    /// still within this minute's budgets (its source's and everyone's).
    pub(crate) fn takes_anonymous_refusal(
        &self,
        source: crate::conn_slots::Source,
        now_ms: i64,
    ) -> bool {
        let minute = now_ms.div_euclid(60_000);
        let mut b = self.anonymous.0.lock().unwrap_or_else(|p| p.into_inner());
        if b.minute != minute {
            *b = AnonymousMinute {
                minute,
                ..AnonymousMinute::default()
            };
        }
        if b.total >= ANONYMOUS_REFUSALS_PER_MINUTE
            || (b.by_source.len() >= ANONYMOUS_SOURCES && !b.by_source.contains_key(&source))
        {
            return false;
        }
        let n = b.by_source.entry(source).or_insert(0);
        if *n >= ANONYMOUS_REFUSALS_PER_SOURCE {
            return false;
        }
        *n += 1;
        b.total += 1;
        true
    }

    /// Queues a finished call; waits while the queue is full.
    pub async fn record(&self, call: Pending) {
        self.room().await.record(call, false).await;
    }

    /// Queues a call that changed something (a publication, a roster proposal) and waits until
    /// its record is written: its answer must not leave before, or a node killed meanwhile
    /// would have done what its trail does not show. Written is enough (a killed process's
    /// writes stay in the OS); the sync follows within [`SYNC_EVERY`].
    pub async fn record_written(&self, call: Pending) {
        self.room().await.record(call, true).await;
    }

    /// Whether the last write of the trail failed.
    pub fn failing(&self) -> bool {
        self.failing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Writes and syncs everything queued, then stops the writer (at node shutdown).
    pub async fn close(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Msg::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Begins the record of the call `request` makes to `method` naming `values`: the caller
    /// is read now, the outcome given to [`Begun::end`].
    pub fn begin<T>(
        &self,
        request: &tonic::Request<T>,
        method: &'static str,
        values: Vec<Value>,
    ) -> Begun<'_> {
        Begun {
            log: self,
            time_ms: intelmesh_core::now_unix_ms(),
            caller: grpc_caller(request),
            method,
            values,
            changes: false,
            about: String::new(),
            ended: false,
            raw_if_dropped: None,
        }
    }

    /// Queues `call` without waiting (from a `Drop`, which cannot): a full queue loses it,
    /// loudly.
    pub(crate) fn queue_now(&self, call: Pending) {
        let Some(tx) = &self.tx else { return };
        let method = call.method.clone();
        if tx.try_send(Msg::Call(call, None)).is_err() {
            (self.unqueued).fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            tracing::error!(%method, "audit trail queue full or closed: a cancelled call is not recorded (counted in the next record written)");
        }
    }

    /// Room for one record ([`Room`]); none when the trail is off or closed.
    pub(crate) async fn room(&self) -> Room<'_> {
        let Some(tx) = &self.tx else {
            return Room(None);
        };
        let permit = tx.reserve().await;
        if permit.is_err() {
            tracing::error!("audit trail closed: this call is not recorded");
        }
        Room(permit.ok())
    }
}

/// A gRPC call being answered; [`Begun::end`] records it with its outcome.
pub struct Begun<'a> {
    log: &'a AuditLog,
    /// When the call came in.
    time_ms: i64,
    caller: Caller,
    method: &'static str,
    values: Vec<Value>,
    /// Whether the call may change something: its answer waits for its record.
    changes: bool,
    /// What the call was about (an org, a proposal), recorded with its result.
    about: String,
    /// Handed to the trail by [`Begun::end_described`]; else its `Drop` records it.
    ended: bool,
    /// Values given without a type, named as given if the call is dropped before it names
    /// any: shared with the work that answers them, copied only then.
    raw_if_dropped: Option<std::sync::Arc<Vec<String>>>,
}

/// The result recorded for a call whose caller went away before its answer.
pub const CANCELLED_RESULT: &str =
    "CANCELLED: the caller went away before the answer; what it asked may have been done";

impl Drop for Begun<'_> {
    /// A call dropped before it ended: its caller reset the stream or its deadline passed.
    /// What it started (a publication runs to its end by itself) may still be done, so it is
    /// recorded with what it named and an outcome not known.
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut values = std::mem::take(&mut self.values);
        if let Some(raw) = self.raw_if_dropped.take() {
            values.extend(raw.iter().map(|v| self::raw(v)));
        }
        self.log.queue_now(Pending {
            time_ms: self.time_ms,
            caller: std::mem::take(&mut self.caller),
            method: self.method.to_string(),
            values,
            code: tonic::Code::Cancelled as u32,
            result: CANCELLED_RESULT.into(),
        });
    }
}

impl Begun<'_> {
    /// Why a call that publishes must not go ahead: the trail cannot be written now (a full
    /// disk), and no publication is made without its record. (Asked by Submit and
    /// ReportSighting; Admin calls, rare and an operator's, go on and are logged.)
    pub fn refusal(&self) -> Option<tonic::Status> {
        (self.changes && self.log.failing()).then(|| {
            tonic::Status::unavailable(
                "the audit trail cannot be written (is its disk full? see the node's log): \
                 no change is made until it can",
            )
        })
    }

    /// Marks a call that may change something ([`AuditLog::record_written`]).
    pub fn changing(mut self) -> Self {
        self.changes = true;
        self
    }

    /// The values to record in place of those the call was begun with (a lookup's, once
    /// answered, in canonical form).
    pub fn naming(mut self, values: Vec<Value>) -> Self {
        self.values = values;
        self.raw_if_dropped = None;
        self
    }

    /// Names `values` (given without a type) if the call is dropped before it names any.
    pub fn raw_if_dropped(mut self, values: std::sync::Arc<Vec<String>>) -> Self {
        self.raw_if_dropped = Some(values);
        self
    }

    /// What the call was about, recorded with its result whatever it is (its text is
    /// bounded and kept to one line: a caller chose part of it).
    pub fn about(mut self, about: &str) -> Self {
        self.about = one_line(about);
        self
    }

    /// Records the call with the outcome the service gives (queued before the answer leaves)
    /// and returns that outcome.
    pub async fn end<R>(self, outcome: Result<R, tonic::Status>) -> Result<R, tonic::Status> {
        self.end_described(outcome, |_| String::new()).await
    }

    /// [`Begun::end`], with what came of a successful call (`describe` of its answer: the
    /// version a proposal makes, the certificate a bundle carries) in its result.
    pub async fn end_described<R>(
        mut self,
        outcome: Result<R, tonic::Status>,
        describe: impl FnOnce(&R) -> String,
    ) -> Result<R, tonic::Status> {
        // Room first: dropped while waiting for it, the call is still recorded by `Drop`.
        let room = self.log.room().await;
        self.ended = true;
        let (code, status, came) = match &outcome {
            Ok(answer) => (0, "OK".to_string(), one_line(&describe(answer))),
            Err(s) => (s.code() as u32, format!("{:?}", s.code()), String::new()),
        };
        let result = [status, self.about.clone(), came]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        let call = Pending {
            time_ms: self.time_ms,
            caller: std::mem::take(&mut self.caller),
            method: self.method.to_string(),
            values: std::mem::take(&mut self.values),
            code,
            result,
        };
        room.record(call, self.changes).await;
        outcome
    }
}

/// Longest text a record's result takes from what a call was about.
const MAX_ABOUT: usize = 200;

/// `text` as one line of at most [`MAX_ABOUT`] characters, control characters replaced.
fn one_line(text: &str) -> String {
    text.chars()
        .take(MAX_ABOUT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The caller as its certificate names it; role `none` when it names nobody (the call is
/// refused, and recorded so).
pub fn caller_of_identity(id: Option<Identity>) -> Caller {
    match id {
        Some(Identity::Node(org)) => Caller {
            org: org.to_string(),
            name: String::new(),
            role: "node".into(),
        },
        Some(Identity::Service { org, name }) => Caller {
            org: org.to_string(),
            name,
            role: "service".into(),
        },
        Some(Identity::Admin { org, name }) => Caller {
            org: org.to_string(),
            name,
            role: "admin".into(),
        },
        None => Caller {
            role: "none".into(),
            ..Caller::default()
        },
    }
}

fn grpc_caller<T>(request: &tonic::Request<T>) -> Caller {
    caller_of_identity(crate::identity::caller(request).ok())
}

/// The caller named by a DER certificate, if any.
pub fn caller_of_certificate(der: &[u8]) -> Caller {
    caller_of_identity(identity_of(der).ok())
}

static DISABLED: OnceLock<AuditLog> = OnceLock::new();

impl NodeState {
    /// The audit log API services record through (one that records nothing until `start`
    /// sets it).
    pub fn audit(&self) -> &AuditLog {
        self.audit
            .get()
            .unwrap_or_else(|| DISABLED.get_or_init(AuditLog::default))
    }

    pub fn set_audit(&self, log: AuditLog) {
        let _ = self.audit.set(log);
    }
}

/// What an HTTP handler tells the audit about its request (the TAXII gateway's layer reads
/// it once the handler answered).
#[derive(Debug, Default)]
pub struct Note {
    pub(crate) caller: Option<intelmesh_audit::Caller>,
    /// What a POST asks to publish, noted before it publishes.
    pub(crate) values: Vec<Value>,
    /// Set once those are published: the answer then waits for the record.
    pub(crate) published: bool,
}

/// One request's note, shared between the layer and the handler (through
/// [`crate::https::Connection`]).
pub type Noted = std::sync::Arc<std::sync::Mutex<Note>>;

pub(crate) fn lock_note(n: &Noted) -> std::sync::MutexGuard<'_, Note> {
    n.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod anonymous_tests;

#[cfg(test)]
mod written_tests;
