//! Which `Host` the plain-HTTP metrics listener answers: an IP address, `localhost`, or a name
//! in `[metrics] hosts`. A web page open in a browser that reaches the port could otherwise
//! rebind its own name to the port's address and read the metrics as same-origin (DNS
//! rebinding); the browser then sends the page's name.

use std::sync::Arc;

/// Whether a request's `Host` names this listener as monitoring does: an IP address (with or
/// without a port), `localhost`, or one of `hosts` (as [`host_name`] gives them).
pub fn host_allowed(host: Option<&str>, hosts: &[String]) -> bool {
    let Some(host) = host else {
        // HTTP/1.0 without a Host: no browser sends that.
        return true;
    };
    let host = host.trim().to_ascii_lowercase();
    if let Some(v6) = host.strip_prefix('[') {
        let address = v6
            .strip_suffix(']')
            .or_else(|| v6.rsplit_once("]:").map(|(a, _)| a));
        return address.is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = host_name(&host);
    name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" || hosts.contains(&name)
}

/// A host name as compared: lowercase, without a port or a trailing dot.
pub fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host.as_str(),
    };
    name.strip_suffix('.').unwrap_or(name).to_string()
}

/// The listener's middleware: 421 for a request naming another host.
pub async fn refuse_other_hosts(
    hosts: Arc<[String]>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = (request.headers().get(axum::http::header::HOST)).and_then(|h| h.to_str().ok());
    if host_allowed(host, &hosts) {
        return next.run(request).await;
    }
    (
        axum::http::StatusCode::MISDIRECTED_REQUEST,
        "this listener answers under its IP address, localhost or a name in [metrics] hosts\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_localhost_and_configured_names_are_answered_others_not() {
        let hosts: Vec<String> = ["Mon.Internal.", "scrape.example:9464"]
            .iter()
            .map(|h| host_name(h))
            .collect();
        for ok in [
            "10.0.0.5:9464",
            "10.0.0.5",
            "[::1]:9464",
            "[2001:db8::1]",
            "localhost",
            "LOCALHOST.:9464",
            "mon.internal",
            "mon.internal.:9464",
            "scrape.example",
        ] {
            assert!(host_allowed(Some(ok), &hosts), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:9464",
            "10.0.0.5.evil.example",
            "[::1]junk",
            "[not-an-address]:9464",
            "mon.internal.evil.example",
        ] {
            assert!(!host_allowed(Some(refused), &hosts), "{refused}");
        }
        assert!(host_allowed(None, &hosts));
    }
}
