//! Why a connection to a node or a call failed, read from the error's causes (tonic `Status`
//! → hyper/h2 → I/O → rustls), and whether the node may still have carried the call out. The
//! client commands word their hints from this, never from the gRPC code alone: a refused
//! certificate, a node that is not running and a connection cut mid-call can all arrive as
//! `Unknown` or `Unavailable`.

use std::error::Error;
use std::io;

use intelmesh_node::connect::ConnectError;

/// What went wrong on the way to the node or back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens at the address (connection refused).
    NotListening,
    /// No answer in time; `connecting` while the connection was being set up.
    TimedOut { connecting: bool },
    /// The node ended the TLS handshake with an alert (its name, e.g. `UnknownCA`): it does not
    /// accept this client's certificate.
    Refused { alert: String },
    /// The node's certificate did not pass this client's checks (the reason).
    NodeNotTrusted(String),
    /// The connection closed while it was being set up (before any call was sent).
    ClosedWhileConnecting,
    /// The connection broke after it was open: a call on it may have reached the node.
    ConnectionLost,
}

impl Failure {
    /// The failure of connecting, from the connect error's chain (`anyhow` or std); `None`
    /// when nothing in it is a transport failure (unreadable TLS files, say).
    pub fn of_connect<'a>(
        chain: impl Iterator<Item = &'a (dyn Error + 'static)>,
    ) -> Option<Failure> {
        Some(match read_chain(chain)? {
            Failure::ConnectionLost => Failure::ClosedWhileConnecting,
            Failure::TimedOut { .. } => Failure::TimedOut { connecting: true },
            f => f,
        })
    }

    /// The transport failure behind a failed call; `None` when the node itself answered with
    /// the status (it then carries no cause).
    pub fn of_call(status: &tonic::Status) -> Option<Failure> {
        let source = status.source()?;
        let chain = std::iter::successors(Some(source), |&e| e.source());
        let connecting = chain.clone().any(|e| e.is::<tonic::ConnectError>());
        Some(match read_chain(chain) {
            Some(Failure::TimedOut { .. }) => Failure::TimedOut { connecting },
            Some(Failure::ConnectionLost) | None if connecting => Failure::ClosedWhileConnecting,
            // Whatever broke a call that had a connection, it broke the connection.
            Some(f) => f,
            None => Failure::ConnectionLost,
        })
    }

    /// Whether a call that failed like this may have been carried out all the same: the
    /// request may have reached the node before the answer was lost.
    pub fn outcome_unknown(failure: Option<&Failure>, code: tonic::Code) -> bool {
        use tonic::Code;
        match failure {
            Some(Failure::TimedOut { connecting }) => !connecting,
            Some(Failure::ConnectionLost) => true,
            Some(_) => false,
            // The node answered, but says it does not know either.
            None => matches!(
                code,
                Code::Unknown | Code::Cancelled | Code::DeadlineExceeded | Code::Unavailable
            ),
        }
    }

    /// The hint for a node `org` at `addr`, as one clause.
    pub fn hint(&self, org: &str, addr: &str, timeout_s: u64) -> String {
        match self {
            Failure::NotListening => format!(
                "nothing is listening at {addr}: is the node running, and is {addr} its api.listen address?"
            ),
            Failure::TimedOut { connecting: true } => format!(
                "no answer from {addr} within {timeout_s} s while connecting: is the address right and the node up?"
            ),
            Failure::TimedOut { connecting: false } => {
                format!("no answer from {org} within {timeout_s} s (--timeout)")
            }
            Failure::Refused { alert } if alert == "CertificateExpired" => format!(
                "{org} refused this client's certificate (TLS alert {alert}): it has expired or is not valid yet; --cert and --key must be a service certificate valid now (`intelmesh pki issue-service` with {org}'s service CA)"
            ),
            Failure::Refused { alert } => format!(
                "{org} refused this client's certificate (TLS alert {alert}): --cert and --key must be a service certificate issued by {org}'s service CA"
            ),
            Failure::NodeNotTrusted(why) => format!(
                "the certificate of the node at {addr} does not check out ({why}): is --ca the CA of {org}'s API certificate, and --node-org its org?"
            ),
            Failure::ClosedWhileConnecting => format!(
                "{org} closed the connection during the TLS handshake: most likely it does not accept this client's certificate (--cert must be issued by {org}'s service CA)"
            ),
            Failure::ConnectionLost => format!("the connection to {org} ({addr}) broke"),
        }
    }
}

/// The most telling failure named anywhere in a chain: a TLS verdict over a socket error,
/// and a socket error over the mere fact that a connection broke.
fn read_chain<'a>(chain: impl Iterator<Item = &'a (dyn Error + 'static)>) -> Option<Failure> {
    chain.flat_map(read_one).min_by_key(rank)
}

fn rank(f: &Failure) -> u8 {
    match f {
        Failure::Refused { .. } => 0,
        Failure::NodeNotTrusted(_) => 1,
        Failure::NotListening => 2,
        Failure::TimedOut { .. } => 3,
        Failure::ClosedWhileConnecting => 4,
        Failure::ConnectionLost => 5,
    }
}

/// What one error of a chain says, looking inside I/O errors (which hide their inner error
/// from `source`) and h2 errors (which keep only an I/O error's kind and text).
fn read_one(e: &(dyn Error + 'static)) -> Vec<Failure> {
    let mut found = Vec::new();
    if let Some(c) = e.downcast_ref::<ConnectError>() {
        found.extend(read_connect(c));
    }
    if e.is::<tonic::TimeoutExpired>() {
        found.push(Failure::TimedOut { connecting: false });
    }
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        found.extend(read_tls(t));
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        found.extend(read_io(io));
    }
    if let Some(h2) = e.downcast_ref::<h2::Error>() {
        found.extend(h2.get_io().and_then(read_io));
        if h2.is_go_away() || h2.is_reset() {
            found.push(Failure::ConnectionLost);
        }
    }
    // h2 passes a TLS alert on as text only.
    if let Some(alert) = alert_in(&e.to_string()) {
        found.push(Failure::Refused { alert });
    }
    found
}

