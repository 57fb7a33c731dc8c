use std::collections::{BTreeSet, HashMap, HashSet};

use super::*;

fn sample() -> DemoData {
    generate(7, DemoSize::default())
}

fn by_id(data: &DemoData) -> HashMap<&str, &Person> {
    data.persons
        .iter()
        .map(|p| (p.id_number.as_str(), p))
        .collect()
}

#[test]
fn id_check_char_matches_published_examples() {
    // GB 11643's own example. Weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 over
    // 1 1 0 1 0 5 1 9 4 9 1 2 3 1 0 0 2 give 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4 = 167,
    // 167 mod 11 = 2, which maps to X.
    assert_eq!(id_check_char("11010519491231002"), 'X');
    assert!(is_valid_id_number("11010519491231002X"));
    // 4 4 0 5 2 4 1 8 8 0 0 1 0 1 0 0 1: 28+36+0+25+16+16+2+8+48+0+0+9+0+5+0+0+2 = 195,
    // 195 mod 11 = 8, which maps to 4.
    assert_eq!(id_check_char("44052418800101001"), '4');
    assert!(is_valid_id_number("440524188001010014"));
    // A residue of 0 maps to 1: 1 1 0 1 0 1 1 9 9 0 0 3 0 7 0 0 1 gives
    // 7+9+0+5+0+4+2+9+54+0+0+27+0+35+0+0+2 = 154 = 14 * 11.
    assert_eq!(id_check_char("11010119900307001"), '1');
    // Any other final character is rejected.
    let first17 = "11010119900307001";
    let good = format!("{first17}{}", id_check_char(first17));
    assert!(is_valid_id_number(&good));
    for c in "0123456789X".chars().filter(|&c| !good.ends_with(c)) {
        assert!(!is_valid_id_number(&format!("{first17}{c}")), "{c}");
    }
    assert!(!is_valid_id_number("11010519491231002x"));
    assert!(!is_valid_id_number("1101051949123100X"));
    assert!(!is_valid_id_number("1101051949123100A2X"));
}

#[test]
fn id_check_char_covers_every_residue() {
    // Changing the 17th digit (weight 2) by one moves the sum by 2, so stepping it through
    // 0..=9 with a varying 16th digit reaches all eleven residues and all eleven characters.
    let mut seen = HashSet::new();
    for d16 in 0..10 {
        for d17 in 0..10 {
            seen.insert(id_check_char(&format!("110101199003070{d16}{d17}")));
        }
    }
    assert_eq!(seen.len(), 11);
}

#[test]
fn credit_code_check_char_matches_published_examples() {
    // 91350100M000100Y43: values 9 1 3 5 0 1 0 0 M=21 0 0 0 1 0 0 Y=30 4, weights
    // 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28: 9+3+27+135+26+420+8+900+112 = 1640,
    // 1640 mod 31 = 28, 31 - 28 = 3.
    assert_eq!(credit_code_check_char("91350100M000100Y4"), '3');
    assert!(is_valid_credit_code("91350100M000100Y43"));
    // 9144030071526726XG: the sum is 1782, 1782 mod 31 = 15, 31 - 15 = 16, which is G.
    assert_eq!(credit_code_check_char("9144030071526726X"), 'G');
    assert!(is_valid_credit_code("9144030071526726XG"));
    // Organisation codes inside them (GB 11714): M000100Y -> 4, 71526726 -> X.
    assert_eq!(org_code_check_char("M000100Y"), '4');
    assert_eq!(org_code_check_char("71526726"), 'X');
    assert!(!is_valid_credit_code("91350100M000100Y44"));
    assert!(!is_valid_credit_code("91350100M000100Y4I"));
    assert!(!is_valid_credit_code("91350100M000100Y4"));
}

