//! Publishing calls whose outcome the user can rely on: each request carries an idempotency key,
//! a call whose answer was lost is retried with the same key (the node signs nothing twice and
//! answers with what the first call published), and a call whose outcome stays unknown ends
//! in an [`OutcomeUnknown`] error that says so and how to finish it safely.

use std::time::Duration;

use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use rand::RngCore;
use tonic::transport::Channel;

use crate::conn::{self, rpc_error, Target};
use crate::failure::Failure;

/// Exit code of a publishing command whose outcome is unknown: it may have been published.
pub const EXIT_OUTCOME_UNKNOWN: u8 = 3;

/// Waits before each retry of a call whose outcome is unknown.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// A publication that may or may not have happened; the message says how to find out.
#[derive(Debug)]
pub struct OutcomeUnknown(pub String);

impl std::fmt::Display for OutcomeUnknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutcomeUnknown {}

/// A fresh idempotency key: 128 random bits in hex.
pub fn new_key() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The key of the `n`-th request (from 0) of one invocation: the key itself, then `KEY/1`, ...
/// The same input splits into the same requests, so a re-run with the key repeats each one.
pub fn request_key(key: &str, n: usize) -> String {
    if n == 0 {
        key.to_string()
    } else {
        format!("{key}/{n}")
    }
}

/// Longest `--idempotency-key`: the node takes 256 bytes, and the requests after the first of a
/// run add `/N`.
const MAX_KEY_BYTES: usize = 200;

/// Checks a `--idempotency-key` argument.
pub fn parse_key(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > MAX_KEY_BYTES {
        return Err(format!(
            "an idempotency key is 1 to {MAX_KEY_BYTES} bytes; this one is {}",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// How a call ended that did not succeed.
#[derive(Debug)]
pub enum Failed {
    /// The node did not carry it out: its answer, or a failure before the call reached it.
    Known(tonic::Status),
    /// It may have been carried out: the first failure that left it open.
    Unknown(tonic::Status),
}

/// Makes `call` until its outcome is known: retries (after [`RETRY_DELAYS`]) only a call whose
/// outcome is unknown, which is safe because every attempt sends the same idempotency key.
pub async fn until_known<T, F, Fut>(call: F) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    retrying(&RETRY_DELAYS, call).await
}

async fn retrying<T, F, Fut>(delays: &[Duration], mut call: F) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut open: Option<tonic::Status> = None;
    for &delay in std::iter::once(&Duration::ZERO).chain(delays) {
        tokio::time::sleep(delay).await;
        let status = match call().await {
            Ok(answer) => return Ok(answer),
            Err(status) => status,
        };
        let failure = Failure::of_call(&status);
        if Failure::outcome_unknown(failure.as_ref(), status.code()) {
            open.get_or_insert(status);
            continue;
        }
        match (&open, failure) {
            // The node answered this repeat itself: its answer is the request's outcome.
            (_, None) => return Err(Failed::Known(status)),
            // It refuses this client's certificate, so no attempt ever reached the API.
            (_, Some(Failure::Refused { .. })) => return Err(Failed::Known(status)),
            (None, Some(_)) => return Err(Failed::Known(status)),
            // Unreachable after an attempt whose outcome is open (restarting?): try again.
            (Some(_), Some(_)) => {}
        }
    }
    Err(open.map_or_else(
        || Failed::Known(tonic::Status::unknown("no attempt was made")),
        Failed::Unknown,
    ))
}

/// The message of an unknown outcome: what happened, and how to finish it safely.
/// `rerun` says how to repeat the call with the same keys ("re-run with --idempotency-key K").
pub fn unknown_message(
    target: &Target,
    status: &tonic::Status,
    rerun: &str,
    check: &str,
) -> String {
    let org = &target.org;
    let what = match Failure::of_call(status) {
        Some(Failure::TimedOut { .. }) => format!(
            "no answer from {org} within {} s after the request was sent",
            target.timeout.as_secs()
        ),
        Some(_) => format!(
            "the connection to {org} ({}) broke after the request was sent",
            target.addr
        ),
        None => format!(
            "{org} could not tell whether it carried the request out ({:?}: {})",
            status.code(),
            status.message()
        ),
    };
    format!(
        "outcome unknown: {what}; it may have been published. {}{} to finish it safely (nothing is signed twice), or check with `intelmesh get {check}` (same connection options)",
        rerun.get(..1).unwrap_or_default().to_uppercase(),
        rerun.get(1..).unwrap_or_default()
    )
}

/// The error of a `call` that did not succeed: the node's answer, or an [`OutcomeUnknown`] that
/// says how to finish it (`rerun`, see [`unknown_message`]; `check` names a value to `get`).
pub fn failed_error(
    target: &Target,
    call: &str,
    failed: Failed,
    rerun: &str,
    check: &str,
) -> anyhow::Error {
    match failed {
        Failed::Known(status) => rpc_error(target, call, status),
        Failed::Unknown(status) => anyhow::Error::new(OutcomeUnknown(unknown_message(
            target, &status, rerun, check,
        ))),
    }
}

/// Where and how a run's `Submit` requests go: at most `chunk` submissions each, the `n`-th
/// keyed [`request_key`]`(key, n)`; `rerun` says how to repeat the run with the same keys
/// (e.g. "re-run with --idempotency-key K").
pub struct Requests<'a> {
    pub target: &'a Target,
    pub client: &'a IndicatorsClient<Channel>,
    pub chunk: usize,
    pub key: &'a str,
    pub rerun: &'a str,
    pub overrides: Overrides,
}

/// What a publishing run asks the node to let through that it would refuse.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// Values on the node's warninglists.
    pub force: bool,
    /// Values known here only under restricted distributions, shared wider than their readers.
    pub share_wider: bool,
}

