//! The audit trail of API access as plain data: one record per API call (who, what, how many
//! values, the result, keyed digests of the values), its canonical line encoding in a hash
//! chain, the chain check that names the line where a trail was edited, cut or reordered, and
//! the search filter. No I/O: the node writes the lines and the CLI reads them.
//!
//! A trail is a sequence of files `trail-NNNNNN.jsonl`, one record per line; every record
//! carries a `seq` (1, 2, … across files), the `hash` of the previous record (`prev`, zero for
//! the first) and its own `hash`. A separate head (the last durable seq and hash) anchors the
//! end, so removing the last records or files is seen too. A trail whose earliest files were
//! archived begins where its [`Start`] says (the first file kept, and the last archived record
//! its first record links to); the archive, a trail of its own, ends at that record.

mod chain;
mod digest;
mod filter;
mod record;

pub use chain::{Break, Checker, Defect, Summary};
pub use digest::{AuditKey, ValueDigest, KEY_LEN};
pub use filter::Filter;
pub use record::{
    file_name, file_number, parse_line, seal_into, Call, Caller, Head, LineError, Record, Sealed,
    Start, DIGESTS_PER_RECORD,
};
