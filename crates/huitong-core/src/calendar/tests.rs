use super::*;

/// A moment on the given UTC date at hh:mm:ss.
fn at(y: i64, m: u32, d: u32, hh: u64, mm: u64, ss: u64) -> SystemTime {
    date(y, m, d) + Duration::from_secs(hh * 3600 + mm * 60 + ss)
}

#[test]
fn epoch_and_known_dates() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(1970, 1, 2), 1);
    assert_eq!(days_from_civil(1969, 12, 31), -1);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(days_from_civil(2026, 10, 1), 20_727);
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(civil_from_days(20_727), (2026, 10, 1));
}

#[test]
fn civil_dates_round_trip_over_four_centuries() {
    // 1900-01-01 .. 2300-01-01 covers non-leap centuries and a leap one (2000).
    let start = days_from_civil(1900, 1, 1);
    let end = days_from_civil(2300, 1, 1);
    let (mut y, mut m, mut d) = (1900, 1, 1);
    for day in start..end {
        assert_eq!(civil_from_days(day), (y, m, d), "day {day}");
        assert_eq!(days_from_civil(y, m, d), day);
        d += 1;
        if d > days_in_month(y, m) {
            d = 1;
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
        }
    }
}

#[test]
fn leap_years() {
    assert!(is_leap_year(2024));
    assert!(is_leap_year(2000));
    assert!(!is_leap_year(1900));
    assert!(!is_leap_year(2100));
    assert!(!is_leap_year(2026));
    assert_eq!(days_in_month(2024, 2), 29);
    assert_eq!(days_in_month(2025, 2), 28);
    assert_eq!(days_in_month(2025, 13), 0);
    assert_eq!(
        days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 28),
        2
    );
    assert_eq!(
        days_from_civil(2023, 3, 1) - days_from_civil(2023, 2, 28),
        1
    );
    // An out-of-range day rolls over.
    assert_eq!(days_from_civil(2023, 2, 29), days_from_civil(2023, 3, 1));
}

#[test]
fn format_date_is_iso_in_utc() {
    assert_eq!(format_date(UNIX_EPOCH), "1970-01-01");
    assert_eq!(format_date(at(2026, 10, 1, 23, 59, 59)), "2026-10-01");
    assert_eq!(format_date(at(2024, 2, 29, 12, 0, 0)), "2024-02-29");
    assert_eq!(
        format_date(UNIX_EPOCH - Duration::from_nanos(1)),
        "1969-12-31"
    );
    assert_eq!(format_date(date(1949, 10, 1)), "1949-10-01");
}

#[test]
fn days_since_epoch_floors_towards_the_past() {
    assert_eq!(days_since_epoch(UNIX_EPOCH), 0);
    assert_eq!(days_since_epoch(at(1970, 1, 1, 23, 59, 59)), 0);
    assert_eq!(days_since_epoch(UNIX_EPOCH - Duration::from_secs(1)), -1);
    assert_eq!(
        days_since_epoch(UNIX_EPOCH - Duration::from_secs(SECONDS_PER_DAY)),
        -1
    );
    assert_eq!(
        from_days(-1),
        UNIX_EPOCH - Duration::from_secs(SECONDS_PER_DAY)
    );
}

#[test]
fn weekdays() {
    assert_eq!(weekday(UNIX_EPOCH), Weekday::Thursday);
    assert_eq!(weekday(date(2026, 10, 1)), Weekday::Thursday);
    assert_eq!(weekday(date(2025, 1, 1)), Weekday::Wednesday);
    assert_eq!(weekday(date(2024, 2, 29)), Weekday::Thursday);
    assert_eq!(weekday(date(2000, 1, 1)), Weekday::Saturday);
    assert_eq!(weekday(date(1969, 12, 28)), Weekday::Sunday);
    assert_eq!(weekday(at(2026, 6, 7, 23, 59, 59)), Weekday::Sunday);
    assert!(Weekday::Saturday.is_weekend() && Weekday::Sunday.is_weekend());
    assert!(!Weekday::Friday.is_weekend());
    assert_eq!(Weekday::Sunday.to_string(), "Sunday");
}