#[test]
fn dates_round_trip_and_ages_count_completed_years() {
    assert_eq!(days_from_civil((1970, 1, 1)), 0);
    assert_eq!(days_from_civil((2000, 3, 1)), 11_017);
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    let mut expected = days_from_civil((1899, 12, 31));
    let mut d = (1900, 1, 1);
    while d.0 < 2100 {
        expected += 1;
        assert_eq!(days_from_civil(d), expected, "{d:?}");
        assert_eq!(civil_from_days(expected), d);
        d = civil_from_days(expected + 1);
    }
    assert_eq!(age_on((2000, 11, 1), REFERENCE_DATE), 26);
    assert_eq!(age_on((2000, 11, 2), REFERENCE_DATE), 25);
    assert_eq!(nth_birthday((2004, 2, 29), 22), (2026, 3, 1));
    assert_eq!(age_on((2004, 2, 29), (2026, 2, 28)), 21);
    assert_eq!(age_on((2004, 2, 29), (2026, 3, 1)), 22);
    assert_eq!(nth_birthday((2004, 2, 29), 20), (2024, 2, 29));
    assert_eq!(format_date((987, 3, 4)), "0987-03-04");
}

#[test]
fn id_numbers_are_valid_unique_and_match_the_person() {
    let data = sample();
    assert_eq!(data.persons.len(), 5000);
    let mut ids = HashSet::new();
    for p in &data.persons {
        let id = &p.id_number;
        assert!(is_valid_id_number(id), "{id}");
        assert!(ids.insert(id.as_str()), "duplicate {id}");
        assert_eq!(&id[..6], p.region_code);
        assert!(p.region().is_some(), "{id}");
        let (y, m, d) = p.birth_date;
        assert_eq!(id[6..14], format!("{y:04}{m:02}{d:02}"));
        let seq: u32 = id[14..17].parse().unwrap();
        let want = if seq % 2 == 1 {
            Gender::Male
        } else {
            Gender::Female
        };
        assert_eq!(p.gender, want, "{id}");
        assert!(civil_from_days(days_from_civil(p.birth_date)) == p.birth_date);
        assert!((0..=95).contains(&p.age()), "{id} is {}", p.age());
    }
    assert!(REGIONS.len() >= 10);
}

#[test]
fn register_fields_are_plausible() {
    let data = sample();
    let regions: HashSet<&str> = data.persons.iter().map(|p| p.region_code).collect();
    assert_eq!(regions.len(), REGIONS.len());
    let han = data
        .persons
        .iter()
        .filter(|p| p.ethnicity == "汉族")
        .count();
    assert!((4300..=4800).contains(&han), "{han} Han of 5000");
    let deceased = data
        .persons
        .iter()
        .filter(|p| p.status == PersonStatus::Deceased)
        .count();
    let moved = data
        .persons
        .iter()
        .filter(|p| p.status == PersonStatus::MovedOut)
        .count();
    assert!((25..=400).contains(&deceased), "{deceased} deceased");
    assert!((20..=250).contains(&moved), "{moved} moved out");
    let ages: HashSet<i32> = data.persons.iter().map(Person::age).collect();
    assert!(ages.contains(&0) && ages.iter().any(|&a| a >= 90));

    for p in &data.persons {
        let region = p.region().unwrap();
        assert!(
            p.address.starts_with(&region.address_prefix()),
            "{}",
            p.address
        );
        assert!(p.address.ends_with('室'), "{}", p.address);
        assert!(p.name.starts_with(p.family_name));
        let given = p.name.chars().count() - p.family_name.chars().count();
        assert!((1..=2).contains(&given), "{}", p.name);
        assert_eq!(p.household_id.len(), 9);
        assert!(p.household_id.bytes().all(|b| b.is_ascii_digit()));
        assert!(!p.native_place.is_empty());
        assert!(p.registration_date >= p.birth_date, "{}", p.id_number);
        assert!(p.registration_date <= REFERENCE_DATE);
        assert_eq!(p.death_date.is_some(), p.status == PersonStatus::Deceased);
        if let Some(died) = p.death_date {
            assert!(died > p.birth_date && died < REFERENCE_DATE);
            assert!(p.registration_date <= died);
        }
    }

    // Households hold families: everyone at one address, several with children.
    let mut households: HashMap<&str, Vec<&Person>> = HashMap::new();
    for p in &data.persons {
        households.entry(&p.household_id).or_default().push(p);
    }
    for members in households.values() {
        assert!(members.iter().all(|m| m.address == members[0].address));
        assert!(
            members
                .iter()
                .all(|m| m.region_code == members[0].region_code)
        );
    }
    let families = households.values().filter(|m| m.len() >= 3).count();
    assert!(families >= 100, "{families} households of three or more");
}

