//! [`HttpSource`]: resources served by an existing REST API that answers JSON.
//!
//! A fetch fills the `fetch` URL template with the key (each value percent-encoded, so a value
//! can never add a path segment or a query parameter) and reads the record at the `record`
//! path of the answer; 404, or an answer whose record has another key, means no such record. A
//! search uses the first `search` template whose placeholders are all among the filters, reads
//! the array at `records`, and keeps the records equal to every filter (the API may match
//! loosely); pages are cut by the adapter. Field values are read from the JSON path `paths`
//! gives, or from the member named after the field; numbers and booleans written as strings
//! are accepted.
//!
//! Connection failures, timeouts, 429 and 5xx answers are UNAVAILABLE; other answers the
//! adapter cannot use are its fault (INTERNAL), logged without the URL, which holds key values.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue, USER_AGENT};
use http_body_util::{BodyExt, Empty, Limited};
use huitong_adapter::config::HttpConfig;
use huitong_adapter::config::sources::{JsonStep, TemplatePiece, json_path, template_pieces};
use huitong_adapter::{Page, PageRequest, Record, Source, SourceError, Value};
use huitong_core::{FieldName, FieldType, ResourceName, ResourceSpec, ValueKind};
use huitong_proto::v1::value::Kind;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value as J, json};

use crate::Place;
use crate::error::Error;
use crate::secret;
use crate::token::{self, Sealer};

/// Everything but RFC 3986's unreserved characters is encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Largest answer read; a bigger one is the API's fault or a wrong URL.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Resources served by REST APIs. See the module documentation.
pub struct HttpSource {
    apis: HashMap<ResourceName, Arc<Api>>,
    order: Vec<ResourceName>,
    sealer: Sealer,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("resources", &self.order)
            .finish_non_exhaustive()
    }
}

struct Api {
    spec: ResourceSpec,
    client: HttpClient,
    fetch: Template,
    search: Vec<Template>,
    record: Vec<JsonStep>,
    records: Vec<JsonStep>,
    /// The path of each field within a record, in field order.
    paths: Vec<Vec<JsonStep>>,
    auth: Option<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

#[derive(Debug, Clone)]
struct Template {
    pieces: Vec<Piece>,
    /// The fields of its placeholders, sorted.
    fields: Vec<String>,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Field(String),
}

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let pieces: Vec<Piece> = template_pieces(text)?
            .into_iter()
            .map(|p| match p {
                TemplatePiece::Text(t) => Piece::Text(t.to_owned()),
                TemplatePiece::Field(f) => Piece::Field(f.to_owned()),
            })
            .collect();
        let mut fields: Vec<String> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Field(f) => Some(f.clone()),
                Piece::Text(_) => None,
            })
            .collect();
        fields.sort();
        fields.dedup();
        Ok(Template { pieces, fields })
    }

    /// The URL with each placeholder replaced by its value, percent-encoded; `None` if a value
    /// is missing or null.
    fn fill(&self, values: &[(FieldName, Value)]) -> Option<String> {
        let mut url = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => url.push_str(t),
                Piece::Field(f) => {
                    let (_, v) = values.iter().find(|(n, _)| n.as_str() == f)?;
                    url.extend(utf8_percent_encode(&text_of(v)?, ENCODE));
                }
            }
        }
        Some(url)
    }
}

/// A value as it goes into a URL.
fn text_of(v: &Value) -> Option<String> {
    Some(match &v.kind {
        None | Some(Kind::NullValue(_)) => return None,
        Some(Kind::StringValue(s)) => s.clone(),
        Some(Kind::IntValue(i)) => i.to_string(),
        Some(Kind::DoubleValue(d)) => d.to_string(),
        Some(Kind::BoolValue(b)) => b.to_string(),
        Some(Kind::BytesValue(b)) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        Some(Kind::DateValue(d)) => huitong_proto::value::format_date(d),
        Some(Kind::TimestampValue(t)) => huitong_proto::value::format_timestamp(t),
    })
}

