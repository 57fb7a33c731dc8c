//! Deterministic synthetic records for the demo: a household register (public security),
//! marriage registrations (civil affairs) and business licences (market regulation).
//!
//! The three data sets are generated together so that they agree with each other: every
//! marriage names two people from the register who were of legal age on the day, every
//! person's `marital_status` follows from their marriage records, and every business's legal
//! representative is an active adult from the register. Identifiers carry valid check
//! characters (GB 11643 resident ID numbers, GB 32100 unified social credit codes), so that the
//! demo can show format validation passing on real-looking data.
//!
//! Nothing reads the clock or the environment: the same seed and size always give the same
//! records, and ages are measured against [`REFERENCE_DATE`].
//!
//! A marriage registration keeps status `married` after a spouse dies, as civil-affairs records
//! do (a death is registered by public security, not by the marriage registry). A person is
//! therefore currently married when they hold a `married` record whose other spouse is not
//! deceased; [`DemoData::current_marriage`] applies that rule, and a surviving spouse is
//! `widowed` in the register.

// The binary uses only part of this API (the scenario, configs and tests use different parts),
// and a binary crate counts every unused `pub` item as dead.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write as _};
use std::path::Path;

use serde_json::{Value, json};

#[cfg(test)]
mod tests;

/// A calendar date as (year, month, day).
pub type Date = (i32, u32, u32);

/// "Today" for the generated data; fixed so that output never depends on when it runs.
pub const REFERENCE_DATE: Date = (2026, 11, 1);

/// Minimum age at which a man may register a marriage (Civil Code art. 1047).
pub const MALE_MARRIAGE_AGE: i32 = 22;
/// Minimum age at which a woman may register a marriage (Civil Code art. 1047).
pub const FEMALE_MARRIAGE_AGE: i32 = 20;
/// Age of full civil capacity, required of a legal representative.
pub const ADULT_AGE: i32 = 18;

/// Resource names of the three data sets in the exchange catalogue.
pub const HOUSEHOLD_REGISTER: &str = "public-security/household-register";
pub const MARRIAGE_REGISTRATIONS: &str = "civil-affairs/marriage-registrations";
pub const BUSINESS_LICENCES: &str = "market-regulation/business-licences";

/// File names written by [`DemoData::write_jsonl`].
pub const HOUSEHOLD_REGISTER_FILE: &str = "household-register.jsonl";
pub const MARRIAGE_REGISTRATIONS_FILE: &str = "marriage-registrations.jsonl";
pub const BUSINESS_LICENCES_FILE: &str = "business-licences.jsonl";

/// JSON keys of one household-register line, in catalogue order.
pub const PERSON_FIELDS: [&str; 11] = [
    "id_number",
    "name",
    "gender",
    "birth_date",
    "ethnicity",
    "native_place",
    "address",
    "household_id",
    "marital_status",
    "registration_date",
    "status",
];

/// JSON keys of one marriage-registration line, in catalogue order.
pub const MARRIAGE_FIELDS: [&str; 8] = [
    "registration_no",
    "husband_id",
    "husband_name",
    "wife_id",
    "wife_name",
    "registered_on",
    "registry_office",
    "status",
];

/// JSON keys of one business-licence line, in catalogue order.
pub const BUSINESS_FIELDS: [&str; 9] = [
    "credit_code",
    "name",
    "legal_representative_id",
    "legal_representative_name",
    "registered_capital",
    "established_on",
    "business_scope",
    "status",
    "address",
];

/// Beyond this the 500 sequence numbers per (region, birth date, gender) could run out; the
/// generator clamps to it rather than loop looking for a free ID number.
pub const MAX_PERSONS: usize = 1_000_000;

/// How much data to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSize {
    /// Persons in the register. Marriages pair roughly 30% of adults; businesses number
    /// `persons * 0.4`. Clamped to at least the handful of persons the scenario picks need
    /// and at most [`MAX_PERSONS`].
    pub persons: usize,
}

impl Default for DemoSize {
    fn default() -> Self {
        DemoSize { persons: 5000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaritalStatus {
    Single,
    Married,
    Divorced,
    Widowed,
}

impl MaritalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MaritalStatus::Single => "single",
            MaritalStatus::Married => "married",
            MaritalStatus::Divorced => "divorced",
            MaritalStatus::Widowed => "widowed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PersonStatus {
    Active,
    Deceased,
    MovedOut,
}

impl PersonStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PersonStatus::Active => "active",
            PersonStatus::Deceased => "deceased",
            PersonStatus::MovedOut => "moved-out",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarriageStatus {
    Married,
    Divorced,
}

impl MarriageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MarriageStatus::Married => "married",
            MarriageStatus::Divorced => "divorced",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BusinessStatus {
    Active,
    Revoked,
    Cancelled,
}

impl BusinessStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BusinessStatus::Active => "active",
            BusinessStatus::Revoked => "revoked",
            BusinessStatus::Cancelled => "cancelled",
        }
    }
}

/// Second character of a credit code issued by market regulation (GB 32100 table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BusinessCategory {
    /// 企业, category "1".
    Enterprise,
    /// 个体工商户, category "2".
    IndividualBusiness,
    /// 农民专业合作社, category "3".
    FarmerCooperative,
}

impl BusinessCategory {
    pub fn code(self) -> char {
        match self {
            BusinessCategory::Enterprise => '1',
            BusinessCategory::IndividualBusiness => '2',
            BusinessCategory::FarmerCooperative => '3',
        }
    }
}

/// A county-level administrative division (GB/T 2260) that people live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub code: &'static str,
    pub province: &'static str,
    pub city: &'static str,
    pub district: &'static str,
    /// City and district without their suffixes, as they appear in business names.
    pub city_short: &'static str,
    pub district_short: &'static str,
    /// 籍贯 of people born here, e.g. "浙江杭州".
    pub native_place: &'static str,
    pub roads: &'static [&'static str],
}

impl Region {
    /// "北京市朝阳区" for a municipality, "浙江省杭州市西湖区" otherwise.
    pub fn address_prefix(&self) -> String {
        if self.province == self.city {
            format!("{}{}", self.city, self.district)
        } else {
            format!("{}{}{}", self.province, self.city, self.district)
        }
    }

    pub fn marriage_registry_office(&self) -> String {
        format!("{}{}民政局婚姻登记处", self.city, self.district)
    }
}

