//! Which of a hub's keys signs the next roster log entry: its signing key now, or one it
//! rotated from while the roster in force still lists that one for the authority.

use std::sync::Arc;

use intelmesh_core::{OrgId, Signer, StaticKeys};

use super::{lock, Follow};

impl Follow {
    /// Keeps `outgoing`, the signing key a rotation while running replaced, among the keys
    /// that may sign the roster log: the roster lists it, not the new one, until a version
    /// takes the rotation.
    pub(crate) fn keep_authority_candidate(&self, outgoing: &Signer) {
        let fed = self.current().federation_id().clone();
        let mut kept = lock(&self.authority_signers);
        let key = outgoing.verifying_key();
        if !kept.iter().any(|s| s.verifying_key() == key) {
            kept.push(Arc::new(Signer::new(fed, outgoing.signing_key().clone())));
        }
    }

    /// Which of this hub's keys signs the next roster log entry: of its signing key now
    /// (`current`, which a rotation while running changes) and the keys it started with
    /// ([`authority_signers`](Follow::authority_signers)), the first the version in force
    /// lists for `me` and lets sign later versions (`keys`, its key set, grants the roster log
    /// to it); else the current one, whose entry the rules then refuse with a clear error.
    pub(crate) fn authority_signer(
        &self,
        me: &OrgId,
        keys: &StaticKeys,
        current: &Signer,
    ) -> Option<Arc<Signer>> {
        let fed = self.current().federation_id().clone();
        let now = Arc::new(Signer::new(fed, current.signing_key().clone()));
        let candidates: Vec<Arc<Signer>> = std::iter::once(now)
            .chain(lock(&self.authority_signers).iter().cloned())
            .collect();
        let roster = self.current();
        let listed = roster
            .document()
            .members
            .iter()
            .find(|m| m.org == me.as_str())
            .map(|m| m.signing_keys.as_slice())
            .unwrap_or_default();
        let allowed = |s: &&Arc<Signer>| {
            let key = s.verifying_key();
            let index = listed.iter().position(|k| k.public_key == key.as_bytes());
            index.is_some_and(|i| roster.signs_later_versions(me, i)) && keys.holds(s.org(), &key)
        };
        let chosen = candidates.iter().find(allowed);
        chosen.or(candidates.first()).cloned()
    }
}
