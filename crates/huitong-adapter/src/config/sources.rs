//! The `source` table of a resource for the sources of the `huitong-sources` crate (CSV files,
//! SQL databases, HTTP APIs), and the checks that need no I/O: names, identifiers, URL
//! templates, placeholders, limits. Secrets, files and connections are checked when the sources
//! are loaded.

use std::collections::BTreeMap;
use std::path::PathBuf;

use huitong_core::{FieldName, FieldSpec};
use serde::{Deserialize, Serialize};

/// `kind = "csv"`: a CSV file with a header row, reloaded when it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// Relative to the configuration file's directory.
    pub path: PathBuf,
    /// One ASCII character; `,` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// Header name for a field whose column is not named after it, e.g. `{ name = "姓名" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
}

/// `kind = "sql"`: a table, view or query of a PostgreSQL, MySQL/MariaDB or SQLite database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// Connection URL without a password, e.g. `postgres://huitong@db.internal/hr` or
    /// `sqlite:registry.db` (relative to the configuration file's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A file holding the connection URL (which may carry the password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// An environment variable holding the connection URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// A file holding the password, for a URL without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password, for a URL without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// A table or view, optionally with its schema: `household_register`, `hr.persons`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// One SELECT statement whose result is the resource; `:name` placeholders in it are
    /// bound to `params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Values for the `:name` placeholders of `query`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, QueryParam>,
    /// Column for a field not named after it, e.g. `{ id_number = "sfzh" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
    /// Connections in the pool; 5 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Longest wait to connect or for a free connection; 5000 ms when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Longest time one query may take; 5000 ms when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_timeout_ms: Option<u64>,
    /// How changes are detected; without it the resource's changes cannot be watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<SqlChangesConfig>,
}

/// The value of a query placeholder: a string, an integer or a boolean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueryParam {
    Bool(bool),
    Int(i64),
    String(String),
}

/// `changes` of a SQL source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlChangesConfig {
    /// A column (not null) that grows with every insert and update: a sequence number set by
    /// a trigger, or an updated-at timestamp.
    pub column: String,
    /// How often to look for changes; 1000 ms when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<u64>,
    /// PostgreSQL only: a channel to LISTEN on; a NOTIFY on it makes watchers look at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_channel: Option<String>,
}

/// `kind = "http"`: an existing REST API answering JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// URL of one record, with a `{field}` placeholder for each key field.
    pub fetch: String,
    /// URLs for searches, each with `{field}` placeholders for the filters it takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Where the record is in a fetch answer (dotted path, `[n]` for array elements); the
    /// whole body when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Where the array of records is in a search answer; the whole body when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// Path within a record for a field not found under its own name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub paths: BTreeMap<String, String>,
    /// Header that carries the credential; `Authorization` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    /// A file holding the credential header's value, e.g. `Bearer eyJ…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_file: Option<PathBuf>,
    /// An environment variable holding the credential header's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_env: Option<String>,
    /// PEM file of the CA that signed the API's certificate, besides the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Longest time one request may take; 5000 ms when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

type Problem = (String, String);

/// Checks a CSV source against the resource's fields.
pub(crate) fn check_csv(c: &CsvConfig, fields: &[FieldSpec], at: &str) -> Result<(), Problem> {
    if c.path.as_os_str().is_empty() {
        return Err((
            format!("{at}.path"),
            "it is empty; give the CSV file, relative to this file's directory".into(),
        ));
    }
    if let Some(d) = &c.delimiter {
        csv_delimiter(d).map_err(|p| (format!("{at}.delimiter"), p))?;
    }
    for (field, header) in &c.columns {
        known_field(field, fields).map_err(|p| (format!("{at}.columns.{field}"), p))?;
        if header.trim().is_empty() {
            return Err((
                format!("{at}.columns.{field}"),
                "it is empty; give the header of the field's column".into(),
            ));
        }
    }
    Ok(())
}

/// The delimiter byte of a CSV source.
pub fn csv_delimiter(d: &str) -> Result<u8, String> {
    match d.as_bytes() {
        [b] if b.is_ascii() && !matches!(b, b'"' | b'\r' | b'\n') => Ok(*b),
        _ => Err(format!(
            "{:?} is not one ASCII character other than a quote or line break, e.g. \",\" or \";\"",
            d.chars().take(20).collect::<String>()
        )),
    }
}

