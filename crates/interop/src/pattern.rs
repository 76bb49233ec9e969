//! STIX 2.x patterns to mesh indicators and back, for the subset the mesh can represent.
//!
//! The mesh holds single values, so a pattern is accepted only when it says "any of these
//! values": `=` comparisons on the value of an address, domain, URL or e-mail object, or on a
//! file's MD5, SHA-1 or SHA-256, joined by `OR` inside one `[...]` or across `[...] OR [...]`.
//! Parentheses are accepted and ignored, which is sound because `OR` is the only operator left.
//! Everything else (`AND`, `FOLLOWEDBY`, `NOT`, `MATCHES`, `LIKE`, `!=`, `IN`, qualifiers such
//! as `WITHIN` or `START`, other objects and properties) is refused with an error naming it,
//! since dropping half of an `AND` or a time window would make the indicator broader than the
//! producer meant.
//!
//! The parser is one loop over tokens with a small state and two depth counters: there is no
//! recursion for a hostile input to exhaust, and input size and comparison count are bounded.

use intelmesh_core::indicator::{normalize, NormalizeError};
use intelmesh_core::{Indicator, IndicatorType};
use thiserror::Error;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 64 * 1024;
/// Most comparisons accepted in one pattern.
pub const MAX_COMPARISONS: usize = 1024;

/// Why a pattern gives no indicators.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PatternError {
    #[error("pattern is {len} bytes, over the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("pattern has more than {max} comparisons")]
    TooManyComparisons { max: usize },
    #[error("pattern is empty")]
    Empty,
    #[error("pattern syntax error at byte {at}: {reason}")]
    Syntax { at: usize, reason: &'static str },
    #[error("operator {operator} is not supported: only = comparisons joined by OR are")]
    UnsupportedOperator { operator: String },
    #[error("qualifier {qualifier} is not supported: the mesh has no time windows on a match")]
    UnsupportedQualifier { qualifier: String },
    #[error("object path {path} is not supported: the mesh holds ipv4-addr, ipv6-addr, domain-name, url, email-addr values and file MD5/SHA-1/SHA-256 hashes")]
    UnsupportedPath { path: String },
    #[error("comparison value of {path} is not a string literal")]
    UnsupportedValue { path: String },
    #[error("{path} value {value:?} is not valid: {source}")]
    Value {
        path: String,
        value: String,
        source: NormalizeError,
    },
}

#[derive(Debug, PartialEq)]
enum Token {
    OpenBracket,
    CloseBracket,
    OpenParen,
    CloseParen,
    /// A keyword, an object path, a number or a non-string literal, as written.
    Word(String),
    Str(String),
    Op(&'static str),
}

/// Where the parser is: what it expects next.
#[derive(Clone, Copy, PartialEq)]
enum State {
    /// Start of an observation expression: `[` or `(`.
    Observation,
    /// After `]` or `)` outside brackets: `OR`, `)` or the end.
    AfterObservation,
    /// Inside brackets, start of a comparison: a path or `(`.
    Comparison,
    /// After a comparison: `OR`, `)` or `]`.
    AfterComparison,
}

/// The indicators a pattern says to match, canonical and without repeats, in pattern order.
pub fn parse_pattern(pattern: &str) -> Result<Vec<Indicator>, PatternError> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(PatternError::TooLong {
            len: pattern.len(),
            max: MAX_PATTERN_LEN,
        });
    }
    if pattern.trim().is_empty() {
        return Err(PatternError::Empty);
    }
    let mut lexer = Lexer {
        src: pattern,
        at: 0,
    };
    let mut state = State::Observation;
    let mut outer_depth = 0usize;
    let mut inner_depth = 0usize;
    let mut found: Vec<Indicator> = Vec::new();
    let mut comparisons = 0usize;
    loop {
        let at = lexer.at;
        let Some(token) = lexer.next_token()? else {
            if state == State::AfterObservation && outer_depth == 0 {
                return Ok(found);
            }
            return Err(PatternError::Syntax {
                at,
                reason: "pattern ends early",
            });
        };
        let syntax = |reason| PatternError::Syntax { at, reason };
        state = match (state, token) {
            (State::Observation, Token::OpenParen) => {
                outer_depth += 1;
                State::Observation
            }
            (State::Observation, Token::OpenBracket) => State::Comparison,
            (State::Observation, _) => return Err(syntax("'[' expected")),
            (State::Comparison, Token::OpenParen) => {
                inner_depth += 1;
                State::Comparison
            }
            (State::Comparison, Token::Word(word)) if word.eq_ignore_ascii_case("NOT") => {
                return Err(unsupported_operator("NOT"))
            }
            (State::Comparison, Token::Word(path)) => {
                comparisons += 1;
                if comparisons > MAX_COMPARISONS {
                    return Err(PatternError::TooManyComparisons {
                        max: MAX_COMPARISONS,
                    });
                }
                let indicator = comparison(&mut lexer, &path)?;
                if !found.contains(&indicator) {
                    found.push(indicator);
                }
                State::AfterComparison
            }
            (State::Comparison, _) => return Err(syntax("an object path expected")),
            (State::AfterComparison, Token::CloseParen) => {
                inner_depth = inner_depth
                    .checked_sub(1)
                    .ok_or_else(|| syntax("')' without '('"))?;
                State::AfterComparison
            }
            (State::AfterComparison, Token::CloseBracket) if inner_depth == 0 => {
                State::AfterObservation
            }
            (State::AfterComparison, Token::CloseBracket) => {
                return Err(syntax("']' inside an open '('"))
            }
            (State::AfterComparison, Token::Word(word)) => {
                boolean(&word)?;
                State::Comparison
            }
            (State::AfterComparison, _) => return Err(syntax("OR, ')' or ']' expected")),
            (State::AfterObservation, Token::CloseParen) => {
                outer_depth = outer_depth
                    .checked_sub(1)
                    .ok_or_else(|| syntax("')' without '('"))?;
                State::AfterObservation
            }
            (State::AfterObservation, Token::Word(word)) => {
                let upper = word.to_ascii_uppercase();
                if matches!(upper.as_str(), "WITHIN" | "START" | "STOP" | "REPEATS") {
                    return Err(PatternError::UnsupportedQualifier { qualifier: upper });
                }
                boolean(&word)?;
                State::Observation
            }
            (State::AfterObservation, _) => return Err(syntax("OR, ')' or the end expected")),
        };
    }
}

