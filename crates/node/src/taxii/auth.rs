//! Who calls the gateway: a service certificate presented in the TLS handshake, or HTTP basic
//! credentials of a `[[taxii.user]]`, and what each may do.
//!
//! A certificate's caller reads as its own org and may add objects only if that org is this
//! node's (as on the gRPC API); a basic user reads as this node's org with the permission its
//! config entry gives. Verified passwords are remembered (as a hash, bounded, for minutes) so
//! a client paging through a collection does not pay argon2 on every page; argon2 runs on the
//! blocking pool, two at a time, so wrong passwords cannot exhaust memory or stall requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use base64::Engine;
use intelmesh_core::OrgId;
use sha2::{Digest, Sha256};

use super::config::{hash_password, Permission, TaxiiUser};
use super::throttle::{
    source, Failures, Network, UnknownNames, NETWORK_FAILURES_PER_WINDOW, USER_FAILURES_PER_WINDOW,
    USER_WINDOW, WINDOW,
};
use crate::admission::refused_certificate;
use crate::conn_slots::Source;
use crate::identity::{identity_of, Identity};
use crate::state::NodeState;

/// Verified credentials remembered at most.
const REMEMBERED: usize = 256;
/// How long a verified password is remembered.
const REMEMBER_FOR: Duration = Duration::from_secs(300);

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The org whose view the caller reads.
    pub org: OrgId,
    /// The service or user name, for logs and idempotency.
    pub name: String,
    pub can_write: bool,
}

/// Why a request is not authenticated (401) or not allowed (403).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: present a service certificate or HTTP basic credentials")]
    Missing,
    #[error("the user name or password is wrong")]
    BadCredentials,
    #[error("the Authorization header is not HTTP basic credentials")]
    Malformed,
    #[error("{0}")]
    Refused(String),
    /// Password checks were all taken for longer than a request waits.
    #[error("{0}")]
    Busy(#[from] super::busy::Busy),
    /// The client's address sent too many wrong passwords lately.
    #[error("too many wrong passwords from this address: try again in {0} s")]
    Throttled(u64),
}

impl AuthError {
    /// 403 for a known caller refused, 503 when too busy to check, 401 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::Refused(_) => 403,
            AuthError::Busy(_) => 503,
            AuthError::Throttled(_) => 429,
            _ => 401,
        }
    }
}

/// The configured users and the passwords verified lately.
pub struct Users {
    users: Vec<TaxiiUser>,
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// argon2 runs at most this many at once (each takes ~19 MiB and tens of ms): a flood of
    /// wrong passwords waits here instead of taking the node's memory and cores.
    hashing: std::sync::Arc<tokio::sync::Semaphore>,
    /// One more check, only for a configured user from an address it signed in from before:
    /// a flood of guesses from elsewhere keeps `hashing` busy, not its tools out.
    hashing_known: std::sync::Arc<tokio::sync::Semaphore>,
    /// Wrong passwords by client address and by its network: a guessing host (or site) is
    /// refused before it waits here.
    failures: Mutex<(Failures<Source>, Failures<Network>)>,
    /// Wrong passwords by user name: a configured user's in a table no other name can push it
    /// out of; unknown names in buckets of their own, none pushed out either, so a name's
    /// refusal, or its end, does not tell it exists.
    user_failures: Mutex<(Failures<usize>, UnknownNames)>,
    /// Per configured user, the addresses it last signed in from (at most
    /// [`GOOD_SOURCES_PER_USER`]): a user refused for guesses made elsewhere is still checked
    /// from these, so whoever knows a name cannot lock its tools out.
    good_sources: Mutex<HashMap<usize, std::collections::VecDeque<Source>>>,
}

/// Addresses remembered per user as ones it signed in from.
const GOOD_SOURCES_PER_USER: usize = 16;

/// argon2 verifications at once.
const HASHING_AT_ONCE: usize = 2;

/// A hash to verify against when the user is unknown, so that a wrong name costs what a
/// wrong password does and the answer's time does not tell which names exist.
fn unknown_user_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password("no such user").unwrap_or_default())
}

impl Users {
    pub fn new(users: Vec<TaxiiUser>) -> Users {
        Users {
            users,
            verified: Mutex::new(HashMap::new()),
            hashing: std::sync::Arc::new(tokio::sync::Semaphore::new(HASHING_AT_ONCE)),
            hashing_known: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            failures: Mutex::new((
                Failures::default(),
                Failures::new(NETWORK_FAILURES_PER_WINDOW, WINDOW),
            )),
            user_failures: Mutex::new((
                Failures::new(USER_FAILURES_PER_WINDOW, USER_WINDOW),
                UnknownNames::new(USER_FAILURES_PER_WINDOW, USER_WINDOW),
            )),
            good_sources: Mutex::default(),
        }
    }