#[test]
fn ten_working_days_from_a_wednesday_is_two_weeks() {
    let start = at(2026, 6, 3, 9, 30, 0); // Wednesday
    assert_eq!(weekday(start), Weekday::Wednesday);
    assert_eq!(add_working_days(start, 10), at(2026, 6, 17, 9, 30, 0));
}

#[test]
fn ten_working_days_from_a_friday_is_two_weeks() {
    let start = at(2026, 6, 5, 17, 45, 12); // Friday
    assert_eq!(add_working_days(start, 10), at(2026, 6, 19, 17, 45, 12));
    // One working day from a Friday is the Monday.
    assert_eq!(add_working_days(start, 1), at(2026, 6, 8, 17, 45, 12));
}

#[test]
fn a_start_on_a_weekend_counts_from_monday() {
    let saturday = at(2026, 6, 6, 10, 0, 0);
    let sunday = at(2026, 6, 7, 10, 0, 0);
    let monday = at(2026, 6, 8, 10, 0, 0);
    assert_eq!(add_working_days(saturday, 0), monday);
    assert_eq!(add_working_days(sunday, 0), monday);
    assert_eq!(add_working_days(saturday, 10), at(2026, 6, 22, 10, 0, 0));
    assert_eq!(add_working_days(sunday, 10), at(2026, 6, 22, 10, 0, 0));
    assert_eq!(add_working_days(saturday, 1), at(2026, 6, 9, 10, 0, 0));
}

#[test]
fn zero_working_days_from_a_weekday_is_the_start() {
    let start = at(2026, 6, 3, 9, 30, 0);
    assert_eq!(add_working_days(start, 0), start);
}

#[test]
fn each_short_count_lands_on_the_right_day() {
    // From Thursday 2026-06-04: Fri, Mon, Tue, Wed, Thu, Fri, Mon.
    let start = date(2026, 6, 4);
    let expected = [5, 8, 9, 10, 11, 12, 15];
    for (n, day) in expected.iter().enumerate() {
        let got = add_working_days(start, n as u32 + 1);
        assert_eq!(got, date(2026, 6, *day), "{} working days", n + 1);
        assert!(!weekday(got).is_weekend());
    }
}

#[test]
fn working_days_cross_month_and_year_boundaries() {
    // Wednesday 2025-12-24 + 10 -> Wednesday 2026-01-07 (1 January is not modelled as a holiday).
    assert_eq!(
        add_working_days(at(2025, 12, 24, 8, 0, 0), 10),
        at(2026, 1, 7, 8, 0, 0)
    );
    // Friday 2026-01-30 + 10 -> Friday 2026-02-13.
    assert_eq!(add_working_days(date(2026, 1, 30), 10), date(2026, 2, 13));
    // Saturday 2026-12-26 + 10 -> counts from Monday 12-28 -> Monday 2027-01-11.
    assert_eq!(add_working_days(date(2026, 12, 26), 10), date(2027, 1, 11));
    // Tuesday 2026-09-29 + 3 -> Friday 2026-10-02 (National Day is not modelled).
    assert_eq!(add_working_days(date(2026, 9, 29), 3), date(2026, 10, 2));
}

#[test]
fn working_days_across_leap_days() {
    // Friday 2024-02-23 + 10 -> Friday 2024-03-08, through 29 February.
    assert_eq!(add_working_days(date(2024, 2, 23), 10), date(2024, 3, 8));
    // Thursday 2024-02-29 + 1 -> Friday 2024-03-01.
    assert_eq!(add_working_days(date(2024, 2, 29), 1), date(2024, 3, 1));
    // Wednesday 2028-02-23 + 10 -> Wednesday 2028-03-08 (2028 is a leap year).
    assert_eq!(add_working_days(date(2028, 2, 23), 10), date(2028, 3, 8));
    // Friday 2100-02-26 + 1 -> Monday 2100-03-01 (2100 is not a leap year).
    assert_eq!(weekday(date(2100, 2, 26)), Weekday::Friday);
    assert_eq!(add_working_days(date(2100, 2, 26), 1), date(2100, 3, 1));
}

