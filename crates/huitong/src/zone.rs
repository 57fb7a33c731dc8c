//! Times on the command line: what `--since` and `--until` accept, and the zone times are shown
//! in (`--zone`, `HUITONG_DISPLAY_ZONE`).
//!
//! The tz database is compiled in (jiff's bundled copy), so a zone name means the same on a
//! minimal container without `/usr/share/zoneinfo` as on a desktop. The log itself stores
//! microseconds since the Unix epoch; a zone only changes how they are written.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// The zone times are written in. UTC unless configured.
#[derive(Debug, Clone)]
pub struct Zone {
    tz: TimeZone,
    /// Whether this is UTC itself, written `Z` as in the log's own JSON; a zone that is merely
    /// at offset zero (Europe/London in winter) is written `+00:00`.
    utc: bool,
}

impl Default for Zone {
    fn default() -> Self {
        Self {
            tz: TimeZone::UTC,
            utc: true,
        }
    }
}

impl Zone {
    /// An IANA zone name such as `Asia/Shanghai`, or `UTC`. Empty means UTC, so that an
    /// exported but empty `HUITONG_DISPLAY_ZONE` changes nothing.
    pub fn parse(name: &str) -> Result<Zone, String> {
        let name = name.trim();
        if name.is_empty() || name == "UTC" || name == "Z" {
            return Ok(Zone::default());
        }
        match jiff::tz::db().get(name) {
            Ok(tz) => Ok(Zone { tz, utc: false }),
            Err(_) => {
                // Lookups ignore case already; a city alone is the likeliest other slip.
                let city = format!("/{}", name.to_ascii_lowercase());
                let hint = jiff::tz::db()
                    .available()
                    .find(|n| n.as_str().to_ascii_lowercase().ends_with(&city))
                    .map(|n| format!("; did you mean {}?", n.as_str()))
                    .unwrap_or_default();
                Err(format!(
                    "{name:?} is not a zone in the tz database: give an IANA name such as Asia/Shanghai, Europe/Berlin or UTC{hint}"
                ))
            }
        }
    }

    /// RFC 3339 to the second, with the zone's offset: for text columns.
    pub fn seconds(&self, micros: i64) -> String {
        self.write(micros, false)
    }

    /// RFC 3339 to the microsecond, with the zone's offset: for CSV and JSON.
    pub fn micros(&self, micros: i64) -> String {
        self.write(micros, true)
    }

    fn write(&self, micros: i64, fraction: bool) -> String {
        let Ok(ts) = Timestamp::from_microsecond(micros) else {
            // Beyond the years -9999..=9999: only a corrupt record gets here; UTC still says
            // what is stored.
            return huitong_audit::record::format_micros(micros);
        };
        let z = ts.to_zoned_datetime(self.tz.clone());
        let mut s = z.strftime("%Y-%m-%dT%H:%M:%S").to_string();
        if fraction {
            s.push_str(&format!(".{:06}", z.subsec_nanosecond() / 1000));
        }
        let offset = z.offset().seconds();
        if self.utc {
            s.push('Z');
        } else {
            let sign = if offset < 0 { '-' } else { '+' };
            let m = offset.unsigned_abs() / 60;
            s.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
        }
        s
    }
}

/// A time given on the command line, before the display zone is known (flags parse in any
/// order): an instant, or a wall-clock time that means the display zone's.
#[derive(Debug, Clone, Copy)]
pub enum TimeArg {
    /// An RFC 3339 time with its offset, in Unix microseconds.
    Instant(i64),
    /// A date (midnight) or a date and time without an offset.
    Civil(DateTime),
}

