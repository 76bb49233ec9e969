//! The chain check: reads a trail's files in order, line by line, and stops at the first line
//! that shows the trail was edited, cut, reordered or rewritten, naming the file and line.

use crate::record::{file_name, parse_line, Head, LineError, Record, Start};

/// What is wrong with a trail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    #[error("the line is not an audit record ({0}): it was edited")]
    Unreadable(String),
    #[error("record seq {seq} does not hash to the hash it states: it was edited")]
    Edited { seq: u64 },
    #[error(
        "record seq {found} follows seq {after}: the records between were removed (or moved later)"
    )]
    Removed { after: u64, found: u64 },
    #[error(
        "record seq {found} where seq {expected} should follow: records were reordered or repeated"
    )]
    Reordered { expected: u64, found: u64 },
    #[error("record seq {seq} does not link to the record before it: that record was replaced (or this one inserted)")]
    Relinked { seq: u64 },
    #[error("the trail starts at seq {seq}, not {expected}: its first records were removed")]
    StartMissing { seq: u64, expected: u64 },
    #[error("the trail starts with {found}, not {expected}: earlier files were removed")]
    FirstFileMissing { found: String, expected: String },
    #[error("{missing} is missing between {before} and {found}: a file was removed")]
    FileMissing {
        missing: String,
        before: String,
        found: String,
    },
    #[error("the head records seq {head} but the trail ends at seq {last}: its last records or files were removed")]
    EndMissing { head: u64, last: u64 },
    #[error("record seq {seq} is not the one the head records: the trail was rewritten")]
    HeadDiffers { seq: u64 },
    #[error("the trail holds records but its head file is missing: it was removed")]
    NoHead,
}

/// Where a trail breaks: the file and line (1-based) when a line shows it, and the defect.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{defect}", place.as_ref().map(|(f, l)| format!("{f} line {l}: ")).unwrap_or_default())]
pub struct Break {
    pub place: Option<(String, u64)>,
    pub defect: Defect,
}

/// A whole trail that checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub files: u64,
    /// The last record's seq and hash: write it down elsewhere to catch a rewrite of the whole
    /// trail by someone holding the disk.
    pub last: Head,
    /// Where it began, when its earliest files were archived.
    pub start: Option<Start>,
}

/// Checks a trail fed to it file by file ([`Checker::file`]) and line by line.
pub struct Checker {
    head: Option<Head>,
    start: Option<Start>,
    last: Head,
    records: u64,
    files: u64,
    file: Option<(u64, String)>,
}

impl Checker {
    /// A check against the trail's head (`None` when its file is missing), of a trail that
    /// begins at the first file and seq 1.
    pub fn new(head: Option<Head>) -> Checker {
        Checker::starting(head, None)
    }

    /// A check against the trail's head, of a trail that begins where `start` says (its
    /// earliest files archived), or at the first file and seq 1 without one.
    pub fn starting(head: Option<Head>, start: Option<Start>) -> Checker {
        Checker {
            head,
            start,
            last: start.map_or_else(Head::default, |s| s.after),
            records: 0,
            files: 0,
            file: None,
        }
    }

    fn here(&self, line: u64, defect: Defect) -> Break {
        Break {
            place: self.file.as_ref().map(|(_, name)| (name.clone(), line)),
            defect,
        }
    }

    /// The next file, by its number: files must follow each other from the start's (1).
    pub fn file(&mut self, number: u64) -> Result<(), Break> {
        let name = file_name(number);
        let first = self.start.map_or(1, |s| s.file);
        let expected = self.file.as_ref().map_or(first, |(n, _)| n + 1);
        let broken = match &self.file {
            None if number != first => Some(Defect::FirstFileMissing {
                found: name.clone(),
                expected: file_name(first),
            }),
            Some((_, before)) if number != expected => Some(Defect::FileMissing {
                missing: file_name(expected),
                before: before.clone(),
                found: name.clone(),
            }),
            _ => None,
        };
        if let Some(defect) = broken {
            return Err(Break {
                place: None,
                defect,
            });
        }
        self.file = Some((number, name));
        self.files += 1;
        Ok(())
    }

    /// Line `line` (1-based) of the current file, without its newline: its record, if it
    /// follows the one before.
    pub fn line(&mut self, line: u64, text: &str) -> Result<Record, Break> {
        let sealed = parse_line(text).map_err(|e| match e {
            LineError::NotARecord(why) => self.here(line, Defect::Unreadable(why)),
            LineError::HashMismatch => {
                // The seq as the edited line states it, for the message.
                let seq = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v["seq"].as_u64())
                    .unwrap_or(0);
                self.here(line, Defect::Edited { seq })
            }
        })?;
        let r = &sealed.record;
        let expected = self.last.seq + 1;
        if r.seq != expected {
            let defect = match (self.records, r.seq > expected) {
                (0, _) => Defect::StartMissing {
                    seq: r.seq,
                    expected,
                },
                (_, true) => Defect::Removed {
                    after: self.last.seq,
                    found: r.seq,
                },
                (_, false) => Defect::Reordered {
                    expected,
                    found: r.seq,
                },
            };
            return Err(self.here(line, defect));
        }
        if r.prev_hash() != Some(self.last.hash) {
            return Err(self.here(line, Defect::Relinked { seq: r.seq }));
        }
        if let Some(head) = &self.head {
            if head.seq == r.seq && head.hash != sealed.hash {
                return Err(self.here(line, Defect::HeadDiffers { seq: r.seq }));
            }
        }
        self.last = Head {
            seq: r.seq,
            hash: sealed.hash,
        };
        self.records += 1;
        Ok(sealed.record)
    }

    /// After the last line: the trail must reach its head.
    pub fn finish(&self) -> Result<Summary, Break> {
        let at_end = |defect| Break {
            place: None,
            defect,
        };
        match &self.head {
            None if self.records > 0 => return Err(at_end(Defect::NoHead)),
            Some(head) if head.seq > self.last.seq => {
                return Err(at_end(Defect::EndMissing {
                    head: head.seq,
                    last: self.last.seq,
                }))
            }
            _ => {}
        }
        Ok(Summary {
            records: self.records,
            files: self.files,
            last: self.last,
            start: self.start,
        })
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
