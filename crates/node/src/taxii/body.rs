//! A POSTed body read within the gateway's limit, and one over it refused in a way the client
//! can read.
//!
//! A client that writes its whole request before it reads the answer (Python's `http.client`,
//! under `requests` and so under taxii2-client, over HTTP/1.1) finds the connection reset if the
//! gateway answers and closes while it is still sending: it reports a TLS or socket error, not
//! the 413 that tells it to split the envelope. So the rest of a body over the limit is read and
//! dropped, up to [`DRAIN_PAST_LIMIT`] bytes more, before the refusal; past that, or when the
//! declared length is already past it, the gateway refuses at once and the connection closes.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

/// Most bytes past the limit read (and dropped) so that the client reads the refusal: a body a
/// few times the usual limit still gets its 413, and a caller cannot make the gateway read more
/// than this for nothing.
pub const DRAIN_PAST_LIMIT: usize = 64 << 20;

/// Why a body was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Longer than the limit (413).
    #[error("the body is over max_content_length ({max} bytes)")]
    TooLarge { max: usize },
    /// The stream broke before its end: the client went away or sent a malformed frame.
    #[error("the body could not be read: {0}")]
    Broken(String),
}

/// The whole body, if it is at most `max` bytes; `declared` is its `Content-Length`, if any.
pub async fn read_within(
    body: Body,
    declared: Option<u64>,
    max: usize,
) -> Result<Bytes, BodyError> {
    let too_large = BodyError::TooLarge { max };
    let drain_until = max.saturating_add(DRAIN_PAST_LIMIT);
    if declared.is_some_and(|n| n > drain_until as u64) {
        return Err(too_large);
    }
    // Room for the declared length once, rather than regrowing by doubling as chunks come; none
    // for a body declared over the limit, which is only drained.
    let room = declared
        .filter(|n| *n <= max as u64)
        .map_or(0, |n| n as usize);
    let mut kept = BytesMut::with_capacity(room);
    let mut read = 0usize;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        read = read.saturating_add(chunk.len());
        if read <= max {
            kept.extend_from_slice(&chunk);
            continue;
        }
        // Over the limit: nothing more is kept, and the body is only read on to let the
        // client finish sending.
        kept = BytesMut::new();
        if read > drain_until {
            break;
        }
    }
    match read > max {
        true => Err(too_large),
        false => Ok(kept.freeze()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A body of `chunks` chunks of `size` bytes that counts how many were read.
    fn counted(chunks: usize, size: usize) -> (Body, Arc<AtomicUsize>) {
        let taken = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&taken);
        let stream = futures::stream::iter((0..chunks).map(move |i| {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::io::Error>(Bytes::from(vec![b'a' + (i % 26) as u8; size]))
        }));
        (Body::from_stream(stream), taken)
    }

    #[tokio::test]
    async fn a_body_up_to_the_limit_is_kept_whole() {
        let (body, _) = counted(4, 256);
        let bytes = read_within(body, Some(1024), 1024).await.expect("within");
        assert_eq!(bytes.len(), 1024);
        assert_eq!(&bytes[..2], b"aa");
        assert_eq!(&bytes[1022..], b"dd");
        let empty = read_within(Body::empty(), None, 1024).await.expect("empty");
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_read_to_its_end_and_refused() {
        // Three times the limit, undeclared (chunked): every chunk is read, so a client that
        // writes before it reads has sent all of it when the refusal comes.
        let (body, taken) = counted(12, 256);
        let got = read_within(body, None, 1024).await;
        assert_eq!(got, Err(BodyError::TooLarge { max: 1024 }));
        assert_eq!(taken.load(Ordering::Relaxed), 12);
        let (body, _) = counted(5, 205);
        assert_eq!(
            read_within(body, Some(1025), 1024).await,
            Err(BodyError::TooLarge { max: 1024 })
        );
    }

    #[tokio::test]
    async fn a_body_past_the_drain_is_refused_without_reading_all_of_it() {
        let chunk = 1 << 20;
        let past = (1024 + DRAIN_PAST_LIMIT) / chunk + 8;
        let (body, taken) = counted(past, chunk);
        let got = read_within(body, None, 1024).await;
        assert_eq!(got, Err(BodyError::TooLarge { max: 1024 }));
        let read = taken.load(Ordering::Relaxed);
        assert!(read < past, "read {read} of {past} chunks");
        assert!(
            read * chunk > DRAIN_PAST_LIMIT,
            "stopped early: {read} chunks"
        );
        // Declared past the drain: refused before a byte is read.
        let (body, taken) = counted(4, 256);
        let declared = Some((1024 + DRAIN_PAST_LIMIT) as u64 + 1);
        let got = read_within(body, declared, 1024).await;
        assert_eq!(got, Err(BodyError::TooLarge { max: 1024 }));
        assert_eq!(taken.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_broken_body_is_an_error_not_a_short_body() {
        let stream = futures::stream::iter([
            Ok(Bytes::from_static(b"{\"objects\":")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let got = read_within(Body::from_stream(stream), None, 1024).await;
        assert!(
            matches!(&got, Err(BodyError::Broken(why)) if why.contains("connection reset")),
            "{got:?}"
        );
    }
}
