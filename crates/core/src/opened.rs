//! Opening a verified sealed entry as one of its readers: the envelope opened with the reader's
//! encryption keys, and what it opens to checked exactly as an unsealed payload is.

use crate::entry::OrgId;
use crate::payload::is_bucket;
use crate::sealed::{open, DecryptionKeys, OpenError, MAX_SEALED_PLAINTEXT};
use crate::verify::{decode_content, Content, PayloadDefect, VerifiedEntry};

/// Why a reader could not read a sealed entry that verified: the origin signed an envelope
/// this reader cannot open, or one that opens to a bad payload. The entry stays a valid link
/// of the origin's chain (every relay accepted it); the reader holds it as it would a stub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenFailure {
    #[error("{origin}#{seq}: cannot open: {error}")]
    Open {
        origin: OrgId,
        seq: u64,
        error: OpenError,
    },
    #[error("{origin}#{seq}: opened to an invalid payload: {defect}")]
    Payload {
        origin: OrgId,
        seq: u64,
        defect: PayloadDefect,
    },
}

impl VerifiedEntry {
    /// Whether `me` is a reader of this entry's sealed payload (its origin or a recipient).
    pub fn is_reader(&self, me: &OrgId) -> bool {
        // Only restricted entries are sealed: for them, the distribution's own reader rule.
        let h = self.header();
        h.distribution.allows(&h.origin, me)
    }

    /// Opens the sealed payload as reader `me`, so [`VerifiedEntry::payload`] and
    /// [`VerifiedEntry::opened`] give what it holds. An entry that is not sealed, a stub, an
    /// entry already opened, or one `me` is no reader of comes back as it was.
    pub fn open_as(
        mut self,
        me: &OrgId,
        keys: &DecryptionKeys,
    ) -> Result<VerifiedEntry, Box<(VerifiedEntry, OpenFailure)>> {
        if !self.is_sealed() || self.opened().is_some() || !self.is_reader(me) {
            return Ok(self);
        }
        let Some(bytes) = self.raw().payload.as_ref() else {
            return Ok(self);
        };
        let (origin, seq) = (self.header().origin.clone(), self.header().seq);
        let recipients = &self.header().distribution.recipients;
        let inner = match open(&origin, recipients, me, bytes, keys) {
            Ok(inner) => inner,
            Err(error) => return Err(Box::new((self, OpenFailure::Open { origin, seq, error }))),
        };
        let payload = check_opened(&inner).and_then(|()| match decode_content(&inner)? {
            Content::Indicator(payload) => Ok(payload),
            Content::Control(_) | Content::Sealed => Err(PayloadDefect::SealedControl),
        });
        match payload {
            Ok(payload) => {
                self.set_opened(inner, payload);
                Ok(self)
            }
            Err(defect) => Err(Box::new((
                self,
                OpenFailure::Payload {
                    origin,
                    seq,
                    defect,
                },
            ))),
        }
    }
}

/// A sealed payload opens to a padded payload: a bucket long, and small enough to be sealed.
pub(crate) fn check_opened(inner: &[u8]) -> Result<(), PayloadDefect> {
    if inner.len() > MAX_SEALED_PLAINTEXT || !is_bucket(inner.len() as u64) {
        return Err(PayloadDefect::SealedUnpadded(inner.len()));
    }
    Ok(())
}
