//! The gateway's part of the audit trail: a route layer that records every request to a TAXII
//! resource (refused ones too) with the caller the handler authenticated (or the certificate
//! presented, when authentication failed), the values a POST published, and the HTTP status.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::auth::Caller as TaxiiCaller;
use crate::audit::{caller_of_certificate, lock_note as lock, Note, Noted, Pending, Value};
use crate::https::Connection;
use crate::state::NodeState;

/// Notes the authenticated caller: a certificate's service, or a `[[taxii.user]]`.
pub fn note_caller(n: &Noted, c: &TaxiiCaller) {
    let (name, role) = match c.name.strip_prefix("user:") {
        Some(user) => (user.to_string(), "taxii-user"),
        None => (c.name.clone(), "service"),
    };
    lock(n).caller = Some(intelmesh_audit::Caller {
        org: c.org.to_string(),
        name,
        role: role.into(),
    });
}

/// Notes the values a request asks to publish (before it publishes them).
pub fn note_values(n: &Noted, values: Vec<Value>) {
    lock(n).values = values;
}

/// Notes the values of the indicators a read by id found (object by id, its versions,
/// `match[id]`): an id names one origin's value, so asking for it is a lookup of that value.
pub fn note_found(n: &Noted, found: &[super::read::Dated]) {
    let mut values: Vec<String> = Vec::new();
    for d in found {
        let pattern = d.object.get("pattern").and_then(serde_json::Value::as_str);
        let Some(indicators) = pattern.and_then(|p| intelmesh_interop::parse_pattern(p).ok())
        else {
            continue;
        };
        for i in indicators {
            if !values.iter().any(|v| v == i.value()) {
                values.push(i.value().to_string());
            }
        }
    }
    lock(n).values = values.into_iter().map(Value::Canonical).collect();
}

/// Notes that the values noted are published: the answer waits for the record.
pub fn note_published(n: &Noted) {
    lock(n).published = true;
}

/// Records a request whose response never came: the layer's future was dropped (the client
/// went away), while what it started, a publication, runs to its end by itself.
struct Unanswered {
    state: Arc<NodeState>,
    time_ms: i64,
    method: String,
    note: Noted,
    leaf: Option<Arc<Vec<u8>>>,
    answered: bool,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let Note { caller, values, .. } = std::mem::take(&mut *lock(&self.note));
        // Only a caller who proved who it is: anyone can open and drop connections.
        let caller = match (caller, &self.leaf) {
            (Some(c), _) => c,
            (None, Some(der)) => caller_of_certificate(der),
            (None, None) => return,
        };
        self.state.audit().queue_now(Pending {
            time_ms: self.time_ms,
            caller,
            method: std::mem::take(&mut self.method),
            values,
            code: 499,
            result: crate::audit::CANCELLED_RESULT.into(),
        });
    }
}

/// The route layer: gives the handler a fresh note, then records the request.
pub async fn record(
    State(state): State<Arc<NodeState>>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    // The route's pattern, not its path: ids stay out of the method, which keeps few values.
    let method = format!(
        "TAXII {} {}",
        request.method(),
        matched.as_ref().map_or("(no resource)", |m| m.as_str())
    );
    let time_ms = intelmesh_core::now_unix_ms();
    let note = Noted::default();
    let (mut leaf, mut source) = (None, None);
    if let Some(c) = request.extensions_mut().get_mut::<Connection>() {
        c.note = Arc::clone(&note);
        leaf = c.leaf.clone();
        source = Some(crate::conn_slots::Source::of(c.peer));
    }
    let mut unanswered = Unanswered {
        state: Arc::clone(&state),
        time_ms,
        method: method.clone(),
        note: Arc::clone(&note),
        leaf: leaf.clone(),
        answered: false,
    };
    let response = next.run(request).await;
    // Room first: dropped while waiting for it, the request is still recorded by the guard.
    let audit = state.audit();
    let room = audit.room().await;
    unanswered.answered = true;
    let Note {
        caller,
        values,
        published,
    } = std::mem::take(&mut *lock(&note));
    let status = response.status();
    let anonymous = caller.is_none() && leaf.is_none();
    let source = source.unwrap_or(crate::conn_slots::Source::V4([0; 4]));
    if anonymous && !state.audit().takes_anonymous_refusal(source, time_ms) {
        state.metrics.audit_refusal_unrecorded();
        return response;
    }
    let caller = caller.unwrap_or_else(|| match &leaf {
        Some(der) => caller_of_certificate(der),
        None => crate::audit::caller_of_identity(None),
    });
    // A POST that published: its status waits for its record.
    let call = Pending {
        time_ms,
        caller,
        method,
        values,
        code: u32::from(status.as_u16()),
        result: format!("HTTP {}", status.as_u16()),
    };
    room.record(call, published).await;
    response
}
