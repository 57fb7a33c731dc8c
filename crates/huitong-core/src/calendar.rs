//! Civil dates and working days, for reply deadlines and the dates in messages.
//!
//! Everything here is computed in **UTC** on the proleptic Gregorian calendar, from times that the
//! caller passes in; nothing in this crate reads the clock.
//!
//! Working days are Monday to Friday, except the public holidays (法定节假日) and plus the weekend
//! days worked in exchange for them (调休) that a [`WorkCalendar`] is given. The State Council
//! publishes both lists once a year, so they are configuration, not code: without them, a
//! deadline around Spring Festival or National Day would come several days before the legal one.
//! The day boundary is midnight UTC, which is 08:00 Beijing time.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds in a civil day (UTC has no leap seconds in Unix time).
pub const SECONDS_PER_DAY: u64 = 86_400;

const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// The number of days from 1970-01-01 to the given date (negative before it).
///
/// `month` is 1..=12. A `day` past the end of the month rolls over into the next month
/// (2023-02-29 is 2023-03-01); use [`days_in_month`] to check a date first.
/// The algorithm is Howard Hinnant's `days_from_civil`.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let m = i64::from(month);
    let d = i64::from(day);
    // Years start in March, so that the leap day is the last day of the year.
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400; // 0..=399
    let month_from_march = (m + 9) % 12; // March = 0, ..., February = 11
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1; // 0..=365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `(year, month, day)` that is `days` days after 1970-01-01 (before it if negative).
/// The inverse of [`days_from_civil`] (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097; // 0..=146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0..=11
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1; // 1..=31
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are small and positive by construction.
    (year, month as u32, day as u32)
}

/// Whether `year` has a 29 February.
pub fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days in `month` (1..=12) of `year`; 0 for a month outside 1..=12.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

fn nanos_since_epoch(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

/// The UTC day that `t` falls on, as days since 1970-01-01 (negative before it).
pub fn days_since_epoch(t: SystemTime) -> i64 {
    let day = nanos_since_epoch(t).div_euclid(NANOS_PER_DAY);
    // |day| is below 2^64 / 86400 for any SystemTime, so this never saturates in practice.
    i64::try_from(day).unwrap_or(if day < 0 { i64::MIN } else { i64::MAX })
}

fn whole_days(days: u64) -> Duration {
    Duration::from_secs(days.saturating_mul(SECONDS_PER_DAY))
}

/// Midnight UTC at the start of the day `days` days after 1970-01-01.
///
/// # Panics
/// Only if that moment cannot be represented as a `SystemTime` (billions of years away).
pub fn from_days(days: i64) -> SystemTime {
    if days >= 0 {
        UNIX_EPOCH + whole_days(days.unsigned_abs())
    } else {
        UNIX_EPOCH - whole_days(days.unsigned_abs())
    }
}

/// Midnight UTC at the start of the given date; see [`days_from_civil`] for out-of-range days.
pub fn date(year: i64, month: u32, day: u32) -> SystemTime {
    from_days(days_from_civil(year, month, day))
}

/// `t`'s UTC date as `YYYY-MM-DD`, e.g. `2026-10-01`.
pub fn format_date(t: SystemTime) -> String {
    let (y, m, d) = civil_from_days(days_since_epoch(t));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Weekday {
    /// 星期一
    Monday,
    /// 星期二
    Tuesday,
    /// 星期三
    Wednesday,
    /// 星期四
    Thursday,
    /// 星期五
    Friday,
    /// 星期六
    Saturday,
    /// 星期日
    Sunday,
}

impl Weekday {
    const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// The weekday of the day `days` days after 1970-01-01 (a Thursday).
    pub fn of_day(days: i64) -> Weekday {
        // 1970-01-01 was a Thursday, index 3 counting from Monday = 0.
        let index = (days + 3).rem_euclid(7);
        Self::ALL[index as usize]
    }

    /// Days since Monday: Monday is 0, Sunday is 6.
    pub fn days_from_monday(self) -> u32 {
        self as u32
    }

    /// Saturday or Sunday.
    pub fn is_weekend(self) -> bool {
        matches!(self, Weekday::Saturday | Weekday::Sunday)
    }

    /// The English name, e.g. `Monday`.
    pub fn as_str(self) -> &'static str {
        match self {
            Weekday::Monday => "Monday",
            Weekday::Tuesday => "Tuesday",
            Weekday::Wednesday => "Wednesday",
            Weekday::Thursday => "Thursday",
            Weekday::Friday => "Friday",
            Weekday::Saturday => "Saturday",
            Weekday::Sunday => "Sunday",
        }
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The UTC weekday of `t`.
pub fn weekday(t: SystemTime) -> Weekday {
    Weekday::of_day(days_since_epoch(t))
}

/// The moment `days` working days after `start` on a plain Monday-to-Friday calendar; see
/// [`WorkCalendar::add_working_days`]. From a Wednesday, 10 working days is the Wednesday two
/// weeks later.
///
/// # Panics
/// Only if the result cannot be represented as a `SystemTime` (billions of years away).
pub fn add_working_days(start: SystemTime, days: u32) -> SystemTime {
    WorkCalendar::default().add_working_days(start, days)
}

/// Parses a `YYYY-MM-DD` date (four-digit year, a real day of that month) into days since
/// 1970-01-01.
pub fn parse_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (i64::from(digits(0..4)?), digits(5..7)?, digits(8..10)?);
    (day >= 1 && day <= days_in_month(year, month)).then(|| days_from_civil(year, month, day))
}

/// Why a [`WorkCalendar`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CalendarError {
    /// A make-up working day that is not a Saturday or Sunday: weekdays already are working days.
    #[error(
        "{date} is a {weekday}; make-up working days (调休) are Saturdays or Sundays worked in exchange for a holiday"
    )]
    MakeUpDayNotWeekend { date: String, weekday: Weekday },
    /// A date listed both as a holiday and as a make-up working day.
    #[error("{date} is listed both as a holiday and as a make-up working day")]
    BothHolidayAndWorkingDay { date: String },
}

