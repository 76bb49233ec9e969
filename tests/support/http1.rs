//! A minimal HTTP/1.1 exchange over any stream (plain TCP to chromedriver, TLS to the hub
//! console): one request with `Connection: close`, the whole answer read to the end.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An HTTP answer: status, headers (names in lowercase) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` with `body` (JSON when given) to `host` over `stream`; reads the answer.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Answer> {
    exchange_with(stream, host, method, path, body, "").await
}

/// [`exchange`] with `headers` (each line ending in `\r\n`) added to the request.
pub async fn exchange_with<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &str,
) -> std::io::Result<Answer> {
    let body = body.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         {headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    read_answer(stream).await
}

/// `GET path` with `headers` (each line ending in `\r\n`), the connection kept open for
/// more.
pub async fn get_kept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
    headers: &str,
) -> std::io::Result<Answer> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    read_answer(stream).await
}

/// Reads one whole answer from `stream`.
async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Answer> {
    // Read until the answer is whole: chromedriver keeps the connection open whatever
    // `Connection: close` says, so the end of the stream cannot mark it.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if complete(&raw) {
            break;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    parse(&raw).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Whether `raw` holds a whole answer: headers, and the body its length or chunks announce.
fn complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let Ok(answer) = parse(raw) else {
        return false;
    };
    let body = raw.len() - split - 4;
    if let Some(length) = answer.header("content-length") {
        return length.parse::<usize>().is_ok_and(|l| body >= l);
    }
    if answer.header("transfer-encoding").is_some() {
        return raw.ends_with(b"0\r\n\r\n");
    }
    false
}

/// Parses a whole HTTP/1.1 answer (body by length, chunks, or to the end).
pub fn parse(raw: &[u8]) -> Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line without its end")?;
        let size_text = String::from_utf8_lossy(&rest[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let data = rest
            .get(end + 2..end + 2 + size)
            .ok_or("chunk shorter than its size")?;
        out.extend_from_slice(data);
        rest = rest.get(end + 4 + size..).ok_or("chunk without its end")?;
    }
}
