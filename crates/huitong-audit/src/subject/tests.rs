use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::store::tests::TempDir;

#[test]
fn the_same_key_and_period_give_the_same_subject_and_nothing_else_does() {
    let dir = TempDir::new("subject");
    let keys = SubjectKeys::open(dir.path()).unwrap();
    let id = normalise_key(&[("id_number", "11010519491231002X")]);
    let other = normalise_key(&[("id_number", "110105194912310021")]);

    let a = keys.subject("2026-11", &id).unwrap();
    assert_eq!(a, keys.subject("2026-11", &id).unwrap());
    assert_ne!(a, keys.subject("2026-12", &id).unwrap());
    assert_ne!(a, keys.subject("2026-11", &other).unwrap());
    assert_eq!(keys.periods(), ["2026-11", "2026-12"]);

    // The key lives on disk, private, and a reopened set gives the same subjects.
    let file = dir.path().join(SUBJECT_KEYS_DIR).join("2026-11.key");
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    drop(keys);
    let keys = SubjectKeys::open(dir.path()).unwrap();
    assert_eq!(keys.subject("2026-11", &id).unwrap(), a);

    // It is an HMAC-SHA-256 under that key, so anyone holding the key can check it.
    let raw = fs::read(&file).unwrap();
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &raw), id.as_bytes());
    assert_eq!(tag.as_ref(), a.as_slice());
}

#[test]
fn periods_are_utc_calendar_months() {
    assert_eq!(SubjectKeys::period_of(0), "1970-01");
    assert_eq!(SubjectKeys::period_of(-1), "1969-12");
    assert_eq!(SubjectKeys::period_of(1_794_744_000_000_000), "2026-11");
    // The last microsecond of a leap day, and of a century year.
    assert_eq!(SubjectKeys::period_of(1_709_251_199_999_999), "2024-02");
    assert_eq!(SubjectKeys::period_of(1_709_251_200_000_000), "2024-03");
    assert_eq!(SubjectKeys::period_of(946_684_799_999_999), "1999-12");
}

#[test]
fn only_yyyy_mm_periods_are_accepted() {
    let dir = TempDir::new("periods");
    let keys = SubjectKeys::open(dir.path()).unwrap();
    for bad in [
        "2026-13",
        "2026-00",
        "2026-1",
        "26-11",
        "../../x",
        "2026-11.key",
        "",
    ] {
        assert!(
            matches!(keys.subject(bad, "k=v"), Err(Error::InvalidPeriod { .. })),
            "{bad:?}"
        );
        assert!(matches!(
            keys.destroy_before(bad),
            Err(Error::InvalidPeriod { .. })
        ));
    }
    assert!(keys.periods().is_empty());
}

#[test]
fn destroying_old_keys_removes_them_and_remembers_the_periods() {
    let dir = TempDir::new("destroy");
    let keys = SubjectKeys::open(dir.path()).unwrap();
    let id = normalise_key(&[("id_number", "11010519491231002X")]);
    for p in ["2025-12", "2026-01", "2026-02", "2026-03"] {
        keys.subject(p, &id).unwrap();
    }
    let kept = keys.subject("2026-02", &id).unwrap();

    assert_eq!(
        keys.destroy_before("2026-02").unwrap(),
        ["2025-12", "2026-01"]
    );
    assert_eq!(keys.periods(), ["2026-02", "2026-03"]);
    assert_eq!(keys.destroyed(), ["2025-12", "2026-01"]);
    assert!(
        !dir.path()
            .join(SUBJECT_KEYS_DIR)
            .join("2026-01.key")
            .exists()
    );
    // A destroyed period is never given a fresh key.
    assert!(matches!(
        keys.subject("2026-01", &id),
        Err(Error::SubjectKeyDestroyed { period }) if period == "2026-01"
    ));
    assert_eq!(keys.subject("2026-02", &id).unwrap(), kept);
    // Nothing left to destroy.
    assert!(keys.destroy_before("2026-02").unwrap().is_empty());

    drop(keys);
    let keys = SubjectKeys::open(dir.path()).unwrap();
    assert_eq!(keys.destroyed(), ["2025-12", "2026-01"]);
    assert!(matches!(
        keys.subject("2025-12", &id),
        Err(Error::SubjectKeyDestroyed { .. })
    ));
    assert_eq!(
        keys.destroy_before("2026-04").unwrap(),
        ["2026-02", "2026-03"]
    );
    assert_eq!(
        keys.destroyed(),
        ["2025-12", "2026-01", "2026-02", "2026-03"]
    );
    assert!(keys.periods().is_empty());
}