/// Accepts `OR`; names any other joining word as the unsupported operator.
fn boolean(word: &str) -> Result<(), PatternError> {
    if word.eq_ignore_ascii_case("OR") {
        Ok(())
    } else {
        Err(unsupported_operator(&word.to_ascii_uppercase()))
    }
}

fn unsupported_operator(op: &str) -> PatternError {
    PatternError::UnsupportedOperator {
        operator: op.to_owned(),
    }
}

/// The rest of a comparison once its path is read: the operator and a string value.
fn comparison(lexer: &mut Lexer<'_>, path: &str) -> Result<Indicator, PatternError> {
    let at = lexer.at;
    let op = match lexer.next_token()? {
        Some(Token::Op(op)) => op.to_owned(),
        Some(Token::Word(word)) => {
            // `NOT MATCHES`, `LIKE`, `IN`, `ISSUBSET`...: name the operator, not a syntax slip.
            return Err(unsupported_operator(&word.to_ascii_uppercase()));
        }
        _ => {
            return Err(PatternError::Syntax {
                at,
                reason: "comparison operator expected",
            })
        }
    };
    if op != "=" {
        return Err(unsupported_operator(&op));
    }
    let ty = path_type(path)?;
    let value = match lexer.next_token()? {
        Some(Token::Str(value)) => value,
        _ => {
            return Err(PatternError::UnsupportedValue {
                path: path.to_owned(),
            })
        }
    };
    // An address property holding a block is how STIX writes a CIDR.
    let ty = match ty {
        IndicatorType::Ipv4 | IndicatorType::Ipv6 if value.contains('/') => IndicatorType::Cidr,
        ty => ty,
    };
    normalize(ty, &value).map_err(|source| PatternError::Value {
        path: path.to_owned(),
        value,
        source,
    })
}

/// The indicator type an object path compares, accepting the hash-name spellings seen in
/// real feeds (`'SHA-256'`, `SHA256`, `sha256`, `MD5`, `'md5'`).
fn path_type(path: &str) -> Result<IndicatorType, PatternError> {
    let unsupported = || PatternError::UnsupportedPath {
        path: path.to_owned(),
    };
    let (object, property) = path.split_once(':').ok_or_else(unsupported)?;
    let object = object.to_ascii_lowercase();
    let ty = match (object.as_str(), property) {
        ("ipv4-addr", "value") => IndicatorType::Ipv4,
        ("ipv6-addr", "value") => IndicatorType::Ipv6,
        ("domain-name", "value") => IndicatorType::Domain,
        ("url", "value") => IndicatorType::Url,
        ("email-addr", "value") => IndicatorType::Email,
        ("file", property) => {
            let name = property.strip_prefix("hashes.").ok_or_else(unsupported)?;
            let name = name.trim_matches('\'');
            let name: String = name
                .chars()
                .filter(|c| !matches!(c, '-' | '_'))
                .map(|c| c.to_ascii_lowercase())
                .collect();
            match name.as_str() {
                "md5" => IndicatorType::Md5,
                "sha1" => IndicatorType::Sha1,
                "sha256" => IndicatorType::Sha256,
                _ => return Err(unsupported()),
            }
        }
        _ => return Err(unsupported()),
    };
    Ok(ty)
}