#[test]
fn marital_status_follows_the_marriage_records() {
    let data = sample();
    let persons = by_id(&data);
    let adults = data.persons.iter().filter(|p| p.age() >= 18).count();
    let paired: HashSet<&str> = data
        .marriages
        .iter()
        .flat_map(|m| [m.husband_id.as_str(), m.wife_id.as_str()])
        .collect();
    let share = paired.len() as f64 / adults as f64;
    assert!((0.2..=0.4).contains(&share), "{share} of adults married");

    let mut numbers = HashSet::new();
    for m in &data.marriages {
        assert!(numbers.insert(m.registration_no.as_str()));
        let h = persons[m.husband_id.as_str()];
        let w = persons[m.wife_id.as_str()];
        assert_eq!(h.gender, Gender::Male);
        assert_eq!(w.gender, Gender::Female);
        assert_eq!(m.husband_name, h.name);
        assert_eq!(m.wife_name, w.name);
        assert!(h.age_on(m.registered_on) >= MALE_MARRIAGE_AGE, "{m:?}");
        assert!(w.age_on(m.registered_on) >= FEMALE_MARRIAGE_AGE, "{m:?}");
        assert!(m.registered_on < REFERENCE_DATE);
        for spouse in [h, w] {
            assert!(spouse.death_date.is_none_or(|d| d > m.registered_on));
        }
        let region = h.region().unwrap();
        assert_eq!(m.registry_office, region.marriage_registry_office());
        assert_eq!(
            m.registration_no,
            format!(
                "J{}-{}-{}",
                region.code,
                m.registered_on.0,
                &m.registration_no[13..]
            )
        );
        assert_eq!(m.registration_no.len(), 19, "{}", m.registration_no);
        assert_eq!(
            m.divorced_on.is_some(),
            m.status == MarriageStatus::Divorced
        );
        if let Some(d) = m.divorced_on {
            assert!(d > m.registered_on && d < REFERENCE_DATE);
        }
    }

    let mut seen = HashSet::new();
    for p in &data.persons {
        let records: Vec<&Marriage> = data.marriages_of(&p.id_number).collect();
        let married: Vec<&&Marriage> = records
            .iter()
            .filter(|m| m.status == MarriageStatus::Married)
            .collect();
        assert!(married.len() <= 1, "{} has two marriages", p.id_number);
        let current = data.current_marriage(&p.id_number);
        if p.status != PersonStatus::Deceased {
            assert_eq!(
                p.marital_status == MaritalStatus::Married,
                current.is_some(),
                "{}",
                p.id_number
            );
        }
        let latest = records.iter().max_by_key(|m| m.registered_on);
        match p.marital_status {
            MaritalStatus::Single => assert!(records.is_empty()),
            MaritalStatus::Divorced => {
                assert_eq!(latest.unwrap().status, MarriageStatus::Divorced)
            }
            MaritalStatus::Widowed => {
                let m = latest.unwrap();
                assert_eq!(m.status, MarriageStatus::Married);
                let spouse = persons[m.spouse_of(&p.id_number).unwrap()];
                assert_eq!(spouse.status, PersonStatus::Deceased);
            }
            MaritalStatus::Married => {
                assert_eq!(latest.unwrap().status, MarriageStatus::Married);
                // Couples live together.
                let spouse = persons[latest.unwrap().spouse_of(&p.id_number).unwrap()];
                assert_eq!(spouse.household_id, p.household_id);
            }
        }
        if p.age() < 18 {
            assert_eq!(p.marital_status, MaritalStatus::Single);
        }
        seen.insert(p.marital_status);
    }
    assert_eq!(seen.len(), 4, "every marital status occurs: {seen:?}");
    let remarried = data
        .persons
        .iter()
        .filter(|p| data.marriages_of(&p.id_number).count() >= 2)
        .count();
    assert!(remarried > 0);
}

