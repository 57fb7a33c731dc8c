use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::store::tests::TempDir;

/// 2026-12-02T10:00:00Z.
const NOON: i64 = 1_796_205_600_000_000;
const DAY: i64 = 86_400_000_000;

#[test]
fn days_are_utc_calendar_days() {
    assert_eq!(EventKeys::day_of(0).unwrap(), "1970-01-01");
    assert_eq!(EventKeys::day_of(-1).unwrap(), "1969-12-31");
    assert_eq!(EventKeys::day_of(NOON).unwrap(), "2026-12-02");
    // The last microsecond of a leap day.
    assert_eq!(
        EventKeys::day_of(1_709_251_199_999_999).unwrap(),
        "2024-02-29"
    );
    assert_eq!(
        EventKeys::day_of(1_709_251_200_000_000).unwrap(),
        "2024-03-01"
    );
    for bad in [
        "2026-13-01",
        "2026-12-32",
        "2026-12-00",
        "2026-12-1",
        "../x",
        "",
    ] {
        assert!(check_day(bad).is_err(), "{bad:?}");
    }
    assert!(check_day("2026-12-31").is_ok());
}

#[test]
fn a_sealed_value_opens_only_in_its_place_and_hides_what_it_holds() {
    let dir = TempDir::new("seal");
    let keys = EventKeys::open(dir.path().join("event-keys")).unwrap();
    let plain = b"id_number=11010519491231002X name=\xe5\xbc\xa0\xe5\x9b\xbd\xe5\x8d\x8e";
    let a = keys.seal(NOON, b"r\x00\x01", plain).unwrap();
    assert_eq!(
        keys.open_sealed(&a, b"r\x00\x01").unwrap(),
        Unsealed::Plain(plain.to_vec())
    );
    assert_eq!(sealed_at(&a).unwrap(), NOON);
    assert!(!a.windows(18).any(|w| w == b"11010519491231002X"));
    // A fresh nonce each time: the same value sealed twice differs.
    let b = keys.seal(NOON, b"r\x00\x01", plain).unwrap();
    assert_ne!(a, b);
    // Moved to another place, or altered anywhere (time, fingerprint, nonce, body, tag).
    assert!(matches!(
        keys.open_sealed(&a, b"r\x00\x02"),
        Err(Error::Unsealable(_))
    ));
    for i in [1, 12, 20, HEADER_LEN + 1, a.len() - 1] {
        let mut bad = a.clone();
        bad[i] ^= 1;
        let opened = keys.open_sealed(&bad, b"r\x00\x01");
        assert!(
            !matches!(opened, Ok(Unsealed::Plain(_))),
            "byte {i} altered, still opened"
        );
    }
    assert!(matches!(
        keys.open_sealed(b"\x08\x01plain protobuf", b""),
        Err(Error::Unsealable(_))
    ));
    assert!(!is_sealed(b"\x08\x01plain protobuf"));
    // The key is on disk, private.
    let file = dir.path().join("event-keys/2026-12-02.key");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn destroying_a_day_key_makes_its_values_gone_and_it_is_never_recreated() {
    let dir = TempDir::new("seal-destroy");
    let keys = EventKeys::open(dir.path().join("k")).unwrap();
    let old = keys.seal(NOON - 2 * DAY, b"c", b"two days ago").unwrap();
    let recent = keys.seal(NOON - DAY, b"c", b"yesterday").unwrap();
    assert_eq!(keys.days(), ["2026-11-30", "2026-12-01"]);
    assert_eq!(keys.destroy_before(NOON - DAY).unwrap(), ["2026-11-30"]);
    assert_eq!(
        keys.open_sealed(&old, b"c").unwrap(),
        Unsealed::KeyGone {
            period: "2026-11-30".into()
        }
    );
    assert_eq!(
        keys.open_sealed(&recent, b"c").unwrap(),
        Unsealed::Plain(b"yesterday".to_vec())
    );
    assert!(keys.seal(NOON - 2 * DAY, b"c", b"again").is_err());
    drop(keys);
    // Reopened: still destroyed.
    let keys = EventKeys::open(dir.path().join("k")).unwrap();
    assert_eq!(keys.destroyed(), ["2026-11-30"]);
    assert!(matches!(
        keys.open_sealed(&old, b"c").unwrap(),
        Unsealed::KeyGone { .. }
    ));
}

#[test]
fn a_value_whose_key_file_was_replaced_is_gone_not_damaged() {
    let dir = TempDir::new("seal-replaced");
    let path = dir.path().join("k");
    let keys = EventKeys::open(path.clone()).unwrap();
    let v = keys.seal(NOON, b"c", b"today").unwrap();
    drop(keys);
    // The key file lost (deleted by hand, a restore without it): a missing key is gone ...
    std::fs::remove_file(path.join("2026-12-02.key")).unwrap();
    let keys = EventKeys::open(path.clone()).unwrap();
    assert!(matches!(
        keys.open_sealed(&v, b"c").unwrap(),
        Unsealed::KeyGone { .. }
    ));
    // ... and so is one sealed under the key the day had before a new one was made.
    let fresh = keys.seal(NOON, b"c", b"after").unwrap();
    assert!(matches!(
        keys.open_sealed(&v, b"c").unwrap(),
        Unsealed::KeyGone { .. }
    ));
    assert_eq!(
        keys.open_sealed(&fresh, b"c").unwrap(),
        Unsealed::Plain(b"after".to_vec())
    );
}