#[test]
fn a_destruction_interrupted_before_the_unlink_is_finished_later() {
    let dir = TempDir::new("destroy-crash");
    let keys = SubjectKeys::open(dir.path()).unwrap();
    keys.subject("2026-01", "k=V").unwrap();
    drop(keys);
    // As if the list was written but the process died before removing the key file.
    fs::write(
        dir.path().join(SUBJECT_KEYS_DIR).join(DESTROYED_FILE),
        "2026-01\n",
    )
    .unwrap();
    let keys = SubjectKeys::open(dir.path()).unwrap();
    assert!(matches!(
        keys.subject("2026-01", "k=V"),
        Err(Error::SubjectKeyDestroyed { .. })
    ));
    assert_eq!(keys.destroy_before("2026-02").unwrap(), ["2026-01"]);
    assert!(keys.periods().is_empty());
    assert_eq!(keys.destroyed(), ["2026-01"]);
}

#[test]
fn a_damaged_key_file_is_an_error_not_a_new_key() {
    let dir = TempDir::new("bad-key");
    let keys = SubjectKeys::open(dir.path()).unwrap();
    fs::write(
        dir.path().join(SUBJECT_KEYS_DIR).join("2026-05.key"),
        b"short",
    )
    .unwrap();
    assert!(matches!(keys.subject("2026-05", "k=V"), Err(Error::Key(_))));
}

#[test]
fn normalised_keys_ignore_order_case_and_surrounding_space() {
    assert_eq!(
        normalise_key(&[("id_number", " 11010519491231002x\t")]),
        "id_number=11010519491231002X"
    );
    assert_eq!(
        normalise_key(&[("name", "li lei"), ("birth_date", "1990-01-02")]),
        normalise_key(&[("birth_date", "1990-01-02 "), ("name", "LI LEI")]),
    );
    assert_eq!(
        normalise_key(&[("name", "li lei"), ("birth_date", "1990-01-02")]),
        "birth_date=1990-01-02\u{1f}name=LI LEI"
    );
    // Only ASCII letters change case; inner spaces are kept.
    assert_eq!(normalise_key(&[("name", "李 雷")]), "name=李 雷");
    // The separator cannot be smuggled in through a value.
    assert_ne!(
        normalise_key(&[("a", "1\u{1f}b=2")]),
        normalise_key(&[("a", "1"), ("b", "2")])
    );
    assert_eq!(normalise_key(&[]), "");
}

#[test]
fn id_numbers_are_normalised_however_they_were_typed() {
    let canonical = "id_number=11010519491231002X";
    for typed in [
        "11010519491231002X",
        "11010519491231002x",
        " 11010519491231002x\t",
        "110105 19491231 002X",
        "110105\u{3000}19491231\u{3000}002x",
        "110105-19491231-002X",
        "110105\u{2014}19491231\u{2013}002X",
        "110105\u{FF0D}19491231\u{FF0D}002X",
        "１１０１０５１９４９１２３１００２Ｘ",
        "１１０１０５１９４９１２３１００２ｘ",
        "110105\u{200B}19491231002X",
        "1101 0519 4912 3100 2X",
    ] {
        assert_eq!(
            normalise_key(&[("id_number", typed)]),
            canonical,
            "{typed:?}"
        );
    }
    // Digits only: the check character may be a digit.
    assert_eq!(
        normalise_key(&[("id_number", "110105-19900101-1234")]),
        "id_number=110105199001011234"
    );
    // Not shaped like an ID number: kept as before (trimmed, ASCII upper-cased).
    for (typed, normal) in [
        ("1990-01-02", "1990-01-02"),
        ("110105 1949123100", "110105 1949123100"),
        ("11010519491231002XX", "11010519491231002XX"),
        ("1101051949123100X2", "1101051949123100X2"),
        ("138-0013-8000", "138-0013-8000"),
        ("li lei", "LI LEI"),
        ("李 雷", "李 雷"),
        ("91110108MA01ABCD2X", "91110108MA01ABCD2X"),
    ] {
        assert_eq!(normalise_value(typed), normal, "{typed:?}");
    }
}

/// The normalisation before ID numbers were canonicalised, kept to prove that every key the
/// broker recorded then (Query sent canonical ID numbers; names and dates unchanged) still has
/// the same HMAC input, so old entries are still found.
fn normalise_key_before(parts: &[(&str, &str)]) -> String {
    let clean = |s: &str| -> String { s.trim().chars().filter(|c| !c.is_control()).collect() };
    let mut pairs: Vec<(String, String)> = parts
        .iter()
        .map(|(name, value)| (clean(name), clean(value).to_ascii_uppercase()))
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
    pairs.join("\u{1f}")
}

#[test]
fn already_normal_keys_normalise_as_they_always_did() {
    let cases: &[&[(&str, &str)]] = &[
        &[("id_number", "11010519491231002X")],
        &[("id_number", "110105199001011234")],
        &[("id_number", " 11010519491231002x ")],
        &[("name", "li lei"), ("birth_date", "1990-01-02")],
        &[("name", "李 雷")],
        &[("credit_code", "91110108MA01ABCD2X")],
        &[("registration_no", "2024-000123")],
        &[("household_id", "H-0001234"), ("member", "2")],
        &[],
    ];
    for parts in cases {
        assert_eq!(
            normalise_key(parts),
            normalise_key_before(parts),
            "{parts:?}"
        );
    }
}