    /// Refuses `from`, or the user `name` (`user`: its index if configured), while too many
    /// wrong passwords came from it, or for it, lately.
    fn not_throttled(
        &self,
        from: IpAddr,
        name: &str,
        user: Option<usize>,
    ) -> Result<(), AuthError> {
        let now = Instant::now();
        let known_here = self.known_here(from, user);
        let by_address = {
            let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let host = failures.0.refused_until(&source(from), now);
            // A site's guesses do not lock out a user from the address it signed in from.
            let site = (!known_here)
                .then(|| failures.1.refused_until(&Network::of(from), now))
                .flatten();
            host.max(site)
        };
        let by_user = {
            let users = self.user_failures.lock().unwrap_or_else(|e| e.into_inner());
            match user {
                _ if known_here => None,
                Some(i) => users.0.refused_until(&i, now),
                None => users.1.refused_until(name, now),
            }
        };
        match by_address.max(by_user) {
            Some(until) => Err(AuthError::Throttled(
                until.saturating_duration_since(now).as_secs().max(1),
            )),
            None => Ok(()),
        }
    }

    /// Whether configured user `user` signed in from `from`'s address lately.
    fn known_here(&self, from: IpAddr, user: Option<usize>) -> bool {
        user.is_some_and(|i| {
            let good = self.good_sources.lock().unwrap_or_else(|e| e.into_inner());
            good.get(&i).is_some_and(|s| s.contains(&source(from)))
        })
    }

    /// Counts a wrong password from `from` for `name`.
    fn failed(&self, from: IpAddr, name: &str, user: Option<usize>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.0.failed(source(from), now);
        failures.1.failed(Network::of(from), now);
        drop(failures);
        let mut users = self.user_failures.lock().unwrap_or_else(|e| e.into_inner());
        match user {
            Some(i) => users.0.failed(i, now),
            None => users.1.failed(name, now),
        }
    }