/// What the node's connector says went wrong while it set the connection up.
fn read_connect(c: &ConnectError) -> Option<Failure> {
    match c {
        ConnectError::TcpTimedOut { .. }
        | ConnectError::TlsTimedOut { .. }
        | ConnectError::SilentAfterHandshake { .. } => Some(Failure::TimedOut { connecting: true }),
        ConnectError::Tcp { source, .. } => read_io(source),
        ConnectError::Refused { alert, .. } => Some(Failure::Refused {
            alert: alert.clone(),
        }),
        ConnectError::CertificateRefused { reason, .. } => {
            Some(Failure::NodeNotTrusted(reason.clone()))
        }
        ConnectError::NoHttp2 { .. } => Some(Failure::NodeNotTrusted(c.to_string())),
        ConnectError::Tls { reason, .. } => match alert_in(reason) {
            Some(alert) => Some(Failure::Refused { alert }),
            None => Some(Failure::ClosedWhileConnecting),
        },
        ConnectError::ClosedAfterHandshake { .. } => Some(Failure::ClosedWhileConnecting),
    }
}

fn read_io(io: &io::Error) -> Option<Failure> {
    if let Some(t) = io
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        if let Some(f) = read_tls(t) {
            return Some(f);
        }
    }
    use io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => Some(Failure::NotListening),
        K::TimedOut => Some(Failure::TimedOut { connecting: false }),
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::NotConnected => Some(Failure::ConnectionLost),
        _ => None,
    }
}

fn read_tls(e: &rustls::Error) -> Option<Failure> {
    match e {
        rustls::Error::AlertReceived(alert) => Some(Failure::Refused {
            alert: format!("{alert:?}"),
        }),
        rustls::Error::InvalidCertificate(why) => Some(Failure::NodeNotTrusted(format!("{why:?}"))),
        _ => None,
    }
}

/// The alert name in rustls's "received fatal alert: NAME".
fn alert_in(text: &str) -> Option<String> {
    let rest = &text[text.find("received fatal alert: ")? + "received fatal alert: ".len()..];
    let name: String = rest
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_from(e: impl Error + Send + Sync + 'static) -> tonic::Status {
        tonic::Status::from_error(Box::new(e))
    }

    #[test]
    fn socket_errors_name_their_cause() {
        let io = |k: io::ErrorKind| status_from(io::Error::from(k));
        assert_eq!(
            Failure::of_call(&io(io::ErrorKind::ConnectionReset)),
            Some(Failure::ConnectionLost)
        );
        assert_eq!(
            Failure::of_call(&io(io::ErrorKind::ConnectionRefused)),
            Some(Failure::NotListening)
        );
        assert_eq!(
            Failure::of_call(&status_from(tonic::TimeoutExpired(()))),
            Some(Failure::TimedOut { connecting: false })
        );
        // A cause nobody recognises still means the transport broke under the call.
        assert_eq!(
            Failure::of_call(&status_from(io::Error::other("weird"))),
            Some(Failure::ConnectionLost)
        );
        // The node's own answer has no cause.
        assert_eq!(Failure::of_call(&tonic::Status::unavailable("x")), None);
    }

    #[test]
    fn tls_alerts_win_over_the_broken_socket_they_come_with() {
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        );
        let f = Failure::of_call(&status_from(alert)).unwrap();
        assert_eq!(
            f,
            Failure::Refused {
                alert: "UnknownCA".into()
            }
        );
        // As h2 passes it on: the kind and the text.
        let text = io::Error::new(
            io::ErrorKind::InvalidData,
            "received fatal alert: BadCertificate",
        );
        assert_eq!(
            Failure::of_call(&status_from(text)),
            Some(Failure::Refused {
                alert: "BadCertificate".into()
            })
        );
        assert!(!Failure::outcome_unknown(Some(&f), tonic::Code::Unknown));
    }

    #[test]
    fn only_a_call_that_may_have_been_sent_has_an_unknown_outcome() {
        use tonic::Code;
        let unknown = |f: Option<Failure>, c| Failure::outcome_unknown(f.as_ref(), c);
        assert!(unknown(Some(Failure::ConnectionLost), Code::Unknown));
        assert!(unknown(
            Some(Failure::TimedOut { connecting: false }),
            Code::Cancelled
        ));
        assert!(!unknown(
            Some(Failure::TimedOut { connecting: true }),
            Code::Cancelled
        ));
        assert!(!unknown(Some(Failure::NotListening), Code::Unavailable));
        assert!(!unknown(
            Some(Failure::ClosedWhileConnecting),
            Code::Unavailable
        ));
        assert!(unknown(None, Code::Unavailable));
        assert!(!unknown(None, Code::InvalidArgument));
        assert!(!unknown(None, Code::Internal));
    }

    #[test]
    fn connect_errors_are_never_mid_call() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let timed = io::Error::from(io::ErrorKind::TimedOut);
        let of = |e: &io::Error| Failure::of_connect(std::iter::once(e as &(dyn Error + 'static)));
        assert_eq!(of(&reset), Some(Failure::ClosedWhileConnecting));
        assert_eq!(of(&refused), Some(Failure::NotListening));
        assert_eq!(of(&timed), Some(Failure::TimedOut { connecting: true }));
        let unreadable = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(of(&unreadable), None, "not a transport failure");
    }
}