/// Sends `submissions` as [`Requests`] says, each request retried until its outcome is known.
/// `on_answer` sees each request's submissions and answer as it comes (for progress);
/// `check(i)` names submission `i` for the "outcome unknown" message. Used by `submit` and
/// `import`.
pub async fn submit_in_requests(
    r: &Requests<'_>,
    submissions: &[pb::Submission],
    check: &dyn Fn(usize) -> String,
    mut on_answer: impl FnMut(&[pb::Submission], &pb::SubmitResponse),
) -> anyhow::Result<Vec<pb::SubmitResponse>> {
    let Requests {
        target,
        client,
        chunk,
        key,
        rerun,
        overrides: Overrides { force, share_wider },
    } = *r;
    let chunk = chunk.max(1);
    let mut answers = Vec::new();
    for (n, part) in submissions.chunks(chunk).enumerate() {
        let request = pb::SubmitRequest {
            submissions: part.to_vec(),
            idempotency_key: request_key(key, n),
            force,
            share_wider,
        };
        let answer = until_known(|| {
            let mut client = client.clone();
            let request = conn::request(target, request.clone());
            async move {
                client
                    .submit(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await;
        let done = n * chunk;
        let response = answer.map_err(|failed| match failed {
            Failed::Known(status) if done == 0 => rpc_error(target, "Submit", status),
            Failed::Known(status) => rpc_error(target, "Submit", status).context(format!(
                "{done} of {} values were published ({rerun} to publish the rest; those are not signed again)",
                submissions.len()
            )),
            Failed::Unknown(status) => {
                let mut message = unknown_message(target, &status, rerun, &check(done));
                if done > 0 {
                    message.push_str(&format!(
                        " ({done} of {} values before it were published)",
                        submissions.len()
                    ));
                }
                anyhow::Error::new(OutcomeUnknown(message))
            }
        })?;
        on_answer(part, &response);
        answers.push(response);
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn lost() -> tonic::Status {
        tonic::Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )))
    }

    fn not_running() -> tonic::Status {
        tonic::Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    }

    /// Runs `retrying` without waits over scripted answers; returns the result and the calls.
    async fn scripted(
        script: &[fn() -> Result<u32, tonic::Status>],
    ) -> (Result<u32, Failed>, usize) {
        let calls = Cell::new(0);
        let delays = [Duration::ZERO; RETRY_DELAYS.len()];
        let got = retrying(&delays, || {
            let i = calls.get();
            calls.set(i + 1);
            let answer = script[i.min(script.len() - 1)]();
            async move { answer }
        })
        .await;
        (got, calls.get())
    }

    #[tokio::test]
    async fn only_calls_with_an_open_outcome_are_retried() {
        // Lost, then the node is down, then it answers (from the first call's receipt).
        let (got, calls) = scripted(&[|| Err(lost()), || Err(not_running()), || Ok(7)]).await;
        assert_eq!((got.unwrap(), calls), (7, 3));

        // Down from the start: nothing was sent, so one attempt and a plain failure.
        let (got, calls) = scripted(&[|| Err(not_running())]).await;
        assert!(matches!(got, Err(Failed::Known(_))));
        assert_eq!(calls, 1);

        // The node's own answer ends it at once, also after a lost one.
        let (got, calls) = scripted(&[
            || Err(lost()),
            || Err(tonic::Status::invalid_argument("bad")),
        ])
        .await;
        assert!(matches!(got, Err(Failed::Known(s)) if s.code() == tonic::Code::InvalidArgument));
        assert_eq!(calls, 2);

        // Lost every time: every retry made, and the outcome stays open.
        let (got, calls) = scripted(&[|| Err(lost())]).await;
        assert!(matches!(got, Err(Failed::Unknown(_))));
        assert_eq!(calls, 1 + RETRY_DELAYS.len());
    }

    #[test]
    fn keys_are_random_and_requests_of_one_invocation_share_the_stem() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(request_key(&a, 0), a);
        assert_eq!(request_key(&a, 2), format!("{a}/2"));
        assert!(parse_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(parse_key(&"k".repeat(MAX_KEY_BYTES + 1))
            .unwrap_err()
            .contains("1 to 200 bytes"));
        assert!(parse_key("").is_err());
    }
}
