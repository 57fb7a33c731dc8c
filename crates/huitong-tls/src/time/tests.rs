use super::*;

#[test]
fn formats_dates_for_people() {
    assert_eq!(format_utc(system_time(0)), "1970-01-01 00:00:00 UTC");
    assert_eq!(
        format_utc(system_time(1_764_129_900)),
        "2025-11-26 04:05:00 UTC"
    );
    assert_eq!(unix(system_time(-5)), -5);
}
