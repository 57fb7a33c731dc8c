//! Validated identifiers: departments, resources, fields, purposes.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::Error;

/// Longest department id or resource name, in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Longest field name, in bytes.
pub const MAX_FIELD_LEN: usize = 64;
/// Longest declared purpose, in characters.
pub const MAX_PURPOSE_CHARS: usize = 200;

/// The shared rule for names: non-empty, at most `max` bytes, a lowercase ASCII letter first,
/// then lowercase letters, digits and `sep`. Names end up in URIs, file names and SQL
/// identifiers, so anything looser would need escaping somewhere.
fn check_name(what: &'static str, s: &str, max: usize, sep: u8) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidId {
            what,
            value: s.chars().take(80).collect(),
            reason,
        })
    };
    if s.is_empty() {
        return bad("it is empty");
    }
    if s.len() > max {
        return bad(if max == MAX_NAME_LEN {
            "it is longer than 63 bytes"
        } else {
            "it is longer than 64 bytes"
        });
    }
    if !s.as_bytes()[0].is_ascii_lowercase() {
        return bad("it must start with a lowercase letter");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == sep)
    {
        return bad(if sep == b'-' {
            "use only lowercase letters, digits and '-'"
        } else {
            "use only lowercase letters, digits and '_'"
        });
    }
    Ok(())
}

/// Department ids and resource names: lowercase words joined by single '-'.
fn check_slug(what: &'static str, s: &str) -> Result<(), Error> {
    check_name(what, s, MAX_NAME_LEN, b'-')?;
    if s.ends_with('-') || s.contains("--") {
        return Err(Error::InvalidId {
            what,
            value: s.chars().take(80).collect(),
            reason: "'-' must separate words",
        });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Parses and validates.
            pub fn new(s: &str) -> Result<Self, Error> {
                $check($what, s)?;
                Ok(Self(Arc::from(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A department, e.g. `public-security`: lowercase words joined by '-'.
    DeptId,
    "department id",
    check_slug
);
string_id!(
    /// A resource's name within its provider, e.g. `household-register`.
    ResourceName,
    "resource name",
    check_slug
);
string_id!(
    /// A field of a resource, e.g. `birth_date`: lowercase letters, digits and '_'.
    FieldName,
    "field name",
    check_field
);

fn check_field(what: &'static str, s: &str) -> Result<(), Error> {
    check_name(what, s, MAX_FIELD_LEN, b'_')
}

/// A catalogue resource: `<dept_id>/<name>`, e.g. `public-security/household-register`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    dept: DeptId,
    name: ResourceName,
}

impl ResourceId {
    pub fn new(dept: DeptId, name: ResourceName) -> Self {
        Self { dept, name }
    }

    /// Parses `<dept_id>/<name>`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let Some((dept, name)) = s.split_once('/') else {
            return Err(Error::InvalidId {
                what: "resource",
                value: s.chars().take(80).collect(),
                reason: "write it as <department>/<name>, e.g. public-security/household-register",
            });
        };
        Ok(Self {
            dept: DeptId::new(dept)?,
            name: ResourceName::new(name)?,
        })
    }

    /// The department that provides the resource.
    pub fn provider(&self) -> &DeptId {
        &self.dept
    }

    pub fn name(&self) -> &ResourceName {
        &self.name
    }
}

impl FromStr for ResourceId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dept, self.name)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Whether `c` shows nothing on its own: whitespace, control characters, and the format
/// characters that render as nothing (zero-width space and joiners, bidirectional marks, word
/// joiner, byte-order mark, soft hyphen, variation selectors, tag characters, Hangul fillers).
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// The one normalisation of written text (purposes, reasons, legal bases): invisible
/// characters ([`is_invisible`]) are trimmed from both ends. A purpose typed with a trailing
/// space or zero-width space is then the same purpose everywhere (grant, query, log), and a
/// text of nothing visible is empty, so refused where text is required.
pub fn trim_text(s: &str) -> &str {
    s.trim_matches(is_invisible)
}

/// The declared reason for an exchange, e.g. "marriage registration": trimmed ([`trim_text`]),
/// non-empty, at most 200 characters, no control characters (it is written to the exchange log
/// as is, and matched exactly against the purposes grants name).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Purpose(Arc<str>);

impl Purpose {
    pub fn new(s: &str) -> Result<Self, Error> {
        let s = trim_text(s);
        if s.is_empty() {
            return Err(Error::InvalidPurpose(
                "declare a purpose: say why the data is needed, e.g. \"marriage registration\"",
            ));
        }
        if s.chars().count() > MAX_PURPOSE_CHARS {
            return Err(Error::InvalidPurpose(
                "the purpose is longer than 200 characters; state it briefly",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(Error::InvalidPurpose(
                "the purpose contains control characters; use plain text",
            ));
        }
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests;