impl HttpSource {
    /// Checks each resource's options, reads its credential and CA file, and builds its
    /// client. Connects to nothing.
    pub(crate) fn load(resources: Vec<(ResourceSpec, HttpConfig, Place)>) -> Result<Self, Error> {
        let sealer = Sealer::new()
            .map_err(|p| huitong_adapter::ConfigError::new(std::path::Path::new(""), None, p))?;
        let mut apis = HashMap::new();
        let mut order = Vec::new();
        for (spec, c, at) in resources {
            let api = api(spec, &c, &at)?;
            order.push(api.spec.id().name().clone());
            apis.insert(api.spec.id().name().clone(), Arc::new(api));
        }
        Ok(Self {
            apis,
            order,
            sealer,
        })
    }

    fn api(&self, resource: &ResourceName) -> Result<&Arc<Api>, SourceError> {
        self.apis
            .get(resource)
            .ok_or_else(|| SourceError::Internal(format!("no API is configured for {resource}")))
    }
}

fn api(spec: ResourceSpec, c: &HttpConfig, at: &Place) -> Result<Api, Error> {
    let fetch = Template::parse(&c.fetch).map_err(|p| at.error("fetch", p))?;
    let search = c
        .search
        .iter()
        .enumerate()
        .map(|(i, t)| Template::parse(t).map_err(|p| at.error(&format!("search[{i}]"), p)))
        .collect::<Result<Vec<_>, _>>()?;
    let path = |key: &str, p: Option<&String>| -> Result<Vec<JsonStep>, Error> {
        Ok(match p {
            None => Vec::new(),
            Some(p) => json_path(p).map_err(|e| at.error(key, e))?,
        })
    };
    let record = path("record", c.record.as_ref())?;
    let records = path("records", c.records.as_ref())?;
    let paths = spec
        .fields()
        .iter()
        .map(|f| match c.paths.get(f.name.as_str()) {
            Some(p) => json_path(p).map_err(|e| at.error(&format!("paths.{}", f.name), e).into()),
            None => Ok(vec![JsonStep::Key(f.name.to_string())]),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let credential = secret::read(
        at,
        c.auth_file.as_deref(),
        "auth_file",
        c.auth_env.as_deref(),
        "auth_env",
    )?;
    let auth = match credential {
        None => None,
        Some(s) => {
            let name = match &c.auth_header {
                None => AUTHORIZATION,
                Some(h) => HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| at.error("auth_header", "it is not an HTTP header name"))?,
            };
            let key = if c.auth_file.is_some() {
                "auth_file"
            } else {
                "auth_env"
            };
            let mut value = HeaderValue::from_str(s.expose().trim())
                .map_err(|_| at.error(key, "it holds characters an HTTP header cannot carry"))?;
            // Kept out of hyper's debug output and HTTP/2 header compression.
            value.set_sensitive(true);
            Some((name, value))
        }
    };
    let client = client(c, at)?;
    Ok(Api {
        spec,
        client,
        fetch,
        search,
        record,
        records,
        paths,
        auth,
        timeout: Duration::from_millis(c.timeout_ms.unwrap_or(5000)),
    })
}

/// An HTTP/1.1 client for http and https, trusting the public roots and `ca_file`.
fn client(c: &HttpConfig, at: &Place) -> Result<HttpClient, Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = &c.ca_file {
        let path = at.dir.join(file);
        let pem = std::fs::read(&path)
            .map_err(|e| at.error("ca_file", format!("cannot read {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|_| {
                at.error(
                    "ca_file",
                    format!("{} is not a PEM certificate file", path.display()),
                )
            })?;
            roots.add(cert).map_err(|e| {
                at.error(
                    "ca_file",
                    format!("{}: a certificate in it is not usable: {e}", path.display()),
                )
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(at
                .error(
                    "ca_file",
                    format!("{} holds no certificate", path.display()),
                )
                .into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| at.error("", format!("TLS cannot be set up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_millis(c.timeout_ms.unwrap_or(5000))));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

impl Api {
    /// GETs a URL built from a template: the JSON answer, or `None` for 404.
    async fn get(&self, url: &str) -> Result<Option<J>, SourceError> {
        let uri: http::Uri = url.parse().map_err(|_| {
            SourceError::Internal(format!(
                "a URL built for {} is not valid; check its template",
                self.spec.id()
            ))
        })?;
        let mut req = http::Request::get(uri)
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("huitong-adapter/", env!("CARGO_PKG_VERSION")),
            );
        if let Some((name, value)) = &self.auth {
            req = req.header(name, value.clone());
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| SourceError::Internal(format!("cannot build a request: {e}")))?;
        let answer = async {
            let resp = self.client.request(req).await.map_err(|e| {
                SourceError::Unavailable(format!("the API cannot be reached: {}", chain(&e)))
            })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| SourceError::Unavailable(format!("the API's answer broke off: {e}")))?
                .to_bytes();
            Ok::<_, SourceError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| {
                SourceError::Unavailable(format!(
                    "the API did not answer within {} ms",
                    self.timeout.as_millis()
                ))
            })??;
        match status.as_u16() {
            200..=299 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| SourceError::Internal(format!("the API's answer is not JSON: {e}"))),
            404 => Ok(None),
            401 | 403 => Err(SourceError::Internal(format!(
                "the API refused the adapter's credentials (HTTP {status}); check auth_file or auth_env"
            ))),
            408 | 429 | 500..=599 => Err(SourceError::Unavailable(format!(
                "the API answered HTTP {status}"
            ))),
            _ => Err(SourceError::Internal(format!(
                "the API answered HTTP {status}; check the URL templates"
            ))),
        }
    }

    /// The record an object of the API's answer describes.
    fn record(&self, object: &J) -> Result<Record, SourceError> {
        let mut r = Record::default();
        for (f, path) in self.spec.fields().iter().zip(&self.paths) {
            let value = match walk(object, path) {
                None | Some(J::Null) => Value::null(),
                Some(j) => lenient(j, f.ty).ok_or_else(|| {
                    SourceError::Internal(format!(
                        "the API's value for field {} of {} is not of type {}",
                        f.name,
                        self.spec.id(),
                        f.ty
                    ))
                })?,
            };
            r.fields.insert(f.name.to_string(), value);
        }
        Ok(r)
    }
}

/// An error with its causes, which hyper keeps apart ("client error (Connect)" alone says
/// little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn walk<'a>(mut j: &'a J, path: &[JsonStep]) -> Option<&'a J> {
    for step in path {
        j = match step {
            JsonStep::Key(k) => j.get(k)?,
            JsonStep::Index(i) => j.get(i)?,
        };
    }
    Some(j)
}

/// A JSON value as a value of type `ty`, accepting numbers and booleans written as strings
/// and numbers where text is expected.
fn lenient(j: &J, ty: FieldType) -> Option<Value> {
    if let Ok(v) = Value::from_json(j, ty) {
        return Some(v);
    }
    match (j, ty) {
        (J::String(s), _) => Value::parse_text(s.trim(), ty).ok(),
        (J::Number(n), FieldType::String) => Some(Value::string(n.to_string())),
        (J::Bool(b), FieldType::String) => Some(Value::string(b.to_string())),
        _ => None,
    }
}

#[tonic::async_trait]
impl Source for HttpSource {
    fn resources(&self) -> Vec<ResourceSpec> {
        self.order
            .iter()
            .filter_map(|n| self.apis.get(n))
            .map(|a| a.spec.clone())
            .collect()
    }

    fn kind(&self) -> &str {
        "http"
    }

    async fn fetch(
        &self,
        resource: &ResourceName,
        key: &[(FieldName, Value)],
        _fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        let api = self.api(resource)?;
        let Some(url) = api.fetch.fill(key) else {
            return Ok(None);
        };
        let Some(answer) = api.get(&url).await? else {
            return Ok(None);
        };
        let object = match walk(&answer, &api.record) {
            None | Some(J::Null) => return Ok(None),
            Some(o @ J::Object(_)) => o,
            Some(_) => {
                return Err(SourceError::Internal(format!(
                    "the API's answer for {} has no object at its record path",
                    api.spec.id()
                )));
            }
        };
        let record = api.record(object)?;
        // An API that answers with another record (a fuzzy match, a default) has none with
        // this key.
        let same = key
            .iter()
            .all(|(n, v)| record.fields.get(n.as_str()).is_some_and(|got| got == v));
        Ok(same.then_some(record))
    }

    async fn search(
        &self,
        resource: &ResourceName,
        filters: &[(FieldName, Value)],
        _fields: &[FieldName],
        page: PageRequest,
    ) -> Result<Page, SourceError> {
        let api = self.api(resource)?;
        let usable = |t: &&Template| {
            t.fields.iter().all(|f| {
                filters
                    .iter()
                    .any(|(n, v)| n.as_str() == f && v.value_kind() != ValueKind::Null)
            })
        };
        let Some(template) = api
            .search
            .iter()
            .filter(usable)
            .max_by_key(|t| t.fields.len())
        else {
            let accepted: Vec<String> = api
                .search
                .iter()
                .map(|t| format!("({})", t.fields.join(", ")))
                .collect();
            return Err(SourceError::UnsupportedSearch(if accepted.is_empty() {
                format!(
                    "{} cannot be searched, only fetched by its key",
                    api.spec.id()
                )
            } else {
                format!(
                    "{} can be searched only with filters on {}",
                    api.spec.id(),
                    accepted.join(" or ")
                )
            }));
        };
        let digest = token::search_digest(resource.as_str(), filters);
        let start = match page.token.as_deref() {
            None => 0,
            Some(t) => {
                let opened = self.sealer.open(t).ok_or(SourceError::BadPageToken)?;
                if opened["q"].as_str() != Some(digest.as_str()) {
                    return Err(SourceError::BadPageToken);
                }
                opened["o"]
                    .as_u64()
                    .and_then(|o| usize::try_from(o).ok())
                    .ok_or(SourceError::BadPageToken)?
            }
        };
        let url = template
            .fill(filters)
            .ok_or_else(|| SourceError::Internal("a search URL could not be filled".into()))?;
        let Some(answer) = api.get(&url).await? else {
            return Ok(Page::default());
        };
        let items = match walk(&answer, &api.records) {
            None | Some(J::Null) => return Ok(Page::default()),
            Some(J::Array(items)) => items,
            Some(_) => {
                return Err(SourceError::Internal(format!(
                    "the API's search answer for {} has no array at its records path",
                    api.spec.id()
                )));
            }
        };
        let mut matching = Vec::new();
        for item in items {
            let record = api.record(item)?;
            let equal = filters
                .iter()
                .all(|(n, v)| record.fields.get(n.as_str()).is_some_and(|got| got == v));
            if equal {
                matching.push(record);
            }
        }
        if start > matching.len() {
            return Err(SourceError::BadPageToken);
        }
        let size = usize::try_from(page.size).unwrap_or(usize::MAX).max(1);
        let end = start.saturating_add(size).min(matching.len());
        let next_token = if end < matching.len() {
            Some(
                self.sealer
                    .seal(&json!({ "q": digest, "o": end }))
                    .map_err(SourceError::Internal)?,
            )
        } else {
            None
        };
        Ok(Page {
            records: matching.drain(start..end).collect(),
            next_token,
        })
    }
}

#[cfg(test)]
mod tests;