/// The regions people are generated in.
pub const REGIONS: &[Region] = &[
    Region {
        code: "110101",
        province: "北京市",
        city: "北京市",
        district: "东城区",
        city_short: "北京",
        district_short: "东城",
        native_place: "北京",
        roads: &[
            "东长安街",
            "王府井大街",
            "东四北大街",
            "朝阳门内大街",
            "和平里东街",
            "安定门外大街",
        ],
    },
    Region {
        code: "110105",
        province: "北京市",
        city: "北京市",
        district: "朝阳区",
        city_short: "北京",
        district_short: "朝阳",
        native_place: "北京",
        roads: &[
            "建国路",
            "朝阳北路",
            "东三环中路",
            "望京街",
            "安立路",
            "工体北路",
        ],
    },
    Region {
        code: "110108",
        province: "北京市",
        city: "北京市",
        district: "海淀区",
        city_short: "北京",
        district_short: "海淀",
        native_place: "北京",
        roads: &[
            "中关村大街",
            "学院路",
            "海淀大街",
            "知春路",
            "北四环西路",
            "万泉河路",
        ],
    },
    Region {
        code: "120101",
        province: "天津市",
        city: "天津市",
        district: "和平区",
        city_short: "天津",
        district_short: "和平",
        native_place: "天津",
        roads: &["南京路", "滨江道", "营口道", "山西路", "解放北路"],
    },
    Region {
        code: "310104",
        province: "上海市",
        city: "上海市",
        district: "徐汇区",
        city_short: "上海",
        district_short: "徐汇",
        native_place: "上海",
        roads: &[
            "漕溪北路",
            "肇嘉浜路",
            "衡山路",
            "田林路",
            "虹桥路",
            "龙华中路",
        ],
    },
    Region {
        code: "310115",
        province: "上海市",
        city: "上海市",
        district: "浦东新区",
        city_short: "上海",
        district_short: "浦东",
        native_place: "上海",
        roads: &[
            "世纪大道",
            "张杨路",
            "陆家嘴环路",
            "浦东南路",
            "锦绣路",
            "东方路",
        ],
    },
    Region {
        code: "320102",
        province: "江苏省",
        city: "南京市",
        district: "玄武区",
        city_short: "南京",
        district_short: "玄武",
        native_place: "江苏南京",
        roads: &[
            "中山路",
            "北京东路",
            "龙蟠路",
            "珠江路",
            "玄武大道",
            "太平北路",
        ],
    },
    Region {
        code: "330106",
        province: "浙江省",
        city: "杭州市",
        district: "西湖区",
        city_short: "杭州",
        district_short: "西湖",
        native_place: "浙江杭州",
        roads: &[
            "文三路",
            "天目山路",
            "教工路",
            "古墩路",
            "文一西路",
            "西溪路",
        ],
    },
    Region {
        code: "350102",
        province: "福建省",
        city: "福州市",
        district: "鼓楼区",
        city_short: "福州",
        district_short: "鼓楼",
        native_place: "福建福州",
        roads: &["五四路", "东街", "杨桥东路", "湖东路", "华林路"],
    },
    Region {
        code: "370202",
        province: "山东省",
        city: "青岛市",
        district: "市南区",
        city_short: "青岛",
        district_short: "市南",
        native_place: "山东青岛",
        roads: &["香港中路", "山东路", "东海西路", "延安三路", "南京路"],
    },
    Region {
        code: "420106",
        province: "湖北省",
        city: "武汉市",
        district: "武昌区",
        city_short: "武汉",
        district_short: "武昌",
        native_place: "湖北武汉",
        roads: &[
            "中北路",
            "武珞路",
            "中南路",
            "友谊大道",
            "和平大道",
            "解放路",
        ],
    },
    Region {
        code: "440106",
        province: "广东省",
        city: "广州市",
        district: "天河区",
        city_short: "广州",
        district_short: "天河",
        native_place: "广东广州",
        roads: &[
            "天河路",
            "体育西路",
            "黄埔大道西",
            "中山大道西",
            "林和西路",
            "天河北路",
        ],
    },
    Region {
        code: "440305",
        province: "广东省",
        city: "深圳市",
        district: "南山区",
        city_short: "深圳",
        district_short: "南山",
        native_place: "广东深圳",
        roads: &[
            "深南大道",
            "科苑路",
            "南海大道",
            "后海大道",
            "桃园路",
            "南山大道",
        ],
    },
    Region {
        code: "500103",
        province: "重庆市",
        city: "重庆市",
        district: "渝中区",
        city_short: "重庆",
        district_short: "渝中",
        native_place: "重庆",
        roads: &["民族路", "中山一路", "邹容路", "长江一路", "大坪正街"],
    },
    Region {
        code: "510107",
        province: "四川省",
        city: "成都市",
        district: "武侯区",
        city_short: "成都",
        district_short: "武侯",
        native_place: "四川成都",
        roads: &[
            "人民南路四段",
            "武侯祠大街",
            "科华北路",
            "玉林南路",
            "二环路南四段",
            "高升桥东路",
        ],
    },
    Region {
        code: "610113",
        province: "陕西省",
        city: "西安市",
        district: "雁塔区",
        city_short: "西安",
        district_short: "雁塔",
        native_place: "陕西西安",
        roads: &[
            "长安南路",
            "小寨东路",
            "雁塔西路",
            "科技路",
            "高新路",
            "电子正街",
        ],
    },
];

/// The region with this GB/T 2260 code, if it is one of [`REGIONS`].
pub fn region(code: &str) -> Option<&'static Region> {
    REGIONS.iter().find(|r| r.code == code)
}

/// One entry of the household register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id_number: String,
    pub name: String,
    pub family_name: &'static str,
    pub gender: Gender,
    pub birth_date: Date,
    pub ethnicity: &'static str,
    pub native_place: &'static str,
    pub address: String,
    pub household_id: String,
    pub marital_status: MaritalStatus,
    pub registration_date: Date,
    pub status: PersonStatus,
    /// Set exactly when `status` is deceased; not part of the exchanged record.
    pub death_date: Option<Date>,
    pub region_code: &'static str,
}

impl Person {
    /// Completed years of age on `on`.
    pub fn age_on(&self, on: Date) -> i32 {
        age_on(self.birth_date, on)
    }

    /// Age on [`REFERENCE_DATE`].
    pub fn age(&self) -> i32 {
        self.age_on(REFERENCE_DATE)
    }

    pub fn region(&self) -> Option<&'static Region> {
        region(self.region_code)
    }

    /// The household-register record, keys as in [`PERSON_FIELDS`].
    pub fn to_json(&self) -> Value {
        json!({
            "id_number": self.id_number,
            "name": self.name,
            "gender": self.gender.as_str(),
            "birth_date": format_date(self.birth_date),
            "ethnicity": self.ethnicity,
            "native_place": self.native_place,
            "address": self.address,
            "household_id": self.household_id,
            "marital_status": self.marital_status.as_str(),
            "registration_date": format_date(self.registration_date),
            "status": self.status.as_str(),
        })
    }
}

/// One marriage registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marriage {
    pub registration_no: String,
    pub husband_id: String,
    pub husband_name: String,
    pub wife_id: String,
    pub wife_name: String,
    pub registered_on: Date,
    pub registry_office: String,
    pub status: MarriageStatus,
    /// Set exactly when `status` is divorced; not part of the exchanged record.
    pub divorced_on: Option<Date>,
    /// The husband's region, where the registration took place.
    pub region_code: &'static str,
}

impl Marriage {
    /// The marriage-registration record, keys as in [`MARRIAGE_FIELDS`].
    pub fn to_json(&self) -> Value {
        json!({
            "registration_no": self.registration_no,
            "husband_id": self.husband_id,
            "husband_name": self.husband_name,
            "wife_id": self.wife_id,
            "wife_name": self.wife_name,
            "registered_on": format_date(self.registered_on),
            "registry_office": self.registry_office,
            "status": self.status.as_str(),
        })
    }

    pub fn involves(&self, id_number: &str) -> bool {
        self.husband_id == id_number || self.wife_id == id_number
    }

    /// The other spouse's ID number, if `id_number` is one of the spouses.
    pub fn spouse_of(&self, id_number: &str) -> Option<&str> {
        if self.husband_id == id_number {
            Some(&self.wife_id)
        } else if self.wife_id == id_number {
            Some(&self.husband_id)
        } else {
            None
        }
    }
}

/// One business licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Business {
    pub credit_code: String,
    pub name: String,
    pub category: BusinessCategory,
    pub legal_representative_id: String,
    pub legal_representative_name: String,
    /// In yuan.
    pub registered_capital: i64,
    pub established_on: Date,
    pub business_scope: &'static str,
    pub status: BusinessStatus,
    pub address: String,
    pub region_code: &'static str,
}

impl Business {
    /// The business-licence record, keys as in [`BUSINESS_FIELDS`].
    pub fn to_json(&self) -> Value {
        json!({
            "credit_code": self.credit_code,
            "name": self.name,
            "legal_representative_id": self.legal_representative_id,
            "legal_representative_name": self.legal_representative_name,
            "registered_capital": self.registered_capital,
            "established_on": format_date(self.established_on),
            "business_scope": self.business_scope,
            "status": self.status.as_str(),
            "address": self.address,
        })
    }
}

/// Indices into [`DemoData::persons`] of the people the scenario needs; built into the data by
/// [`generate`] so that they exist at every size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picks {
    pub eligible_man: usize,
    pub eligible_woman: usize,
    pub married: usize,
    pub multi_business_representative: usize,
    pub deceased: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoData {
    pub persons: Vec<Person>,
    pub marriages: Vec<Marriage>,
    pub businesses: Vec<Business>,
    pub picks: Picks,
}

impl DemoData {
    /// Writes household-register.jsonl, marriage-registrations.jsonl and
    /// business-licences.jsonl into `dir` (created if missing): one JSON object per line, keys
    /// exactly [`PERSON_FIELDS`], [`MARRIAGE_FIELDS`] and [`BUSINESS_FIELDS`], UTF-8 with
    /// Chinese text unescaped.
    pub fn write_jsonl(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        write_lines(
            &dir.join(HOUSEHOLD_REGISTER_FILE),
            self.persons.iter().map(Person::to_json),
        )?;
        write_lines(
            &dir.join(MARRIAGE_REGISTRATIONS_FILE),
            self.marriages.iter().map(Marriage::to_json),
        )?;
        write_lines(
            &dir.join(BUSINESS_LICENCES_FILE),
            self.businesses.iter().map(Business::to_json),
        )
    }