#[test]
fn businesses_have_valid_unique_codes_and_adult_representatives() {
    let data = sample();
    let persons = by_id(&data);
    assert_eq!(data.businesses.len(), 2000);
    let mut codes = HashSet::new();
    let mut names = HashSet::new();
    let mut per_rep: HashMap<&str, usize> = HashMap::new();
    let mut categories = HashSet::new();
    let mut statuses = HashSet::new();
    for b in &data.businesses {
        assert!(is_valid_credit_code(&b.credit_code), "{}", b.credit_code);
        assert!(codes.insert(b.credit_code.as_str()));
        assert!(names.insert(b.name.as_str()), "{}", b.name);
        assert!(b.credit_code.starts_with('9'));
        assert_eq!(b.credit_code[1..2].chars().next(), Some(b.category.code()));
        assert_eq!(&b.credit_code[2..8], b.region_code);
        // Codes given out since the 2015 reform carry "MA" organisation codes; older businesses
        // kept their numeric ones.
        assert_eq!(
            &b.credit_code[8..10] == "MA",
            b.established_on >= (2015, 10, 1),
            "{b:?}"
        );
        let region = region(b.region_code).unwrap();
        assert!(b.address.starts_with(&region.address_prefix()));
        let rep = persons[b.legal_representative_id.as_str()];
        assert_eq!(b.legal_representative_name, rep.name);
        assert_eq!(rep.status, PersonStatus::Active);
        assert!(rep.age() >= ADULT_AGE);
        assert!(rep.age_on(b.established_on) >= ADULT_AGE, "{b:?}");
        assert!(b.established_on < REFERENCE_DATE);
        assert!(b.registered_capital > 0);
        assert!(!b.business_scope.is_empty());
        *per_rep.entry(&b.legal_representative_id).or_default() += 1;
        categories.insert(b.category);
        statuses.insert(b.status);
    }
    assert_eq!(categories.len(), 3);
    assert_eq!(statuses.len(), 3);
    assert!(per_rep.values().all(|&n| (1..=4).contains(&n)));
    assert!(per_rep.values().filter(|&&n| n >= 2).count() >= 50);
}

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let size = DemoSize { persons: 800 };
    let a = generate(42, size);
    let b = generate(42, size);
    assert_eq!(a, b);
    let c = generate(43, size);
    assert_ne!(a.persons, c.persons);
    assert_ne!(a.marriages, c.marriages);
    assert_ne!(a.businesses, c.businesses);
    let ids_a: BTreeSet<&str> = a.persons.iter().map(|p| p.id_number.as_str()).collect();
    let ids_c: BTreeSet<&str> = c.persons.iter().map(|p| p.id_number.as_str()).collect();
    assert!(ids_a.intersection(&ids_c).count() < 10);
}