    /// The user an `Authorization: Basic …` header names, if its password is right.
    async fn check_basic(
        &self,
        header: &str,
        from: IpAddr,
    ) -> Result<(Permission, String), AuthError> {
        let encoded = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
            .ok_or(AuthError::Malformed)?;
        if encoded.len() > 1024 {
            return Err(AuthError::Malformed);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| AuthError::Malformed)?;
        let text = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
        let (name, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
        let index = self.users.iter().position(|u| u.name == name);
        let user = index.map(|i| &self.users[i]);
        let hash = user.map_or(unknown_user_hash(), |u| u.password_hash.as_str());
        let key: [u8; 32] = Sha256::new()
            .chain_update(hash.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let now = Instant::now();
        if let Some(u) = user {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified
                .get(&key)
                .is_some_and(|&t| now.duration_since(t) < REMEMBER_FOR)
            {
                return Ok((u.permission, name.to_string()));
            }
        }
        self.not_throttled(from, name, index)?;
        let pool = match self.known_here(from, index) {
            true => &self.hashing_known,
            false => &self.hashing,
        };
        let _permit = super::busy::permit(pool).await?;
        // Again once a check is ours: guesses sent all at once waited together.
        self.not_throttled(from, name, index)?;
        let (hash, password) = (hash.to_string(), password.to_string());
        let right = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        let Some(user) = user.filter(|_| right) else {
            self.failed(from, name, index);
            return Err(AuthError::BadCredentials);
        };
        if let Some(i) = index {
            let mut good = self.good_sources.lock().unwrap_or_else(|e| e.into_inner());
            let sources = good.entry(i).or_default();
            let from = source(from);
            sources.retain(|s| *s != from);
            sources.push_back(from);
            if sources.len() > GOOD_SOURCES_PER_USER {
                sources.pop_front();
            }
        }
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.retain(|_, t| now.duration_since(*t) < REMEMBER_FOR);
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(key, now);
        Ok((user.permission, name.to_string()))
    }
}

/// The caller of one request: the client certificate (`leaf`, DER) if one was presented,
/// else the basic credentials of `authorization`.
pub async fn authenticate(
    state: &NodeState,
    users: &Users,
    leaf: Option<&[u8]>,
    authorization: Option<&str>,
    from: IpAddr,
) -> Result<Caller, AuthError> {
    if let Some(leaf) = leaf {
        if let Some(why) = refused_certificate(state, leaf) {
            return Err(AuthError::Refused(why));
        }
        return match identity_of(leaf) {
            Ok(Identity::Service { org, name }) => Ok(Caller {
                can_write: org == state.org && !state.cfg.read_only_services.contains(&name),
                org,
                name,
            }),
            Ok(other) => Err(AuthError::Refused(format!(
                "{other} is not a service: the gateway serves service certificates and users"
            ))),
            Err(e) => Err(AuthError::Refused(e.to_string())),
        };
    }
    let header = authorization.ok_or(AuthError::Missing)?;
    let (permission, name) = users.check_basic(header, from).await?;
    Ok(Caller {
        org: state.org.clone(),
        name: format!("user:{name}"),
        can_write: permission == Permission::Submit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    /// One user, `soc`, whose password is "correct horse battery".
    fn soc(permission: Permission) -> Users {
        Users::new(vec![TaxiiUser {
            name: "soc".into(),
            password_hash: hash_password("correct horse battery").unwrap(),
            permission,
        }])
    }

    #[tokio::test]
    async fn an_address_guessing_passwords_is_refused_without_a_check_and_others_are_not() {
        let users = soc(Permission::Read);
        for _ in 0..super::super::throttle::FAILURES_PER_WINDOW {
            let wrong = users.check_basic(&basic("soc", "guess"), HOST).await;
            assert_eq!(wrong, Err(AuthError::BadCredentials));
        }
        let refused = users
            .check_basic(&basic("soc", "correct horse battery"), HOST)
            .await;
        assert!(
            matches!(refused, Err(AuthError::Throttled(s)) if s > 0),
            "{refused:?}"
        );
        assert_eq!(refused.unwrap_err().http_status(), 429);
        let elsewhere = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));
        let ok = users
            .check_basic(&basic("soc", "correct horse battery"), elsewhere)
            .await;
        assert_eq!(ok, Ok((Permission::Read, "soc".to_string())));
        // Remembered credentials pass without a check, whatever the address.
        let remembered = users
            .check_basic(&basic("soc", "correct horse battery"), HOST)
            .await;
        assert_eq!(remembered, ok);
    }

    /// Guesses spread over many addresses, each far under its own bound: past the user's, its
    /// password is not checked from anywhere until the window ends; unknown names alike, so a
    /// refusal does not tell which names exist.
    #[tokio::test]
    async fn guesses_for_one_user_from_many_addresses_are_refused_past_the_users_bound() {
        let users = soc(Permission::Read);
        // Each from a network of its own, so only the user's bound can refuse them.
        let address = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8)));
        // The user's tool signed in from HOST before the guessing began.
        let right = basic("soc", "correct horse battery");
        assert!(users.check_basic(&right, HOST).await.is_ok());
        // Long enough ago that the verification is no longer remembered.
        users.verified.lock().unwrap().clear();
        for name in ["soc", "nobody"] {
            for i in 0..USER_FAILURES_PER_WINDOW {
                let wrong = users.check_basic(&basic(name, "guess"), address(i)).await;
                assert_eq!(wrong, Err(AuthError::BadCredentials), "{name} #{i}");
            }
        }
        let fresh = address(100_000);
        for name in ["soc", "nobody"] {
            let refused = users
                .check_basic(&basic(name, "correct horse battery"), fresh)
                .await;
            assert!(
                matches!(refused, Err(AuthError::Throttled(s)) if s > 0),
                "{name}: {refused:?}"
            );
        }
        // From where the user signed in before, its password is still checked: the guessing
        // locks no tool out.
        assert_eq!(
            users.check_basic(&right, HOST).await,
            Ok((Permission::Read, "soc".to_string()))
        );
    }

    /// Guesses from many hosts of one network, each under its own bound: past the network's,
    /// no password is checked from it, except a user's from the address it signed in from.
    #[tokio::test]
    async fn a_networks_guesses_are_refused_past_its_bound_but_lock_out_no_known_user() {
        let users = soc(Permission::Read);
        let right = basic("soc", "correct horse battery");
        assert!(users.check_basic(&right, HOST).await.is_ok());
        users.verified.lock().unwrap().clear();
        // HOST is 192.0.2.7: the guesses come from its /24, a few from each host.
        let neighbour =
            |i: u32| IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 100 + (i % 50) as u8));
        for i in 0..NETWORK_FAILURES_PER_WINDOW {
            let wrong = users
                .check_basic(&basic(&format!("n{i}"), "guess"), neighbour(i))
                .await;
            assert_eq!(wrong, Err(AuthError::BadCredentials), "#{i}");
        }
        let unknown_host = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 250));
        let refused = users.check_basic(&right, unknown_host).await;
        assert!(
            matches!(refused, Err(AuthError::Throttled(_))),
            "{refused:?}"
        );
        assert_eq!(
            users.check_basic(&right, HOST).await,
            Ok((Permission::Read, "soc".to_string()))
        );
        // Another network is not refused.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 9));
        users.verified.lock().unwrap().clear();
        assert!(users.check_basic(&right, other).await.is_ok());
    }

    fn basic(user: &str, password: &str) -> String {
        let raw = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[tokio::test]
    async fn only_the_right_password_of_a_known_user_passes() {
        let users = soc(Permission::Submit);
        let ok = users
            .check_basic(&basic("soc", "correct horse battery"), HOST)
            .await;
        assert_eq!(ok, Ok((Permission::Submit, "soc".to_string())));
        // Again, from the remembered verification.
        let again = users
            .check_basic(&basic("soc", "correct horse battery"), HOST)
            .await;
        assert_eq!(again, ok);
        for (header, want) in [
            (basic("soc", "wrong"), AuthError::BadCredentials),
            (
                basic("nobody", "correct horse battery"),
                AuthError::BadCredentials,
            ),
            ("Bearer abc".to_string(), AuthError::Malformed),
            ("Basic !!!".to_string(), AuthError::Malformed),
            (
                format!("Basic {}", "QUFB".repeat(400)),
                AuthError::Malformed,
            ),
            (
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("no-colon")
                ),
                AuthError::Malformed,
            ),
        ] {
            assert_eq!(
                users.check_basic(&header, HOST).await,
                Err(want),
                "{header:.40}"
            );
        }
    }
}