    pub fn person(&self, id_number: &str) -> Option<&Person> {
        self.persons.iter().find(|p| p.id_number == id_number)
    }

    /// Every marriage registration naming this person, oldest first.
    pub fn marriages_of<'a>(&'a self, id_number: &'a str) -> impl Iterator<Item = &'a Marriage> {
        self.marriages.iter().filter(move |m| m.involves(id_number))
    }

    /// The registration of this person's subsisting marriage: status married and the other
    /// spouse not deceased.
    pub fn current_marriage(&self, id_number: &str) -> Option<&Marriage> {
        self.marriages.iter().find(|m| {
            m.status == MarriageStatus::Married
                && m.spouse_of(id_number)
                    .and_then(|spouse| self.person(spouse))
                    .is_some_and(|spouse| spouse.status != PersonStatus::Deceased)
        })
    }

    /// Every licence this person is the legal representative of.
    pub fn businesses_of<'a>(&'a self, id_number: &'a str) -> impl Iterator<Item = &'a Business> {
        self.businesses
            .iter()
            .filter(move |b| b.legal_representative_id == id_number)
    }

    /// An unmarried man (>= 22, active, single) and an unmarried woman (>= 20, active, single),
    /// not related and living in the same district, who could register a marriage on
    /// [`REFERENCE_DATE`].
    ///
    /// Panics only if `self` was not produced by [`generate`].
    pub fn eligible_couple(&self) -> (&Person, &Person) {
        (
            &self.persons[self.picks.eligible_man],
            &self.persons[self.picks.eligible_woman],
        )
    }

    /// An active person who is currently married, to an active spouse, so that a second
    /// marriage would be refused.
    pub fn married_person(&self) -> &Person {
        &self.persons[self.picks.married]
    }

    /// An active adult who is legal representative of two or three businesses.
    pub fn multi_business_representative(&self) -> &Person {
        &self.persons[self.picks.multi_business_representative]
    }

    /// A deceased person, for a check that must fail.
    pub fn deceased_person(&self) -> &Person {
        &self.persons[self.picks.deceased]
    }
}

fn write_lines(path: &Path, records: impl Iterator<Item = Value>) -> std::io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for record in records {
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

// ---------------------------------------------------------------------------------------------
// Check characters

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// The ISO 7064 MOD 11-2 check character of a resident ID number (GB 11643) from its first 17
/// digits. A character that is not a digit counts as 0, and characters after the 17th are
/// ignored; use [`is_valid_id_number`] to validate a whole number.
pub fn id_check_char(first17: &str) -> char {
    let sum: u32 = first17
        .chars()
        .zip(ID_WEIGHTS)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    ID_CHECK[(sum % 11) as usize]
}

/// 18 characters: 17 digits and the right check character (upper-case X).
pub fn is_valid_id_number(id: &str) -> bool {
    id.len() == 18
        && id.is_char_boundary(17)
        && id[..17].bytes().all(|b| b.is_ascii_digit())
        && id[17..].chars().eq([id_check_char(&id[..17])])
}

/// The characters of a unified social credit code (GB 32100): digits and the capital letters
/// except I, O, Z, S and V; a character's value is its index.
pub const CREDIT_CODE_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// The GB 32100 check character of a unified social credit code from its first 17
/// characters. A character outside [`CREDIT_CODE_ALPHABET`] counts as 0, and characters after
/// the 17th are ignored; use [`is_valid_credit_code`] to validate a whole code.
pub fn credit_code_check_char(first17: &str) -> char {
    let sum: u32 = first17
        .bytes()
        .zip(CREDIT_WEIGHTS)
        .map(|(b, w)| credit_value(b).unwrap_or(0) * w)
        .sum();
    char::from(CREDIT_CODE_ALPHABET[((31 - sum % 31) % 31) as usize])
}

fn credit_value(b: u8) -> Option<u32> {
    CREDIT_CODE_ALPHABET
        .iter()
        .position(|&a| a == b)
        .map(|i| i as u32)
}

/// 18 characters of [`CREDIT_CODE_ALPHABET`] whose last is the GB 32100 check character and
/// whose organisation code (characters 9 to 17) carries a valid GB 11714 check character.
pub fn is_valid_credit_code(code: &str) -> bool {
    code.len() == 18
        && code.bytes().all(|b| credit_value(b).is_some())
        && code[17..].chars().eq([credit_code_check_char(&code[..17])])
        && code[16..17].chars().eq([org_code_check_char(&code[8..16])])
}

const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// The GB 11714 check character of an organisation code from its first 8 characters (digits
/// and capital letters, A = 10 ... Z = 35; anything else counts as 0).
pub fn org_code_check_char(first8: &str) -> char {
    let sum: u32 = first8
        .chars()
        .zip(ORG_WEIGHTS)
        .map(|(c, w)| {
            c.to_digit(36)
                .filter(|_| !c.is_ascii_lowercase())
                .unwrap_or(0)
                * w
        })
        .sum();
    match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        d => char::from_digit(d, 10).unwrap_or('0'),
    }
}

// ---------------------------------------------------------------------------------------------
// Dates

pub fn is_leap_year(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days since 1970-01-01 (proleptic Gregorian), after H. Hinnant's `days_from_civil`.
pub fn days_from_civil((y, m, d): Date) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u32, d as u32)
}

/// Completed years between `birth` and `on`; someone born on 29 February comes of age on
/// 1 March in common years.
pub fn age_on(birth: Date, on: Date) -> i32 {
    let years = on.0 - birth.0;
    if (on.1, on.2) < (birth.1, birth.2) {
        years - 1
    } else {
        years
    }
}

/// The first day on which someone born on `birth` is `years` old.
pub fn nth_birthday(birth: Date, years: i32) -> Date {
    let y = birth.0 + years;
    if (birth.1, birth.2) == (2, 29) && !is_leap_year(y) {
        (y, 3, 1)
    } else {
        (y, birth.1, birth.2)
    }
}

/// "YYYY-MM-DD".
pub fn format_date((y, m, d): Date) -> String {
    format!("{y:04}-{m:02}-{d:02}")
}

fn day(d: Date) -> i64 {
    days_from_civil(d)
}

fn date(days: i64) -> Date {
    civil_from_days(days)
}

// ---------------------------------------------------------------------------------------------
// Randomness

/// SplitMix64: tiny, fast, and stable across platforms and releases, which is all a
/// reproducible demo needs.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Mixed with a constant so that seed 0 does not start from an all-zero state.
        Rng(seed ^ 0x6875_6974_6f6e_6721)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n is 0), by multiply-shift; the bias is below 2^-40 for the
    /// ranges used here.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform in `lo..=hi`; `lo` when the range is empty.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut roll = self.below(total);
        for (item, w) in items {
            if roll < u64::from(*w) {
                return item;
            }
            roll -= u64::from(*w);
        }
        &items[items.len() - 1].0
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

/// Common surnames with weights roughly proportional to their share of the population
/// (per 10 000, 2020 census order), plus a few two-character ones.
const SURNAMES: &[(&str, u32)] = &[
    ("王", 710),
    ("李", 700),
    ("张", 670),
    ("刘", 540),
    ("陈", 450),
    ("杨", 310),
    ("黄", 210),
    ("赵", 200),
    ("吴", 190),
    ("周", 190),
    ("徐", 130),
    ("孙", 120),
    ("马", 120),
    ("朱", 110),
    ("胡", 100),
    ("郭", 100),
    ("何", 98),
    ("林", 94),
    ("高", 93),
    ("罗", 90),
    ("郑", 80),
    ("梁", 78),
    ("谢", 70),
    ("宋", 60),
    ("唐", 60),
    ("许", 58),
    ("韩", 55),
    ("冯", 54),
    ("邓", 53),
    ("曹", 52),
    ("彭", 50),
    ("曾", 48),
    ("肖", 47),
    ("田", 46),
    ("董", 45),
    ("袁", 44),
    ("潘", 43),
    ("于", 42),
    ("蒋", 41),
    ("蔡", 40),
    ("余", 39),
    ("杜", 38),
    ("叶", 37),
    ("程", 36),
    ("苏", 35),
    ("魏", 34),
    ("吕", 33),
    ("丁", 32),
    ("任", 31),
    ("沈", 30),
    ("欧阳", 4),
    ("司马", 1),
    ("诸葛", 1),
    ("上官", 1),
];

