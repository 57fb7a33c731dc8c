//! Time conversions between std, rustls, rcgen and x509-parser.
//!
//! rcgen takes `time::OffsetDateTime`. The `time` crate is not a direct dependency, so those
//! values are made with x509-parser's `ASN1Time::to_datetime`, which returns the same type.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::time::ASN1Time;

use crate::Error;

pub(crate) const DAY: i64 = 86_400;

/// Seconds since the Unix epoch, negative before it.
pub(crate) fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

pub(crate) fn unix_now() -> i64 {
    unix(SystemTime::now())
}

pub(crate) fn system_time(unix: i64) -> SystemTime {
    let d = Duration::from_secs(unix.unsigned_abs());
    if unix >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// A date for rcgen; call `.to_datetime()` on the result.
pub(crate) fn asn1(unix: i64) -> Result<ASN1Time, Error> {
    ASN1Time::from_timestamp(unix)
        .map_err(|_| Error::InvalidArgument(format!("date {unix} (Unix time) is out of range")))
}

/// `2025-11-26 04:05:00 UTC`: what a person reads in an error message.
pub fn format_utc(t: SystemTime) -> String {
    let secs = unix(t);
    match ASN1Time::from_timestamp(secs) {
        Ok(t) => {
            let d = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            )
        }
        Err(_) => format!("{secs} seconds after 1970-01-01 00:00:00 UTC"),
    }
}

#[cfg(test)]
mod tests;

/// A certificate's not-after, Unix seconds; `None` when it does not parse.
pub(crate) fn not_after(cert: &rustls_pki_types::CertificateDer<'_>) -> Option<i64> {
    use x509_parser::prelude::FromDer;
    x509_parser::prelude::X509Certificate::from_der(cert)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}