/// Which days count as working days for deadlines: Monday to Friday, minus the given public
/// holidays, plus the given make-up weekend days. The default has neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkCalendar {
    holidays: BTreeSet<i64>,
    make_up_days: BTreeSet<i64>,
}

impl WorkCalendar {
    /// A calendar with `holidays` and `make_up_days`, both as days since 1970-01-01 (see
    /// [`parse_date`]). A holiday on a weekend is allowed and changes nothing.
    pub fn new(
        holidays: impl IntoIterator<Item = i64>,
        make_up_days: impl IntoIterator<Item = i64>,
    ) -> Result<WorkCalendar, CalendarError> {
        let holidays: BTreeSet<i64> = holidays.into_iter().collect();
        let make_up_days: BTreeSet<i64> = make_up_days.into_iter().collect();
        let name = |d: i64| format_date(from_days(d));
        for &d in &make_up_days {
            let weekday = Weekday::of_day(d);
            if !weekday.is_weekend() {
                return Err(CalendarError::MakeUpDayNotWeekend {
                    date: name(d),
                    weekday,
                });
            }
            if holidays.contains(&d) {
                return Err(CalendarError::BothHolidayAndWorkingDay { date: name(d) });
            }
        }
        Ok(WorkCalendar {
            holidays,
            make_up_days,
        })
    }

    /// Whether the day `days` days after 1970-01-01 is a working day.
    pub fn is_working_day(&self, days: i64) -> bool {
        if Weekday::of_day(days).is_weekend() {
            self.make_up_days.contains(&days)
        } else {
            !self.holidays.contains(&days)
        }
    }

    /// The moment `days` working days after `start`, at the same time of day.
    ///
    /// A start on a day that is not a working day counts from the next working day at the same
    /// time of day, so 0 working days from a Saturday is the next working day. Days are UTC
    /// days.
    ///
    /// # Panics
    /// Only if the result cannot be represented as a `SystemTime` (billions of years away).
    pub fn add_working_days(&self, start: SystemTime, days: u32) -> SystemTime {
        let mut day = days_since_epoch(start);
        let mut calendar_days: u64 = 0;
        // Every week has at least one working day unless seven holidays in a row are declared,
        // and the lists are finite, so both loops end.
        while !self.is_working_day(day) {
            day += 1;
            calendar_days += 1;
        }
        let mut left = days;
        while left > 0 {
            day += 1;
            calendar_days += 1;
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        start + whole_days(calendar_days)
    }
}

#[cfg(test)]
mod tests;