const MALE_GIVEN: &[&str] = &[
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "斌", "鹏", "辉", "浩", "宇", "轩",
    "博", "文", "建", "国", "志", "华", "海", "峰", "俊", "晨", "子", "凯", "旭", "鑫", "毅", "刚",
    "平", "东", "成", "林", "阳", "亮", "健", "翔",
];

const FEMALE_GIVEN: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀", "英", "玲", "婷", "雪", "慧", "颖", "琳",
    "欣", "怡", "萱", "梓", "涵", "雨", "佳", "思", "梦", "瑶", "晶", "倩", "燕", "红", "梅", "兰",
    "月", "洁", "妍", "蕾", "璐", "薇", "丹", "悦",
];

/// Han about 91%, the rest among the larger minorities, as in the 2020 census.
const ETHNICITIES: &[(&str, u32)] = &[
    ("汉族", 9100),
    ("壮族", 150),
    ("回族", 90),
    ("满族", 80),
    ("维吾尔族", 90),
    ("苗族", 90),
    ("彝族", 80),
    ("土家族", 80),
    ("藏族", 60),
    ("蒙古族", 50),
    ("侗族", 30),
    ("布依族", 30),
    ("瑶族", 25),
    ("白族", 25),
    ("朝鲜族", 20),
];

/// 籍贯 of people whose family came from elsewhere.
const NATIVE_PLACES: &[&str] = &[
    "浙江杭州",
    "浙江温州",
    "浙江宁波",
    "江苏南京",
    "江苏苏州",
    "江苏徐州",
    "山东济南",
    "山东青岛",
    "山东临沂",
    "河南郑州",
    "河南洛阳",
    "河南南阳",
    "河北石家庄",
    "河北保定",
    "湖南长沙",
    "湖南衡阳",
    "湖北武汉",
    "湖北襄阳",
    "四川成都",
    "四川绵阳",
    "广东广州",
    "广东梅州",
    "广东潮州",
    "福建福州",
    "福建泉州",
    "安徽合肥",
    "安徽阜阳",
    "江西南昌",
    "陕西西安",
    "山西太原",
    "辽宁沈阳",
    "吉林长春",
    "黑龙江哈尔滨",
    "北京",
    "上海",
    "天津",
    "重庆",
    "广西桂林",
    "云南昆明",
    "贵州贵阳",
    "甘肃兰州",
];

const COMPOUNDS: &[&str] = &[
    "阳光花园",
    "翠苑小区",
    "华贸公寓",
    "金色家园",
    "锦绣华庭",
    "世纪新城",
    "和平里小区",
    "丽景苑",
    "碧水湾",
    "城市花园",
    "桂花园",
    "东方名苑",
    "枫林绿洲",
    "幸福里",
    "学府雅居",
    "滨江花园",
    "紫荆苑",
    "新华小区",
    "天鹅湖",
    "春晓苑",
];

/// Age bands (inclusive) weighted roughly like the 2020 census pyramid.
const AGE_BANDS: &[((i32, i32), u32)] = &[
    ((0, 4), 55),
    ((5, 9), 64),
    ((10, 14), 60),
    ((15, 19), 52),
    ((20, 24), 53),
    ((25, 29), 60),
    ((30, 34), 88),
    ((35, 39), 69),
    ((40, 44), 66),
    ((45, 49), 81),
    ((50, 54), 87),
    ((55, 59), 73),
    ((60, 64), 51),
    ((65, 69), 52),
    ((70, 74), 36),
    ((75, 79), 22),
    ((80, 84), 14),
    ((85, 89), 8),
    ((90, 95), 3),
];

const TRADE_NAME_FIRST: &[&str] = &[
    "明", "华", "鼎", "恒", "瑞", "金", "博", "宏", "新", "东", "天", "中", "嘉", "盛", "汇", "信",
    "泰", "润", "安", "永", "祥", "丰", "德", "卓", "锦", "腾", "诚", "正", "聚", "众",
];

const TRADE_NAME_SECOND: &[&str] = &[
    "远", "信", "盛", "通", "丰", "桥", "达", "锐", "方", "宇", "源", "辉", "和", "成", "创", "联",
    "航", "星", "泽", "睿", "途", "鑫", "益", "晟", "凯", "耀", "康", "弘", "川", "智",
];

/// Industry word in an enterprise name, with a matching business scope.
const INDUSTRIES: &[(&str, &str)] = &[
    (
        "科技",
        "技术开发、技术咨询、技术服务；软件开发；计算机系统服务",
    ),
    (
        "信息技术",
        "信息系统集成服务；数据处理和存储支持服务；软件开发；信息技术咨询服务",
    ),
    (
        "贸易",
        "日用百货、五金产品、电子产品销售；货物进出口；技术进出口",
    ),
    ("餐饮管理", "餐饮服务；餐饮管理；食品经营（销售预包装食品）"),
    (
        "建筑工程",
        "建设工程施工；建筑装饰材料销售；住宅室内装饰装修",
    ),
    (
        "文化传媒",
        "组织文化艺术交流活动；广告设计、代理；广告制作；会议及展览服务",
    ),
    (
        "物流",
        "普通货物仓储服务；国内货物运输代理；道路货物运输（不含危险货物）",
    ),
    (
        "企业管理咨询",
        "企业管理咨询；市场营销策划；财务咨询；商务信息咨询",
    ),
    (
        "电子商务",
        "互联网销售（除销售需要许可的商品）；电子产品销售；服装服饰零售",
    ),
    (
        "医疗器械",
        "第一类医疗器械销售；第二类医疗器械销售；医疗器械租赁",
    ),
    (
        "教育科技",
        "教育咨询服务（不含涉许可审批的教育培训活动）；技术开发；技术服务",
    ),
    (
        "环保科技",
        "环保咨询服务；大气污染治理；水污染治理；技术服务",
    ),
];

const SHOPS: &[(&str, &str)] = &[
    ("便利店", "日用百货、预包装食品零售"),
    ("面馆", "小餐饮服务"),
    ("理发店", "理发服务；美容服务"),
    ("五金店", "五金产品零售；建筑材料销售"),
    ("水果店", "新鲜水果零售；食用农产品零售"),
    ("服装店", "服装服饰零售；鞋帽零售"),
    ("茶叶店", "茶叶零售；预包装食品销售"),
    ("家电维修部", "家用电器修理；日用电器修理"),
];

const COOPERATIVES: &[(&str, &str)] = &[
    (
        "蔬菜种植",
        "组织收购、销售成员种植的蔬菜；引进新技术、新品种，开展技术培训和咨询服务",
    ),
    (
        "茶叶种植",
        "组织收购、销售成员种植的茶叶；开展与茶叶生产有关的技术培训和信息服务",
    ),
    (
        "水果种植",
        "组织收购、销售成员种植的水果；为成员提供农业生产资料的购买服务",
    ),
    (
        "水产养殖",
        "组织成员开展水产养殖；收购、销售成员养殖的水产品；提供养殖技术服务",
    ),
];

const OFFICE_BUILDINGS: &[&str] = &[
    "科技大厦",
    "国际大厦",
    "商务中心A座",
    "商务中心B座",
    "创新园2号楼",
    "金融中心",
    "时代广场",
    "财富中心",
    "软件园3号楼",
    "数码港大厦",
];

const ENTERPRISE_CAPITAL: &[(i64, u32)] = &[
    (100_000, 10),
    (500_000, 15),
    (1_000_000, 25),
    (2_000_000, 12),
    (3_000_000, 10),
    (5_000_000, 12),
    (10_000_000, 10),
    (20_000_000, 4),
    (50_000_000, 2),
];

/// Household registration in its present form dates from the 1958 regulations.
const REGISTER_OPENED: Date = (1958, 1, 9);
/// The first Marriage Law took effect on this day; no registration is older.
const MARRIAGE_LAW: Date = (1950, 5, 1);
const BUSINESSES_SINCE: Date = (1990, 1, 1);
/// Unified social credit codes replaced separate registration numbers from this day.
const CREDIT_CODE_REFORM: Date = (2015, 10, 1);
const BUSINESSES_PER_PERSON: f64 = 0.4;