fn check_picks(data: &DemoData) {
    let (man, woman) = data.eligible_couple();
    assert_eq!(man.gender, Gender::Male);
    assert_eq!(woman.gender, Gender::Female);
    assert!(man.age() >= MALE_MARRIAGE_AGE && woman.age() >= FEMALE_MARRIAGE_AGE);
    for p in [man, woman] {
        assert_eq!(p.status, PersonStatus::Active);
        assert_eq!(p.marital_status, MaritalStatus::Single);
        assert_eq!(data.marriages_of(&p.id_number).count(), 0);
    }
    assert_eq!(man.region().unwrap().city, woman.region().unwrap().city);
    assert_ne!(man.household_id, woman.household_id);

    let married = data.married_person();
    assert_eq!(married.status, PersonStatus::Active);
    assert_eq!(married.marital_status, MaritalStatus::Married);
    let m = data.current_marriage(&married.id_number).unwrap();
    let spouse = data
        .person(m.spouse_of(&married.id_number).unwrap())
        .unwrap();
    assert_eq!(spouse.status, PersonStatus::Active);
    assert_eq!(spouse.marital_status, MaritalStatus::Married);

    let rep = data.multi_business_representative();
    assert_eq!(rep.status, PersonStatus::Active);
    assert!(rep.age() >= ADULT_AGE);
    let held = data.businesses_of(&rep.id_number).count();
    assert!((2..=4).contains(&held), "{held}");

    let dead = data.deceased_person();
    assert_eq!(dead.status, PersonStatus::Deceased);
    assert!(dead.death_date.is_some());

    for p in [man, woman, married, rep, dead] {
        assert_eq!(data.person(&p.id_number), Some(p));
    }
}

#[test]
fn picks_meet_their_contracts_at_every_size() {
    for seed in [0, 1, 2, 99, u64::MAX] {
        check_picks(&generate(seed, DemoSize { persons: 500 }));
    }
    check_picks(&generate(5, DemoSize { persons: 1200 }));
    check_picks(&sample());
    // Below the supported minimum the picks still exist rather than panic.
    let tiny = generate(3, DemoSize { persons: 0 });
    assert_eq!(tiny.persons.len(), 6);
    check_picks(&tiny);
}

#[test]
fn write_jsonl_writes_one_object_per_record_with_exactly_the_fields() {
    let data = generate(11, DemoSize { persons: 600 });
    let dir = std::env::temp_dir().join(format!("huitong-demo-data-test-{}", std::process::id()));
    data.write_jsonl(&dir).unwrap();

    let read = |file: &str, fields: &[&str]| -> Vec<serde_json::Map<String, Value>> {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(!text.contains("\\u"), "{file} escapes non-ASCII text");
        assert!(text.ends_with('\n'));
        let want: BTreeSet<&str> = fields.iter().copied().collect();
        text.lines()
            .map(|line| {
                let Value::Object(map) = serde_json::from_str::<Value>(line).unwrap() else {
                    panic!("{file}: not an object: {line}");
                };
                let keys: BTreeSet<&str> = map.keys().map(String::as_str).collect();
                assert_eq!(keys, want, "{file}");
                map
            })
            .collect()
    };
    let persons = read(HOUSEHOLD_REGISTER_FILE, &PERSON_FIELDS);
    let marriages = read(MARRIAGE_REGISTRATIONS_FILE, &MARRIAGE_FIELDS);
    let businesses = read(BUSINESS_LICENCES_FILE, &BUSINESS_FIELDS);
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(persons.len(), data.persons.len());
    assert_eq!(marriages.len(), data.marriages.len());
    assert_eq!(businesses.len(), data.businesses.len());
    for (line, p) in persons.iter().zip(&data.persons) {
        assert_eq!(line["id_number"], p.id_number.as_str());
        assert_eq!(line["name"], p.name.as_str());
        assert_eq!(line["gender"], p.gender.as_str());
        assert_eq!(line["birth_date"], format_date(p.birth_date).as_str());
        assert_eq!(line["marital_status"], p.marital_status.as_str());
        assert_eq!(line["status"], p.status.as_str());
        assert!(line.values().all(Value::is_string));
    }
    for (line, m) in marriages.iter().zip(&data.marriages) {
        assert_eq!(line["registration_no"], m.registration_no.as_str());
        assert_eq!(line["wife_id"], m.wife_id.as_str());
        assert_eq!(line["registered_on"], format_date(m.registered_on).as_str());
        assert!(line.values().all(Value::is_string));
    }
    for (line, b) in businesses.iter().zip(&data.businesses) {
        assert_eq!(line["credit_code"], b.credit_code.as_str());
        assert_eq!(
            line["registered_capital"].as_i64(),
            Some(b.registered_capital)
        );
        assert_eq!(line["status"], b.status.as_str());
    }
}