impl TimeArg {
    /// `2026-12-02` (midnight in the display zone), `2026-12-02T00:00:00+08:00` or
    /// `2026-12-02T00:00:00Z` (any RFC 3339 offset), or `2026-12-02T08:00:00` (in the display
    /// zone).
    pub fn parse(s: &str) -> Result<TimeArg, String> {
        let s = s.trim();
        let usage = "give a date (2026-12-02: midnight in the display zone) or an RFC 3339 time with its offset (2026-12-02T00:00:00+08:00, 2026-12-02T00:00:00Z)";
        if let Ok(ts) = s.parse::<Timestamp>() {
            return Ok(TimeArg::Instant(ts.as_microsecond()));
        }
        if let Ok(d) = s.parse::<jiff::civil::Date>() {
            return Ok(TimeArg::Civil(d.to_datetime(jiff::civil::Time::midnight())));
        }
        match s.parse::<DateTime>() {
            // A date-time with an offset that failed above must not lose its offset here.
            Ok(dt) if !has_offset(s) => Ok(TimeArg::Civil(dt)),
            _ => {
                // The reason from the form it looks like: a date, or a date and time.
                let why = if s.len() <= 10 {
                    s.parse::<jiff::civil::Date>().err().map(|e| e.to_string())
                } else {
                    s.parse::<Timestamp>().err().map(|e| e.to_string())
                }
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
                Err(format!("{s:?} is not a time{why}: {usage}"))
            }
        }
    }

    /// Unix microseconds, reading a wall-clock time in `zone`.
    pub fn micros(&self, zone: &Zone) -> anyhow::Result<i64> {
        match self {
            TimeArg::Instant(us) => Ok(*us),
            TimeArg::Civil(dt) => Ok(dt
                .to_zoned_datetime(zone.tz.clone())
                .map_err(|e| anyhow::anyhow!("{dt} in the display zone: {e}"))?
                .timestamp()
                .as_microsecond()),
        }
    }
}

/// Whether the text after the date carries `Z` or `±hh:mm`.
fn has_offset(s: &str) -> bool {
    let time = s.get(10..).unwrap_or("");
    time.contains(['Z', 'z', '+']) || time.get(1..).is_some_and(|t| t.contains('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_rfc3339_offset_names_the_same_instant() {
        let a = TimeArg::parse("2026-12-02T00:00:00+08:00").unwrap();
        let b = TimeArg::parse("2026-12-01T16:00:00Z").unwrap();
        let utc = Zone::default();
        assert_eq!(a.micros(&utc).unwrap(), b.micros(&utc).unwrap());
        assert_eq!(
            TimeArg::parse("2026-12-01T16:00:00.5z")
                .unwrap()
                .micros(&utc)
                .unwrap(),
            b.micros(&utc).unwrap() + 500_000
        );
    }

    #[test]
    fn a_date_is_midnight_in_the_display_zone() {
        let shanghai = Zone::parse("Asia/Shanghai").unwrap();
        let d = TimeArg::parse("2026-12-02").unwrap();
        let want = TimeArg::parse("2026-12-01T16:00:00Z").unwrap();
        assert_eq!(
            d.micros(&shanghai).unwrap(),
            want.micros(&shanghai).unwrap()
        );
        assert_eq!(
            d.micros(&Zone::default()).unwrap(),
            want.micros(&shanghai).unwrap() + 8 * 3_600_000_000
        );
    }

    #[test]
    fn times_are_written_with_their_zone() {
        let us = TimeArg::parse("2026-12-01T16:00:00.123456Z")
            .unwrap()
            .micros(&Zone::default())
            .unwrap();
        assert_eq!(Zone::default().seconds(us), "2026-12-01T16:00:00Z");
        let shanghai = Zone::parse("Asia/Shanghai").unwrap();
        assert_eq!(shanghai.seconds(us), "2026-12-02T00:00:00+08:00");
        assert_eq!(shanghai.micros(us), "2026-12-02T00:00:00.123456+08:00");
        let ny = Zone::parse("America/New_York").unwrap();
        assert_eq!(ny.seconds(us), "2026-12-01T11:00:00-05:00");
        assert_eq!(
            Zone::default().micros(us),
            huitong_audit::record::format_micros(us)
        );
    }

    #[test]
    fn bad_zones_and_times_say_what_to_give() {
        let e = Zone::parse("Asia/Shangai").unwrap_err();
        assert!(e.contains("Asia/Shanghai") && e.contains("IANA"), "{e}");
        let e = Zone::parse("shanghai").unwrap_err();
        assert!(e.contains("did you mean Asia/Shanghai?"), "{e}");
        assert!(Zone::parse("asia/shanghai").is_ok());
        for bad in [
            "2026-13-01",
            "yesterday",
            "2026-12-02T25:00:00+08:00",
            "2026-12-02T00:00:00+8",
        ] {
            let e = TimeArg::parse(bad).unwrap_err();
            assert!(e.contains("RFC 3339") && e.contains(bad), "{e}");
        }
    }
}