// ---------------------------------------------------------------------------------------------
// Generation

/// Generates the three data sets; the same `seed` and `size` always give identical data.
pub fn generate(seed: u64, size: DemoSize) -> DemoData {
    Generator::new(seed).run(size.persons.clamp(RESERVED_PERSONS, MAX_PERSONS))
}

/// The people built in before any others so that the scenario picks always exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Ordinary,
    EligibleMan,
    EligibleWoman,
    MarriedHusband,
    MarriedWife,
    Representative,
    Deceased,
}

const RESERVED_PERSONS: usize = 6;

#[derive(Debug)]
struct Draft {
    region: usize,
    gender: Gender,
    birth: Date,
    death: Option<Date>,
    status: PersonStatus,
    family_name: &'static str,
    given_name: String,
    ethnicity: &'static str,
    native_place: &'static str,
    id_number: String,
    role: Role,
    household: Option<usize>,
    /// Registered in the household at birth, as a child of its head.
    born_into_household: bool,
}

#[derive(Debug)]
struct MarriageDraft {
    husband: usize,
    wife: usize,
    registered_on: i64,
    divorced_on: Option<i64>,
}

#[derive(Debug)]
struct Household {
    region: usize,
    /// One or two adults; for a married couple husband then wife.
    heads: Vec<usize>,
    marriage: Option<usize>,
    children: u32,
    /// How many children this household takes in, so that not every family is a large one.
    room_for_children: u32,
}