#[test]
fn long_counts_match_a_day_by_day_count() {
    for start_day in 0..7 {
        let start = at(2026, 3, 2 + start_day, 14, 0, 0);
        for n in [0u32, 1, 4, 5, 6, 9, 15, 20, 61, 250] {
            let mut t = start;
            while weekday(t).is_weekend() {
                t += Duration::from_secs(SECONDS_PER_DAY);
            }
            let mut left = n;
            while left > 0 {
                t += Duration::from_secs(SECONDS_PER_DAY);
                if !weekday(t).is_weekend() {
                    left -= 1;
                }
            }
            assert_eq!(
                add_working_days(start, n),
                t,
                "start day {start_day}, n {n}"
            );
        }
    }
}

#[test]
fn subsecond_time_of_day_is_kept() {
    let start = at(2026, 6, 5, 23, 59, 59) + Duration::from_nanos(999_999_999);
    let end = add_working_days(start, 1);
    assert_eq!(
        end.duration_since(start).unwrap(),
        Duration::from_secs(3 * SECONDS_PER_DAY)
    );
}

/// National Day and Mid-Autumn 2025: 1 to 8 October off, Sunday 28 September and Saturday
/// 11 October worked in exchange.
fn national_day_2025() -> WorkCalendar {
    let day = |s: &str| parse_date(s).unwrap();
    WorkCalendar::new(
        (1..=8).map(|d| days_from_civil(2025, 10, d)),
        [day("2025-09-28"), day("2025-10-11")],
    )
    .unwrap()
}

#[test]
fn holidays_are_skipped_and_make_up_days_count() {
    let cal = national_day_2025();
    let friday = at(2025, 9, 26, 16, 0, 0);
    // 28 Sep (make-up Sunday), 29, 30 Sep, then 9, 10, 11 (make-up Saturday), 13..16 Oct.
    assert_eq!(cal.add_working_days(friday, 10), at(2025, 10, 16, 16, 0, 0));
    // The plain calendar would have said Friday 10 October, six days early.
    assert_eq!(add_working_days(friday, 10), at(2025, 10, 10, 16, 0, 0));
    assert_eq!(cal.add_working_days(friday, 1), at(2025, 9, 28, 16, 0, 0));
    // Filed on a holiday, the count starts on the next working day.
    let holiday = at(2025, 10, 3, 9, 0, 0);
    assert_eq!(cal.add_working_days(holiday, 0), at(2025, 10, 9, 9, 0, 0));
    assert_eq!(cal.add_working_days(holiday, 2), at(2025, 10, 11, 9, 0, 0));
    assert!(cal.is_working_day(days_from_civil(2025, 10, 11)));
    assert!(!cal.is_working_day(days_from_civil(2025, 10, 8)));
    assert!(!cal.is_working_day(days_from_civil(2025, 10, 12)));
}

#[test]
fn a_calendar_with_a_weekday_make_up_day_or_a_clash_is_refused() {
    let tuesday = days_from_civil(2025, 9, 30);
    let err = WorkCalendar::new([], [tuesday]).unwrap_err();
    assert_eq!(
        err,
        CalendarError::MakeUpDayNotWeekend {
            date: "2025-09-30".into(),
            weekday: Weekday::Tuesday
        }
    );
    assert!(err.to_string().contains("Saturdays or Sundays"), "{err}");
    let sunday = days_from_civil(2025, 9, 28);
    assert_eq!(
        WorkCalendar::new([sunday], [sunday]).unwrap_err(),
        CalendarError::BothHolidayAndWorkingDay {
            date: "2025-09-28".into()
        }
    );
    // A holiday that falls on a weekend is harmless.
    assert!(WorkCalendar::new([sunday], []).is_ok());
}

#[test]
fn dates_parse_strictly() {
    assert_eq!(parse_date("2026-10-01"), Some(20_727));
    assert_eq!(parse_date("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
    for bad in [
        "2025-02-29",
        "2026-13-01",
        "2026-00-10",
        "2026-10-00",
        "2026-1-01",
        "26-10-01",
        "2026/10/01",
        "2026-10-+1",
        "２０２６-10-01",
        "",
    ] {
        assert_eq!(parse_date(bad), None, "{bad:?}");
    }
}