/// The pattern that matches exactly `indicator`: `[ipv4-addr:value = '1.2.3.4']`, a CIDR as
/// its address type's value, a hash as `file:hashes.'SHA-256'`.
pub fn pattern_of(indicator: &Indicator) -> String {
    let path = match indicator.ty() {
        IndicatorType::Ipv4 => "ipv4-addr:value",
        IndicatorType::Ipv6 => "ipv6-addr:value",
        IndicatorType::Cidr if indicator.value().contains(':') => "ipv6-addr:value",
        IndicatorType::Cidr => "ipv4-addr:value",
        IndicatorType::Domain => "domain-name:value",
        IndicatorType::Url => "url:value",
        IndicatorType::Email => "email-addr:value",
        IndicatorType::Md5 => "file:hashes.MD5",
        IndicatorType::Sha1 => "file:hashes.'SHA-1'",
        IndicatorType::Sha256 => "file:hashes.'SHA-256'",
    };
    format!("[{path} = '{}']", escape(indicator.value()))
}

/// A STIX string literal's body: backslash and quote are the two characters it escapes.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

struct Lexer<'a> {
    src: &'a str,
    at: usize,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        self.src.get(self.at..).unwrap_or_default()
    }

    fn next_token(&mut self) -> Result<Option<Token>, PatternError> {
        let skipped = self.rest().len() - self.rest().trim_start().len();
        self.at += skipped;
        let Some(c) = self.rest().chars().next() else {
            return Ok(None);
        };
        let single = match c {
            '[' => Some(Token::OpenBracket),
            ']' => Some(Token::CloseBracket),
            '(' => Some(Token::OpenParen),
            ')' => Some(Token::CloseParen),
            _ => None,
        };
        if let Some(token) = single {
            self.at += 1;
            return Ok(Some(token));
        }
        if c == '\'' {
            self.at += 1;
            return self.string().map(|s| Some(Token::Str(s)));
        }
        for op in ["!=", "<=", ">=", "=", "<", ">"] {
            if self.rest().starts_with(op) {
                self.at += op.len();
                return Ok(Some(Token::Op(op)));
            }
        }
        if is_word_char(c) {
            return self.word().map(|w| Some(Token::Word(w)));
        }
        Err(PatternError::Syntax {
            at: self.at,
            reason: "unexpected character",
        })
    }

    /// A run of path characters; a quoted segment right after a `.` (`hashes.'SHA-256'`) or a
    /// type prefix (`t'...'`, `h'...'`, `b'...'`) belongs to the word.
    fn word(&mut self) -> Result<String, PatternError> {
        let mut word = String::new();
        while let Some(c) = self.rest().chars().next() {
            if is_word_char(c) {
                word.push(c);
                self.at += c.len_utf8();
            } else if let Some(index) = list_index(self.rest()) {
                // `to_refs[*]`, `values[0]`: part of a path, not an observation bracket.
                word.push_str(index);
                self.at += index.len();
            } else if c == '\'' && (word.ends_with('.') || matches!(word.as_str(), "t" | "h" | "b"))
            {
                self.at += 1;
                let inner = self.string()?;
                word.push('\'');
                word.push_str(&inner);
                word.push('\'');
            } else {
                break;
            }
        }
        Ok(word)
    }

    /// The body of a string literal whose opening quote was consumed.
    fn string(&mut self) -> Result<String, PatternError> {
        let start = self.at;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => {
                    self.at += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('\\' | '\''))) => out.push(e),
                    _ => {
                        return Err(PatternError::Syntax {
                            at: start + i,
                            reason: "only \\\\ and \\' are escapes in a string",
                        })
                    }
                },
                c => out.push(c),
            }
        }
        Err(PatternError::Syntax {
            at: start,
            reason: "unterminated string",
        })
    }
}

/// A list index at the start of `rest`, `[*]` or `[digits]`.
fn list_index(rest: &str) -> Option<&str> {
    let inner = rest.strip_prefix('[')?;
    let end = inner.find(']')?;
    let body = inner.get(..end)?;
    let ok = body == "*" || (!body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| rest.get(..end + 2)).flatten()
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | '*' | '+')
}

#[cfg(test)]
#[path = "pattern_tests.rs"]
mod tests;