#[derive(Debug)]
struct Generator {
    rng: Rng,
    ref_day: i64,
    drafts: Vec<Draft>,
    id_prefixes: HashSet<String>,
    marriages: Vec<MarriageDraft>,
    households: Vec<Household>,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Generator {
            rng: Rng::new(seed),
            ref_day: day(REFERENCE_DATE),
            drafts: Vec::new(),
            id_prefixes: HashSet::new(),
            marriages: Vec::new(),
            households: Vec::new(),
        }
    }

    fn run(mut self, persons: usize) -> DemoData {
        self.reserved_persons();
        while self.drafts.len() < persons {
            self.ordinary_person();
        }
        self.deaths_and_moves();
        self.pair_couples();
        self.divorces_and_remarriages();
        self.households();

        let marital = self.marital_statuses();
        let household_ids = self.household_ids();
        let addresses: Vec<String> = (0..self.households.len())
            .map(|h| self.home_address(self.households[h].region))
            .collect();
        let mut persons: Vec<Person> = (0..self.drafts.len())
            .map(|i| self.person(i, &marital, &household_ids, &addresses))
            .collect();

        let marriages = self.marriage_records(&persons);
        let mut businesses = self.businesses(&persons);
        businesses.sort_by(|a, b| {
            (a.established_on, &a.credit_code).cmp(&(b.established_on, &b.credit_code))
        });

        let role_ids: Vec<(Role, String)> = self
            .drafts
            .iter()
            .filter(|d| d.role != Role::Ordinary)
            .map(|d| (d.role, d.id_number.clone()))
            .collect();
        // Families together in the file, as a register prints them: household, then eldest first.
        persons.sort_by(|a, b| {
            (&a.household_id, a.birth_date, &a.id_number).cmp(&(
                &b.household_id,
                b.birth_date,
                &b.id_number,
            ))
        });
        let position: HashMap<&str, usize> = persons
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id_number.as_str(), i))
            .collect();
        let of = |role: Role| {
            role_ids
                .iter()
                .find(|(r, _)| *r == role)
                .and_then(|(_, id)| position.get(id.as_str()).copied())
                .unwrap_or(0)
        };
        let picks = Picks {
            eligible_man: of(Role::EligibleMan),
            eligible_woman: of(Role::EligibleWoman),
            married: of(Role::MarriedHusband),
            multi_business_representative: of(Role::Representative),
            deceased: of(Role::Deceased),
        };

        DemoData {
            persons,
            marriages,
            businesses,
            picks,
        }
    }

    // --- persons ---------------------------------------------------------------------------

    fn reserved_persons(&mut self) {
        let couple_region = self.rng.index(REGIONS.len());
        self.new_person(couple_region, Gender::Male, (24, 34), Role::EligibleMan);
        self.new_person(couple_region, Gender::Female, (22, 32), Role::EligibleWoman);

        let married_region = self.rng.index(REGIONS.len());
        let husband = self.new_person(married_region, Gender::Male, (30, 50), Role::MarriedHusband);
        let husband_age = age_on(self.drafts[husband].birth, REFERENCE_DATE);
        let wife = self.new_person(
            married_region,
            Gender::Female,
            ((husband_age - 4).max(28), husband_age),
            Role::MarriedWife,
        );
        if let Some(window) = self.marriage_window(husband, wife, i64::MIN) {
            let registered_on = self.wedding_day(window);
            self.marriages.push(MarriageDraft {
                husband,
                wife,
                registered_on,
                divorced_on: None,
            });
        }

        let region = self.rng.index(REGIONS.len());
        let gender = self.random_gender();
        self.new_person(region, gender, (32, 55), Role::Representative);

        let region = self.rng.index(REGIONS.len());
        let gender = self.random_gender();
        let deceased = self.new_person(region, gender, (72, 90), Role::Deceased);
        self.die(deceased);
    }

    fn ordinary_person(&mut self) {
        let region = self.rng.index(REGIONS.len());
        let gender = self.random_gender();
        let ages = *self.rng.weighted(AGE_BANDS);
        self.new_person(region, gender, ages, Role::Ordinary);
    }

    fn random_gender(&mut self) -> Gender {
        // Slightly more men, as in the census (sex ratio about 105).
        if self.rng.chance(0.512) {
            Gender::Male
        } else {
            Gender::Female
        }
    }

    /// Adds a person aged `min..=max` on the reference date.
    fn new_person(
        &mut self,
        region: usize,
        gender: Gender,
        (min, max): (i32, i32),
        role: Role,
    ) -> usize {
        let (ry, rm, rd) = REFERENCE_DATE;
        let earliest = day((ry - max - 1, rm, rd)) + 1;
        let latest = day((ry - min, rm, rd));
        let (birth, id_number) = loop {
            let birth = date(self.rng.range(earliest, latest));
            // A new birth date is drawn only if all 500 sequence numbers of this day are taken,
            // which MAX_PERSONS keeps out of reach.
            if let Some(id) = self.new_id_number(region, gender, birth) {
                break (birth, id);
            }
        };
        let family_name = *self.rng.weighted(SURNAMES);
        let given_name = self.given_name(gender);
        let ethnicity = *self.rng.weighted(ETHNICITIES);
        let native_place = if self.rng.chance(0.55) {
            REGIONS[region].native_place
        } else {
            *self.rng.pick(NATIVE_PLACES)
        };
        self.drafts.push(Draft {
            region,
            gender,
            birth,
            death: None,
            status: PersonStatus::Active,
            family_name,
            given_name,
            ethnicity,
            native_place,
            id_number,
            role,
            household: None,
            born_into_household: false,
        });
        self.drafts.len() - 1
    }

    fn given_name(&mut self, gender: Gender) -> String {
        let chars = match gender {
            Gender::Male => MALE_GIVEN,
            Gender::Female => FEMALE_GIVEN,
        };
        let mut name = String::from(*self.rng.pick(chars));
        if self.rng.chance(0.65) {
            let second = *self.rng.pick(chars);
            name.push_str(second);
        }
        name
    }

    /// A GB 11643 number: region, birth date, sequence (odd for men, even for women), check.
    fn new_id_number(&mut self, region: usize, gender: Gender, birth: Date) -> Option<String> {
        let (y, m, d) = birth;
        let base = format!("{}{y:04}{m:02}{d:02}", REGIONS[region].code);
        let (first, count) = match gender {
            Gender::Male => (1, 500),
            Gender::Female => (2, 499),
        };
        let start = self.rng.below(count);
        for probe in 0..count {
            let seq = first + 2 * ((start + probe) % count);
            let prefix = format!("{base}{seq:03}");
            if !self.id_prefixes.contains(&prefix) {
                let check = id_check_char(&prefix);
                self.id_prefixes.insert(prefix.clone());
                return Some(format!("{prefix}{check}"));
            }
        }
        None
    }

    fn age(&self, i: usize) -> i32 {
        age_on(self.drafts[i].birth, REFERENCE_DATE)
    }

    /// The dead died within the last eight years and never before 25, so that most of them
    /// could have married while alive.
    fn die(&mut self, i: usize) {
        let earliest = (self.ref_day - 8 * 365).max(day(nth_birthday(self.drafts[i].birth, 25)));
        let died = self.rng.range(earliest, self.ref_day - 1);
        let d = &mut self.drafts[i];
        d.death = Some(date(died));
        d.status = PersonStatus::Deceased;
    }

    /// Deaths rise with age; a few adults have moved their registration elsewhere.
    fn deaths_and_moves(&mut self) {
        for i in 0..self.drafts.len() {
            if self.drafts[i].role != Role::Ordinary {
                continue;
            }
            let age = self.age(i);
            let p_death = match age {
                ..30 => 0.0,
                30..60 => 0.01,
                60..75 => 0.05,
                _ => 0.15,
            };
            if self.rng.chance(p_death) {
                self.die(i);
            } else if age >= ADULT_AGE && self.rng.chance(0.02) {
                self.drafts[i].status = PersonStatus::MovedOut;
            }
        }
    }

    // --- marriages -------------------------------------------------------------------------

    /// The days on which these two could have registered, not before `not_before`: both of
    /// legal age, both alive, not after the reference date.
    fn marriage_window(&self, husband: usize, wife: usize, not_before: i64) -> Option<(i64, i64)> {
        let (h, w) = (&self.drafts[husband], &self.drafts[wife]);
        let lo = day(nth_birthday(h.birth, MALE_MARRIAGE_AGE))
            .max(day(nth_birthday(w.birth, FEMALE_MARRIAGE_AGE)))
            .max(day(MARRIAGE_LAW))
            .max(not_before);
        let mut hi = self.ref_day - 1;
        for death in [h.death, w.death].into_iter().flatten() {
            hi = hi.min(day(death) - 1);
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// Most couples marry within a few years of both reaching the legal age.
    fn wedding_day(&mut self, (lo, hi): (i64, i64)) -> i64 {
        let span = (hi - lo).min(12 * 365);
        let a = self.rng.range(0, span);
        let b = self.rng.range(0, span);
        lo + a.min(b)
    }

    fn unpaired_pool(&mut self, gender: Gender) -> Vec<Vec<usize>> {
        let legal = match gender {
            Gender::Male => MALE_MARRIAGE_AGE,
            Gender::Female => FEMALE_MARRIAGE_AGE,
        };
        let mut pool = vec![Vec::new(); REGIONS.len()];
        for (i, d) in self.drafts.iter().enumerate() {
            if d.role == Role::Ordinary
                && d.gender == gender
                && age_on(d.birth, d.death.unwrap_or(REFERENCE_DATE)) >= legal
            {
                pool[d.region].push(i);
            }
        }
        for region in &mut pool {
            self.rng.shuffle(region);
        }
        pool
    }

    /// Takes the first partner from `pool` whose birth is `gap` years (in partner-minus-person
    /// terms, as a range) from this person's and with whom a marriage window exists.
    fn take_partner(
        &self,
        person: usize,
        pool: &mut [Vec<usize>],
        gap: (i32, i32),
        not_before: i64,
    ) -> Option<(usize, (i64, i64))> {
        let me = &self.drafts[person];
        let candidates = &mut pool[me.region];
        let found = candidates.iter().enumerate().find_map(|(at, &other)| {
            let years = self.drafts[other].birth.0 - me.birth.0;
            if years < gap.0 || years > gap.1 {
                return None;
            }
            let (husband, wife) = match me.gender {
                Gender::Male => (person, other),
                Gender::Female => (other, person),
            };
            self.marriage_window(husband, wife, not_before)
                .map(|window| (at, other, window))
        });
        found.map(|(at, other, window)| {
            candidates.swap_remove(at);
            (other, window)
        })
    }

    /// First marriages between ordinary people of the same district. Wives are between two
    /// years older and seven years younger than their husbands.
    fn pair_couples(&mut self) {
        let mut women = self.unpaired_pool(Gender::Female);
        let mut men: Vec<usize> = (0..self.drafts.len())
            .filter(|&i| {
                let d = &self.drafts[i];
                d.role == Role::Ordinary
                    && d.gender == Gender::Male
                    && age_on(d.birth, d.death.unwrap_or(REFERENCE_DATE)) >= MALE_MARRIAGE_AGE
            })
            .collect();
        self.rng.shuffle(&mut men);
        for man in men {
            let p = match self.age(man) {
                ..25 => 0.09,
                25..30 => 0.22,
                _ => 0.3,
            };
            if !self.rng.chance(p) {
                continue;
            }
            if let Some((wife, window)) = self.take_partner(man, &mut women, (-2, 7), i64::MIN) {
                let registered_on = self.wedding_day(window);
                self.marriages.push(MarriageDraft {
                    husband: man,
                    wife,
                    registered_on,
                    divorced_on: None,
                });
            }
        }
    }

    fn ever_married(&self) -> Vec<bool> {
        let mut ever = vec![false; self.drafts.len()];
        for m in &self.marriages {
            ever[m.husband] = true;
            ever[m.wife] = true;
        }
        ever
    }

    /// About one marriage in eight ends in divorce; some divorcees marry a never-married
    /// partner later. Only first marriages end in divorce, so nobody holds two subsisting
    /// registrations.
    fn divorces_and_remarriages(&mut self) {
        let first_marriages = self.marriages.len();
        let mut divorced = Vec::new();
        for k in 0..first_marriages {
            let m = &self.marriages[k];
            if self.drafts[m.husband].role != Role::Ordinary || !self.rng.chance(0.13) {
                continue;
            }
            let mut last = self.ref_day - 1;
            for death in [self.drafts[m.husband].death, self.drafts[m.wife].death]
                .into_iter()
                .flatten()
            {
                last = last.min(day(death) - 1);
            }
            let first = m.registered_on + 365;
            if first <= last {
                let span = (last - first).min(20 * 365);
                let on = first + self.rng.range(0, span);
                self.marriages[k].divorced_on = Some(on);
                divorced.push(k);
            }
        }

        let ever = self.ever_married();
        let mut pools = [Gender::Male, Gender::Female].map(|g| {
            let mut pool = self.unpaired_pool(g);
            for region in &mut pool {
                region.retain(|&i| !ever[i]);
            }
            pool
        });
        for k in divorced {
            let (husband, wife, divorced_on) = {
                let m = &self.marriages[k];
                (m.husband, m.wife, m.divorced_on.unwrap_or(m.registered_on))
            };
            // pools[0] holds men and pools[1] women: each ex-spouse looks in the other one.
            for (person, partner_pool) in [(husband, 1), (wife, 0)] {
                if !self.rng.chance(0.4) {
                    continue;
                }
                let gap = match self.drafts[person].gender {
                    Gender::Male => (-4, 12),
                    Gender::Female => (-12, 4),
                };
                if let Some((partner, window)) =
                    self.take_partner(person, &mut pools[partner_pool], gap, divorced_on + 60)
                {
                    let registered_on = self.wedding_day(window);
                    let (h, w) = if partner_pool == 1 {
                        (person, partner)
                    } else {
                        (partner, person)
                    };
                    self.marriages.push(MarriageDraft {
                        husband: h,
                        wife: w,
                        registered_on,
                        divorced_on: None,
                    });
                }
            }
        }
    }

    /// Follows from the person's latest registration: divorced if it was dissolved, widowed if
    /// the spouse died first, married otherwise; single without any.
    fn marital_statuses(&self) -> Vec<MaritalStatus> {
        let mut latest: Vec<Option<usize>> = vec![None; self.drafts.len()];
        for (k, m) in self.marriages.iter().enumerate() {
            for i in [m.husband, m.wife] {
                let newer =
                    latest[i].is_none_or(|old| self.marriages[old].registered_on < m.registered_on);
                if newer {
                    latest[i] = Some(k);
                }
            }
        }
        latest
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let Some(m) = k.map(|k| &self.marriages[k]) else {
                    return MaritalStatus::Single;
                };
                if m.divorced_on.is_some() {
                    return MaritalStatus::Divorced;
                }
                let spouse = if m.husband == i { m.wife } else { m.husband };
                let own_death = self.drafts[i].death.map(day).unwrap_or(i64::MAX);
                let spouse_death = self.drafts[spouse].death.map(day).unwrap_or(i64::MAX);
                if spouse_death < own_death {
                    MaritalStatus::Widowed
                } else {
                    MaritalStatus::Married
                }
            })
            .collect()
    }

    // --- households ------------------------------------------------------------------------

    /// Subsisting couples (including a widowed survivor with the late spouse) share a
    /// household; minors and some young single adults live with parents of the right age;
    /// everyone else heads a household of their own.
    fn households(&mut self) {
        for k in 0..self.marriages.len() {
            let m = &self.marriages[k];
            if m.divorced_on.is_some() {
                continue;
            }
            let (h, w) = (m.husband, m.wife);
            let region = self.drafts[h].region;
            self.households.push(Household {
                region,
                heads: vec![h, w],
                marriage: Some(k),
                children: 0,
                room_for_children: *self.rng.weighted(&[(0, 10), (1, 45), (2, 35), (3, 10)]),
            });
            let id = self.households.len() - 1;
            self.drafts[h].household = Some(id);
            self.drafts[w].household = Some(id);
        }

        let ever = self.ever_married();
        let mut children = Vec::new();
        for (i, was_married) in ever.into_iter().enumerate() {
            let d = &self.drafts[i];
            if d.household.is_some() {
                continue;
            }
            let age = self.age(i);
            let child = d.role == Role::Ordinary
                && (age < ADULT_AGE
                    || (age <= 30
                        && !was_married
                        && d.status == PersonStatus::Active
                        && self.rng.chance(0.5)));
            if child {
                children.push(i);
            } else {
                self.own_household(i);
            }
        }

        let mut couples = vec![Vec::new(); REGIONS.len()];
        let mut singles = vec![Vec::new(); REGIONS.len()];
        for (h, house) in self.households.iter().enumerate() {
            if house.marriage.is_some() {
                couples[house.region].push(h);
            } else if house.heads.len() == 1 && self.age(house.heads[0]) >= 20 {
                singles[house.region].push(h);
            }
        }
        for child in children {
            let region = self.drafts[child].region;
            let home = self
                .find_home(child, &couples[region])
                .or_else(|| self.find_home(child, &singles[region]));
            match home {
                Some(h) => {
                    self.households[h].children += 1;
                    let father = self.households[h].heads[0];
                    let parent = if self.households[h].heads.len() == 2 && self.rng.chance(0.1) {
                        self.households[h].heads[1]
                    } else {
                        father
                    };
                    // Children take a parent's surname, ethnicity and 籍贯.
                    let p = &self.drafts[parent];
                    let inherited = (p.family_name, p.ethnicity, p.native_place);
                    let d = &mut self.drafts[child];
                    d.household = Some(h);
                    d.born_into_household = true;
                    (d.family_name, d.ethnicity, d.native_place) = inherited;
                }
                None => self.own_household(child),
            }
        }
    }

    fn own_household(&mut self, i: usize) {
        self.households.push(Household {
            region: self.drafts[i].region,
            heads: vec![i],
            marriage: None,
            children: 0,
            room_for_children: *self.rng.weighted(&[(0, 30), (1, 55), (2, 15)]),
        });
        self.drafts[i].household = Some(self.households.len() - 1);
    }

    /// A household in `candidates` with room whose heads could be this child's parents: alive
    /// at the birth, mothers 20 to 42 and fathers 22 to 55 years older, couples married before.
    fn find_home(&mut self, child: usize, candidates: &[usize]) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let birth = self.drafts[child].birth;
        let start = self.rng.index(candidates.len());
        (0..candidates.len())
            .map(|k| candidates[(start + k) % candidates.len()])
            .find(|&h| {
                let house = &self.households[h];
                if house.children >= house.room_for_children {
                    return false;
                }
                if let Some(k) = house.marriage
                    && self.marriages[k].registered_on > day(birth)
                {
                    return false;
                }
                house.heads.iter().all(|&parent| {
                    let p = &self.drafts[parent];
                    let age = age_on(p.birth, birth);
                    let (lo, hi) = match p.gender {
                        Gender::Female => (20, 42),
                        Gender::Male => (22, 55),
                    };
                    (lo..=hi).contains(&age) && p.death.is_none_or(|d| d > birth)
                })
            })
    }

    /// Nine-digit household numbers, increasing in a shuffled order so that neighbouring
    /// numbers are unrelated households.
    fn household_ids(&mut self) -> Vec<String> {
        let mut order: Vec<usize> = (0..self.households.len()).collect();
        self.rng.shuffle(&mut order);
        let mut ids = vec![String::new(); self.households.len()];
        let mut next = 100_000_000 + self.rng.below(300_000_000);
        for h in order {
            next += 1 + self.rng.below(19);
            ids[h] = format!("{next:09}");
        }
        ids
    }

    fn home_address(&mut self, region: usize) -> String {
        let r = &REGIONS[region];
        let road = self.rng.pick(r.roads);
        let number = self.rng.range(1, 399);
        let compound = self.rng.pick(COMPOUNDS);
        let building = self.rng.range(1, 30);
        let unit = self.rng.range(1, 6);
        let floor = self.rng.range(1, 32);
        let room = self.rng.range(1, 4);
        format!(
            "{}{road}{number}号{compound}{building}号楼{unit}单元{floor}{room:02}室",
            r.address_prefix()
        )
    }

    /// Children are registered within two months of birth, wives within half a year of the
    /// wedding; other adults either were born here or moved in as adults.
    fn registration_date(&mut self, i: usize) -> Date {
        let d = &self.drafts[i];
        let birth = day(d.birth);
        let wife_of = d.household.and_then(|h| {
            let house = &self.households[h];
            house
                .marriage
                .filter(|_| house.heads.get(1) == Some(&i))
                .map(|k| self.marriages[k].registered_on)
        });
        let adult_from = day(nth_birthday(d.birth, ADULT_AGE));
        let on = if d.born_into_household {
            birth + self.rng.range(7, 60)
        } else if let Some(wedding) = wife_of {
            wedding + self.rng.range(7, 180)
        } else if adult_from < self.ref_day && self.rng.chance(0.55) {
            self.rng.range(adult_from, self.ref_day)
        } else {
            birth + self.rng.range(7, 60)
        };
        let lo = birth.max(day(REGISTER_OPENED));
        let hi = self.drafts[i]
            .death
            .map(day)
            .unwrap_or(self.ref_day)
            .min(self.ref_day);
        date(on.clamp(lo, hi.max(lo)))
    }

    fn person(
        &mut self,
        i: usize,
        marital: &[MaritalStatus],
        household_ids: &[String],
        addresses: &[String],
    ) -> Person {
        let registration_date = self.registration_date(i);
        let d = &self.drafts[i];
        let (household_id, address) = match d.household {
            Some(h) => (household_ids[h].clone(), addresses[h].clone()),
            None => (String::new(), String::new()),
        };
        Person {
            id_number: d.id_number.clone(),
            name: format!("{}{}", d.family_name, d.given_name),
            family_name: d.family_name,
            gender: d.gender,
            birth_date: d.birth,
            ethnicity: d.ethnicity,
            native_place: d.native_place,
            address,
            household_id,
            marital_status: marital[i],
            registration_date,
            status: d.status,
            death_date: d.death,
            region_code: REGIONS[d.region].code,
        }
    }

    /// Registration numbers run per registry office and year in date order, with gaps for
    /// the couples registered there who are not in this data set.
    fn marriage_records(&mut self, persons: &[Person]) -> Vec<Marriage> {
        let mut order: Vec<usize> = (0..self.marriages.len()).collect();
        order.sort_by_key(|&k| (self.marriages[k].registered_on, self.marriages[k].husband));
        let mut counters: HashMap<(usize, i32), u64> = HashMap::new();
        let mut records = Vec::with_capacity(order.len());
        for k in order {
            let m = &self.marriages[k];
            let (h, w) = (&persons[m.husband], &persons[m.wife]);
            let region = self.drafts[m.husband].region;
            let registered_on = date(m.registered_on);
            let divorced_on = m.divorced_on.map(date);
            let first = 1 + self.rng.below(2000);
            let step = 1 + self.rng.below(25);
            let seq = *counters
                .entry((region, registered_on.0))
                .and_modify(|n| *n += step)
                .or_insert(first);
            let r = &REGIONS[region];
            records.push(Marriage {
                registration_no: format!("J{}-{}-{:06}", r.code, registered_on.0, seq),
                husband_id: h.id_number.clone(),
                husband_name: h.name.clone(),
                wife_id: w.id_number.clone(),
                wife_name: w.name.clone(),
                registered_on,
                registry_office: r.marriage_registry_office(),
                status: if divorced_on.is_some() {
                    MarriageStatus::Divorced
                } else {
                    MarriageStatus::Married
                },
                divorced_on,
                region_code: r.code,
            });
        }
        records
    }

    // --- businesses ------------------------------------------------------------------------

    /// Most representatives hold one licence; some hold two to four. The reserved
    /// representative always holds two or three.
    fn businesses(&mut self, persons: &[Person]) -> Vec<Business> {
        let total = ((persons.len() as f64 * BUSINESSES_PER_PERSON).round() as usize).max(3);
        let mut names = HashSet::new();
        let mut codes = HashSet::new();
        let mut out = Vec::with_capacity(total);

        let mut candidates: Vec<usize> = (0..self.drafts.len())
            .filter(|&i| {
                let d = &self.drafts[i];
                let age = self.age(i);
                d.role == Role::Ordinary
                    && d.status == PersonStatus::Active
                    && (22..=70).contains(&age)
            })
            .collect();
        self.rng.shuffle(&mut candidates);
        let reserved = self
            .drafts
            .iter()
            .position(|d| d.role == Role::Representative);

        let mut holdings: Vec<(usize, usize)> = Vec::new();
        if let Some(rep) = reserved {
            holdings.push((rep, 2 + self.rng.index(2)));
        }
        let mut assigned: usize = holdings.iter().map(|(_, n)| n).sum();
        let mut next = 0;
        while assigned < total && next < candidates.len() {
            let n = *self.rng.weighted(&[(1usize, 80), (2, 12), (3, 5), (4, 3)]);
            let n = n.min(total - assigned);
            holdings.push((candidates[next], n));
            assigned += n;
            next += 1;
        }
        // Too few adults for the wanted count (tiny sizes): the same people take more.
        let mut again = 0;
        while assigned < total && !holdings.is_empty() {
            let n = holdings.len();
            holdings[again % n].1 += 1;
            assigned += 1;
            again += 1;
        }

        for (rep, n) in holdings {
            for _ in 0..n {
                let business = self.business(rep, persons, &mut names, &mut codes);
                out.push(business);
            }
        }
        out
    }

    fn business(
        &mut self,
        rep: usize,
        persons: &[Person],
        names: &mut HashSet<String>,
        codes: &mut HashSet<String>,
    ) -> Business {
        let category = *self.rng.weighted(&[
            (BusinessCategory::Enterprise, 80),
            (BusinessCategory::IndividualBusiness, 17),
            (BusinessCategory::FarmerCooperative, 3),
        ]);
        let region = if self.rng.chance(0.85) {
            self.drafts[rep].region
        } else {
            self.rng.index(REGIONS.len())
        };
        let r = &REGIONS[region];

        let (name, business_scope) = self.business_name(category, r, names);
        let registered_capital = match category {
            BusinessCategory::Enterprise if name.ends_with("股份有限公司") => *self
                .rng
                .pick(&[10_000_000, 20_000_000, 50_000_000, 100_000_000]),
            BusinessCategory::Enterprise => *self.rng.weighted(ENTERPRISE_CAPITAL),
            BusinessCategory::IndividualBusiness => 10_000 * self.rng.range(1, 30),
            BusinessCategory::FarmerCooperative => 100_000 * self.rng.range(1, 20),
        };

        // Skewed towards recent years: more businesses exist now than in the 1990s.
        let lo = day(nth_birthday(self.drafts[rep].birth, ADULT_AGE)).max(day(BUSINESSES_SINCE));
        let hi = self.ref_day - 1;
        let a = self.rng.range(lo, hi);
        let b = self.rng.range(lo, hi);
        let established_on = date(a.max(b));

        let road = self.rng.pick(r.roads);
        let number = self.rng.range(1, 399);
        let address = match category {
            BusinessCategory::Enterprise => {
                let building = self.rng.pick(OFFICE_BUILDINGS);
                let floor = self.rng.range(2, 28);
                let room = floor * 100 + self.rng.range(1, 20);
                format!(
                    "{}{road}{number}号{building}{floor}层{room}室",
                    r.address_prefix()
                )
            }
            BusinessCategory::IndividualBusiness => {
                let shop = self.rng.range(1, 12);
                format!("{}{road}{number}号{shop}号商铺", r.address_prefix())
            }
            BusinessCategory::FarmerCooperative => {
                format!("{}{road}{number}号", r.address_prefix())
            }
        };

        let status = *self.rng.weighted(&[
            (BusinessStatus::Active, 82),
            (BusinessStatus::Cancelled, 12),
            (BusinessStatus::Revoked, 6),
        ]);
        let p = &persons[rep];
        Business {
            credit_code: self.credit_code(category, r, established_on, codes),
            name,
            category,
            legal_representative_id: p.id_number.clone(),
            legal_representative_name: p.name.clone(),
            registered_capital,
            established_on,
            business_scope,
            status,
            address,
            region_code: r.code,
        }
    }

    /// Names are unique, as the registry requires; once random names keep colliding (only at
    /// very large sizes) a branch number makes them so.
    fn business_name(
        &mut self,
        category: BusinessCategory,
        r: &Region,
        names: &mut HashSet<String>,
    ) -> (String, &'static str) {
        let mut attempt = 0;
        loop {
            let trade = format!(
                "{}{}",
                self.rng.pick(TRADE_NAME_FIRST),
                self.rng.pick(TRADE_NAME_SECOND)
            );
            let (mut name, scope) = match category {
                BusinessCategory::Enterprise => {
                    let (industry, scope) = *self.rng.pick(INDUSTRIES);
                    let form = *self.rng.weighted(&[
                        ("有限公司", 85),
                        ("有限责任公司", 12),
                        ("股份有限公司", 3),
                    ]);
                    (
                        format!(
                            "{}{}{trade}{industry}{form}",
                            r.city_short, r.district_short
                        ),
                        scope,
                    )
                }
                BusinessCategory::IndividualBusiness => {
                    let (shop, scope) = *self.rng.pick(SHOPS);
                    (format!("{}{}{trade}{shop}", r.city, r.district), scope)
                }
                BusinessCategory::FarmerCooperative => {
                    let (kind, scope) = *self.rng.pick(COOPERATIVES);
                    (
                        format!("{}{}{trade}{kind}专业合作社", r.city, r.district),
                        scope,
                    )
                }
            };
            attempt += 1;
            if attempt > 64 {
                name = format!("{name}第{}分部", names.len() + 1);
            }
            if names.insert(name.clone()) {
                return (name, scope);
            }
        }
    }

    /// GB 32100: registration authority 9 (market regulation), category, region code, an
    /// organisation code with its GB 11714 check, and the overall check. Businesses registered
    /// before the 2015 reform kept their numeric organisation code; later ones were given "MA"
    /// codes.
    fn credit_code(
        &mut self,
        category: BusinessCategory,
        r: &Region,
        established_on: Date,
        codes: &mut HashSet<String>,
    ) -> String {
        let reformed = established_on >= CREDIT_CODE_REFORM;
        loop {
            let mut org = String::new();
            if reformed {
                org.push_str("MA");
                for _ in 0..6 {
                    org.push(char::from(*self.rng.pick(CREDIT_CODE_ALPHABET)));
                }
            } else {
                for _ in 0..8 {
                    org.push(char::from(*self.rng.pick(&CREDIT_CODE_ALPHABET[..10])));
                }
            }
            org.push(org_code_check_char(&org));
            let first17 = format!("9{}{}{org}", category.code(), r.code);
            let code = format!("{first17}{}", credit_code_check_char(&first17));
            if codes.insert(code.clone()) {
                return code;
            }
        }
    }
}