/// Checks a SQL source against the resource's fields.
pub(crate) fn check_sql(c: &SqlConfig, fields: &[FieldSpec], at: &str) -> Result<(), Problem> {
    let given = [c.url.is_some(), c.url_file.is_some(), c.url_env.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err((
            at.to_owned(),
            "give exactly one of url, url_file and url_env: where the connection URL is".into(),
        ));
    }
    if let Some(url) = &c.url {
        check_database_url(url, true).map_err(|p| (format!("{at}.url"), p))?;
    }
    if let Some(v) = &c.url_env {
        env_name(v).map_err(|p| (format!("{at}.url_env"), p))?;
    }
    if c.password_file.is_some() && c.password_env.is_some() {
        return Err((
            at.to_owned(),
            "give at most one of password_file and password_env".into(),
        ));
    }
    if let Some(v) = &c.password_env {
        env_name(v).map_err(|p| (format!("{at}.password_env"), p))?;
    }
    match (&c.table, &c.query) {
        (Some(t), None) => {
            sql_table_name(t).map_err(|p| (format!("{at}.table"), p))?;
            if !c.params.is_empty() {
                return Err((
                    format!("{at}.params"),
                    "params are for the placeholders of a query; this source names a table".into(),
                ));
            }
        }
        (None, Some(q)) => {
            let names = query_placeholders(q).map_err(|p| (format!("{at}.query"), p))?;
            for name in &names {
                if !c.params.contains_key(name) {
                    return Err((
                        format!("{at}.query"),
                        format!("its placeholder :{name} has no value in params"),
                    ));
                }
            }
            for name in c.params.keys() {
                if !names.contains(name) {
                    return Err((
                        format!("{at}.params.{name}"),
                        format!("the query has no placeholder :{name}"),
                    ));
                }
            }
        }
        _ => {
            return Err((
                at.to_owned(),
                "give exactly one of table (a table or view) and query (a SELECT statement)".into(),
            ));
        }
    }
    for (field, column) in &c.columns {
        known_field(field, fields).map_err(|p| (format!("{at}.columns.{field}"), p))?;
        sql_identifier(column).map_err(|p| (format!("{at}.columns.{field}"), p))?;
    }
    if let Some(n) = c.max_connections
        && !(1..=100).contains(&n)
    {
        return Err((
            format!("{at}.max_connections"),
            format!("{n} is out of range; use 1 to 100"),
        ));
    }
    for (key, ms) in [
        ("connect_timeout_ms", c.connect_timeout_ms),
        ("query_timeout_ms", c.query_timeout_ms),
    ] {
        check_millis(ms).map_err(|p| (format!("{at}.{key}"), p))?;
    }
    if let Some(ch) = &c.changes {
        let at = format!("{at}.changes");
        sql_identifier(&ch.column).map_err(|p| (format!("{at}.column"), p))?;
        check_millis(ch.poll_interval_ms).map_err(|p| (format!("{at}.poll_interval_ms"), p))?;
        if let Some(n) = &ch.notify_channel {
            sql_identifier(n).map_err(|p| (format!("{at}.notify_channel"), p))?;
            if let Some(url) = &c.url
                && !is_postgres_url(url)
            {
                return Err((
                    format!("{at}.notify_channel"),
                    "LISTEN/NOTIFY is PostgreSQL's; this source's url is not a PostgreSQL one"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

/// Checks an HTTP source against the resource's fields and key.
pub(crate) fn check_http(
    c: &HttpConfig,
    fields: &[FieldSpec],
    key_fields: &[FieldName],
    at: &str,
) -> Result<(), Problem> {
    let placeholders = url_template(&c.fetch, fields).map_err(|p| (format!("{at}.fetch"), p))?;
    let mut want: Vec<&str> = key_fields.iter().map(FieldName::as_str).collect();
    let mut got: Vec<&str> = placeholders.iter().map(String::as_str).collect();
    want.sort_unstable();
    got.sort_unstable();
    got.dedup();
    if want != got {
        return Err((
            format!("{at}.fetch"),
            format!(
                "its placeholders must be the key fields, each once: {{{}}}",
                want.join("}, {")
            ),
        ));
    }
    for (i, t) in c.search.iter().enumerate() {
        url_template(t, fields).map_err(|p| (format!("{at}.search[{i}]"), p))?;
    }
    for (key, path) in [("record", &c.record), ("records", &c.records)] {
        if let Some(p) = path {
            json_path(p).map_err(|p| (format!("{at}.{key}"), p))?;
        }
    }
    for (field, path) in &c.paths {
        known_field(field, fields).map_err(|p| (format!("{at}.paths.{field}"), p))?;
        json_path(path).map_err(|p| (format!("{at}.paths.{field}"), p))?;
    }
    if c.auth_file.is_some() && c.auth_env.is_some() {
        return Err((
            at.to_owned(),
            "give at most one of auth_file and auth_env".into(),
        ));
    }
    if let Some(v) = &c.auth_env {
        env_name(v).map_err(|p| (format!("{at}.auth_env"), p))?;
    }
    if let Some(h) = &c.auth_header {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            return Err((
                format!("{at}.auth_header"),
                format!(
                    "{:?} is not an HTTP header name",
                    h.chars().take(40).collect::<String>()
                ),
            ));
        }
        if c.auth_file.is_none() && c.auth_env.is_none() {
            return Err((
                format!("{at}.auth_header"),
                "it is set, but neither auth_file nor auth_env gives its value".into(),
            ));
        }
    }
    check_millis(c.timeout_ms).map_err(|p| (format!("{at}.timeout_ms"), p))?;
    Ok(())
}

fn known_field(name: &str, fields: &[FieldSpec]) -> Result<(), String> {
    if fields.iter().any(|f| f.name.as_str() == name) {
        return Ok(());
    }
    let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    Err(format!(
        "{:?} is not one of the resource's fields ({})",
        name.chars().take(64).collect::<String>(),
        known.join(", ")
    ))
}

fn check_millis(ms: Option<u64>) -> Result<(), String> {
    match ms {
        Some(ms) if !(1..=3_600_000).contains(&ms) => Err(format!(
            "{ms} is out of range; use 1 to 3600000 milliseconds"
        )),
        _ => Ok(()),
    }
}

/// An environment variable's name.
fn env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not an environment variable name (letters, digits and '_')",
            name.chars().take(64).collect::<String>()
        ))
    }
}

/// Whether a database URL is PostgreSQL's.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Checks a database URL's scheme, and that an inline one carries no password (which belongs
/// in a secret file or variable, not in a config file that is copied and shown around).
/// Problems never quote the URL.
pub fn check_database_url(url: &str, inline: bool) -> Result<(), String> {
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    if !matches!(
        scheme,
        "postgres" | "postgresql" | "mysql" | "mariadb" | "sqlite"
    ) {
        return Err("it is not a postgres://, mysql://, mariadb:// or sqlite: URL".into());
    }
    if inline && let Some(rest) = url.split_once("://").map(|(_, r)| r) {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && userinfo.contains(':')
        {
            return Err(
                "it holds a password; put the URL in url_file or url_env, or the password in \
                 password_file or password_env"
                    .into(),
            );
        }
    }
    Ok(())
}

/// A table or view name: an identifier, optionally `schema.` first.
pub fn sql_table_name(name: &str) -> Result<Vec<&str>, String> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 {
        return Err(format!(
            "{:?} is not a table name: use `table` or `schema.table`",
            name.chars().take(64).collect::<String>()
        ));
    }
    for p in &parts {
        sql_identifier(p)?;
    }
    Ok(parts)
}

/// A column, table or channel name: ASCII letters, digits and `_`, not starting with a digit,
/// at most 63 bytes. Narrower than SQL allows, so that a name from the config file can be
/// quoted the same way in every dialect and can never carry SQL.
pub fn sql_identifier(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid SQL name: use ASCII letters, digits and '_', not starting \
             with a digit, at most 63 characters",
            name.chars().take(64).collect::<String>()
        ))
    }
}

/// The `:name` placeholders of a query, in order of first appearance. Text in quotes and
/// PostgreSQL's `::type` casts are not placeholders.
pub fn query_placeholders(query: &str) -> Result<Vec<String>, String> {
    let q = query.trim();
    let first = q
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if first != "select" && first != "with" {
        return Err("it must be one SELECT statement (or WITH … SELECT)".into());
    }
    let mut names = Vec::new();
    for piece in query_pieces(q) {
        match piece {
            QueryPiece::Text(t) if t.contains(';') => {
                return Err(
                    "it holds a ';'; give one SELECT statement, without a ';' at the end".into(),
                );
            }
            QueryPiece::Param(name) => {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
            QueryPiece::Text(_) | QueryPiece::Quoted(_) => {}
        }
    }
    Ok(names)
}

/// A query cut into SQL text, quoted text or comments, and `:name` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryPiece<'a> {
    Text(&'a str),
    /// '…', "…" or `…` quoted text, or a `--` comment: copied as it is.
    Quoted(&'a str),
    Param(&'a str),
}

/// Cuts a query into pieces; `::` casts are text.
pub fn query_pieces(q: &str) -> Vec<QueryPiece<'_>> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    fn flush<'a>(out: &mut Vec<QueryPiece<'a>>, q: &'a str, from: usize, to: usize) {
        if from < to {
            out.push(QueryPiece::Text(&q[from..to]));
        }
    }
    while i < b.len() {
        let special_end = match b[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                let mut j = i + 1;
                while j < b.len() && b[j] != quote {
                    j += 1;
                }
                Some((j + 1).min(b.len()))
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let mut j = i;
                while j < b.len() && b[j] != b'\n' {
                    j += 1;
                }
                Some(j)
            }
            _ => None,
        };
        if let Some(end) = special_end {
            flush(&mut out, q, start, i);
            out.push(QueryPiece::Quoted(&q[i..end]));
            start = end;
            i = end;
            continue;
        }
        match b[i] {
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') =>
            {
                let mut end = i + 1;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                flush(&mut out, q, start, i);
                out.push(QueryPiece::Param(&q[i + 1..end]));
                start = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    flush(&mut out, q, start, q.len());
    out
}

/// The `{field}` placeholders of an http(s) URL template, each a resource field.
pub fn url_template(t: &str, fields: &[FieldSpec]) -> Result<Vec<String>, String> {
    if !(t.starts_with("http://") || t.starts_with("https://")) {
        return Err("it must be an http:// or https:// URL".into());
    }
    let mut names = Vec::new();
    for piece in template_pieces(t)? {
        if let TemplatePiece::Field(name) = piece {
            known_field(name, fields)?;
            names.push(name.to_owned());
        }
    }
    // The host must not come from a value: a record key must never choose where the
    // adapter connects.
    let after_scheme = t.find("://").map_or(0, |i| i + 3);
    let authority_end = t[after_scheme..]
        .find(['/', '?'])
        .map_or(t.len(), |i| after_scheme + i);
    if t[..authority_end].contains('{') {
        return Err("placeholders may appear only in the path and query, not the host".into());
    }
    Ok(names)
}

/// A URL template cut into literal text and `{field}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePiece<'a> {
    Text(&'a str),
    Field(&'a str),
}

pub fn template_pieces(t: &str) -> Result<Vec<TemplatePiece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err("it has a '}' without a '{'".into());
        }
        let Some(close) = rest[open..].find('}') else {
            return Err("it has a '{' without a '}'".into());
        };
        if open > 0 {
            out.push(TemplatePiece::Text(&rest[..open]));
        }
        out.push(TemplatePiece::Field(&rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        out.push(TemplatePiece::Text(rest));
    }
    Ok(out)
}

/// A path into JSON: names separated by `.`, with `[n]` for array elements, e.g.
/// `data.person.names[0]`; a leading `$.` is allowed.
pub fn json_path(p: &str) -> Result<Vec<JsonStep>, String> {
    let bad = || {
        format!(
            "{:?} is not a JSON path like data.items or person.names[0]",
            p.chars().take(64).collect::<String>()
        )
    };
    let p = p
        .strip_prefix("$.")
        .unwrap_or(if p == "$" { "" } else { p });
    let mut steps = Vec::new();
    if p.is_empty() {
        return Ok(steps);
    }
    for part in p.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() && rest.is_empty() {
            return Err(bad());
        }
        if !name.is_empty() {
            steps.push(JsonStep::Key(name.to_owned()));
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(bad)?;
            let n: usize = rest[1..close].parse().map_err(|_| bad())?;
            steps.push(JsonStep::Index(n));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(bad());
            }
        }
    }
    Ok(steps)
}

/// One step of a [`json_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonStep {
    Key(String),
    Index(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_skip_quotes_casts_and_comments() {
        let q = "SELECT a::text, ':no' AS x FROM t -- :neither\nWHERE r = :region AND y = :year AND z = :region";
        assert_eq!(query_placeholders(q).unwrap(), vec!["region", "year"]);
        assert!(query_placeholders("DELETE FROM t").is_err());
        assert!(query_placeholders("SELECT 1; DROP TABLE t").is_err());
        assert!(query_placeholders("SELECT ';' AS semi").is_ok());
    }

    #[test]
    fn identifiers_are_narrow() {
        for ok in ["household_register", "_x", "T1"] {
            assert!(sql_identifier(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1x",
            "a b",
            "a\"b",
            "a;--",
            "名字",
            "a.b",
            &"x".repeat(64),
        ] {
            assert!(sql_identifier(bad).is_err(), "{bad}");
        }
        assert_eq!(sql_table_name("hr.persons").unwrap(), vec!["hr", "persons"]);
        assert!(sql_table_name("a.b.c").is_err());
    }

    #[test]
    fn inline_urls_must_not_hold_passwords() {
        assert!(check_database_url("postgres://huitong@db/hr", true).is_ok());
        assert!(check_database_url("sqlite:data.db", true).is_ok());
        let e = check_database_url("postgres://u:secret@db/hr", true).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(check_database_url("postgres://u:secret@db/hr", false).is_ok());
        assert!(check_database_url("oracle://db", true).is_err());
    }

    /// A one-resource configuration whose source table is `source`.
    fn with_source(source: &str) -> String {
        format!(
            "dept = \"public-security\"\ntls = {{ ca = \"c\", cert = \"c\", key = \"k\" }}\n\
             [[resources]]\nname = \"persons\"\ntitle = \"P\"\nsharing_class = \"open\"\n\
             key_fields = [\"id_number\"]\n{source}\n\
             [[resources.fields]]\nname = \"id_number\"\ntype = \"string\"\nsensitivity = \"public\"\n\
             [[resources.fields]]\nname = \"district\"\ntype = \"string\"\nsensitivity = \"public\"\n"
        )
    }

    #[test]
    fn source_tables_are_checked_with_key_paths() {
        let sql = |rest: &str| with_source(&format!("[resources.source]\nkind = \"sql\"\n{rest}"));
        let cases = [
            (
                sql("table = \"persons\""),
                "resources[0].source: give exactly one of url, url_file and url_env",
            ),
            (
                sql("url = \"sqlite:x.db\"\nurl_env = \"X\"\ntable = \"t\""),
                "resources[0].source: give exactly one of url, url_file and url_env",
            ),
            (
                sql("url = \"sqlite:x.db\""),
                "resources[0].source: give exactly one of table (a table or view) and query",
            ),
            (
                sql("url = \"sqlite:x.db\"\ntable = \"t\"\nquery = \"SELECT 1\""),
                "resources[0].source: give exactly one of table",
            ),
            (
                sql("url = \"sqlite:x.db\"\nquery = \"SELECT * FROM t WHERE r = :region\""),
                "resources[0].source.query: its placeholder :region has no value in params",
            ),
            (
                sql("url = \"sqlite:x.db\"\nquery = \"SELECT * FROM t\"\nparams = { region = 1 }"),
                "resources[0].source.params.region: the query has no placeholder :region",
            ),
            (
                sql("url = \"sqlite:x.db\"\nquery = \"UPDATE t SET a = 1\""),
                "resources[0].source.query: it must be one SELECT statement",
            ),
            (
                sql(
                    "url = \"mysql://root@db/hr\"\ntable = \"t\"\nchanges = { column = \"seq\", notify_channel = \"c\" }",
                ),
                "resources[0].source.changes.notify_channel: LISTEN/NOTIFY is PostgreSQL's",
            ),
            (
                sql("url = \"sqlite:x.db\"\ntable = \"t\"\nchanges = { column = \"updated at\" }"),
                "resources[0].source.changes.column: \"updated at\" is not a valid SQL name",
            ),
            (
                sql("url = \"sqlite:x.db\"\ntable = \"t\"\nmax_connections = 0"),
                "resources[0].source.max_connections: 0 is out of range; use 1 to 100",
            ),
            (
                sql("url = \"sqlite:x.db\"\ntable = \"t\"\nquery_timeout_ms = 0"),
                "resources[0].source.query_timeout_ms: 0 is out of range",
            ),
            (
                sql("url = \"sqlite:x.db\"\ntable = \"t\"\ncolumns = { salary = \"s\" }"),
                "resources[0].source.columns.salary: \"salary\" is not one of the resource's fields (id_number, district)",
            ),
            (
                sql("url = \"sqlite:x.db\"\ntable = \"t\"\nurl_env = \"1X\""),
                "resources[0].source: give exactly one of url",
            ),
            (
                sql("url_env = \"HR DB\"\ntable = \"t\""),
                "resources[0].source.url_env: \"HR DB\" is not an environment variable name",
            ),
            (
                with_source("source = { kind = \"csv\", path = \"x.csv\", delimiter = \"ab\" }"),
                "resources[0].source.delimiter: \"ab\" is not one ASCII character",
            ),
            (
                with_source("source = { kind = \"csv\", path = \"\" }"),
                "resources[0].source.path: it is empty",
            ),
            (
                with_source(
                    "source = { kind = \"csv\", path = \"x.csv\", columns = { name = \"姓名\" } }",
                ),
                "resources[0].source.columns.name: \"name\" is not one of the resource's fields",
            ),
            (
                with_source("source = { kind = \"http\", fetch = \"ftp://h/{id_number}\" }"),
                "resources[0].source.fetch: it must be an http:// or https:// URL",
            ),
            (
                with_source("source = { kind = \"http\", fetch = \"http://h/x\" }"),
                "resources[0].source.fetch: its placeholders must be the key fields, each once: {id_number}",
            ),
            (
                with_source(
                    "source = { kind = \"http\", fetch = \"http://h/{id_number}\", auth_header = \"X-Key\" }",
                ),
                "resources[0].source.auth_header: it is set, but neither auth_file nor auth_env gives its value",
            ),
        ];
        for (text, want) in cases {
            let e = crate::AdapterConfig::from_toml_str(&text, "adapter.toml")
                .err()
                .unwrap_or_else(|| panic!("accepted:\n{text}"))
                .to_string();
            assert!(
                e.starts_with(&format!("adapter.toml: {want}")),
                "{e}\nwanted: {want}"
            );
        }
        // And the good ones load.
        for good in [
            sql(
                "url = \"postgres://huitong@db/hr\"\ntable = \"hr.persons\"\nchanges = { column = \"seq\", notify_channel = \"hr\" }",
            ),
            sql(
                "url_env = \"HR_DB\"\nquery = \"SELECT a::text AS id_number, b AS district FROM t WHERE r = :r\"\nparams = { r = \"110000\" }",
            ),
            with_source(
                "source = { kind = \"csv\", path = \"x.csv\", delimiter = \";\", columns = { district = \"区\" } }",
            ),
            with_source(
                "source = { kind = \"http\", fetch = \"https://api/p/{id_number}?v=1\", search = [\"https://api/p?d={district}\"], auth_env = \"TOKEN\" }",
            ),
        ] {
            if let Err(e) = crate::AdapterConfig::from_toml_str(&good, "adapter.toml") {
                panic!("{e}\n{good}");
            }
        }
    }

    #[test]
    fn json_paths_and_templates_parse() {
        assert_eq!(
            json_path("$.data.items[2].name").unwrap(),
            vec![
                JsonStep::Key("data".into()),
                JsonStep::Key("items".into()),
                JsonStep::Index(2),
                JsonStep::Key("name".into())
            ]
        );
        assert!(json_path("").unwrap().is_empty());
        assert!(json_path("a..b").is_err());
        assert!(json_path("a[x]").is_err());
        assert_eq!(
            template_pieces("http://h/p/{id}?q={name}").unwrap(),
            vec![
                TemplatePiece::Text("http://h/p/"),
                TemplatePiece::Field("id"),
                TemplatePiece::Text("?q="),
                TemplatePiece::Field("name"),
            ]
        );
        assert!(template_pieces("http://h/{id").is_err());
    }
}
