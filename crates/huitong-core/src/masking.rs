//! Masks (脱敏): what a grant lets through of a field's value.
//!
//! A grant may attach one [`Mask`] to each field it lists; the broker applies it to every value of
//! that field before the answer leaves. The text masks keep the part that the receiving
//! department typically needs (the region of an ID number, the family name, the district of an
//! address, the issuer of a bank card, the domain of an email address, the city of a licence
//! plate) and hide the rest; `keep:N:M` keeps what the grant says. Every mask is described with
//! an example in `docs/masking.md`. All of them work on characters, not bytes, so Chinese text is
//! never cut inside a character. When unsure, they keep less, never more.

use std::borrow::Cow;
use std::fmt;

use crate::catalogue::FieldType;

/// How a field's values are masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mask {
    /// Resident ID number (居民身份证号码): the first 6 (region) and last 4 characters are kept.
    IdNumber,
    /// A person's name: the family name is kept, e.g. `王*`, `欧阳**`, `Zhang *`.
    Name,
    /// A postal address: cut to the district or county, e.g. `北京市朝阳区`.
    Address,
    /// A telephone number: the first 3 and last 4 digits are kept, e.g. `138****5678`.
    Phone,
    /// A bank card number: the first 6 (issuer) and last 4 digits are kept, separators dropped,
    /// e.g. `622202******1234`.
    BankCard,
    /// An email address: the first character of the local part and the whole domain are kept,
    /// e.g. `z***@example.gov.cn`.
    Email,
    /// A Chinese licence plate (号牌): the province, the issuing authority's letter and the last
    /// character are kept, e.g. `京A****5`.
    LicencePlate,
    /// The value is withheld entirely: it is released as null.
    Redact,
    /// The first `head` and the last `tail` characters are kept and each other character is
    /// replaced by `fill`; written `keep:N:M` (fill `*`) or `keep:N:M:C`.
    Keep { head: u16, tail: u16, fill: char },
}

/// Why a mask name was refused; its message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMaskError {
    name: String,
    problem: String,
}

impl fmt::Display for ParseMaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mask {:?} {}", self.name, self.problem)
    }
}

impl std::error::Error for ParseMaskError {}

const KEEP_SYNTAX: &str = "write keep:N:M (keep the first N and last M characters, hide the rest \
                           with *) or keep:N:M:C (hide them with the character C), e.g. keep:3:4";

impl Mask {
    /// Every mask with a fixed name, in order; [`Mask::Keep`] is written with its numbers.
    pub const ALL: &'static [Mask] = &[
        Mask::IdNumber,
        Mask::Name,
        Mask::Address,
        Mask::Phone,
        Mask::BankCard,
        Mask::Email,
        Mask::LicencePlate,
        Mask::Redact,
    ];

    /// The name used in config files, requests and messages, e.g. `id-number` or `keep:3:4`.
    /// [`Mask::parse`] reads it back to the same mask.
    pub fn as_str(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Mask::IdNumber => "id-number",
            Mask::Name => "name",
            Mask::Address => "address",
            Mask::Phone => "phone",
            Mask::BankCard => "bank-card",
            Mask::Email => "email",
            Mask::LicencePlate => "licence-plate",
            Mask::Redact => "redact",
            Mask::Keep { head, tail, fill } => {
                // The default fill is left out, so that `keep:1:1:*` and `keep:1:1` read back
                // as one name.
                return Cow::Owned(if fill == HIDDEN {
                    format!("keep:{head}:{tail}")
                } else {
                    format!("keep:{head}:{tail}:{fill}")
                });
            }
        })
    }

    /// Parses the name used in config files and requests. The error names what to write.
    pub fn parse(s: &str) -> Result<Mask, ParseMaskError> {
        if let Some(m) = Mask::ALL.iter().copied().find(|m| m.as_str() == s) {
            return Ok(m);
        }
        let refuse = |problem: String| ParseMaskError {
            name: s.to_owned(),
            problem,
        };
        let Some(rest) = s.strip_prefix("keep:") else {
            return Err(refuse(format!("is not one of {}", Mask::names())));
        };
        // At most three parts, so that the fill may itself be `:`.
        let mut parts = rest.splitn(3, ':');
        let (Some(head), Some(tail)) = (parts.next(), parts.next()) else {
            return Err(refuse(format!("is incomplete: {KEEP_SYNTAX}")));
        };
        let count = |what: &str, v: &str| -> Result<u16, ParseMaskError> {
            // Digits only: `u16::from_str` would also take `+3`.
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse(format!(
                    "has {v:?} for {what}, which must be a number of characters: {KEEP_SYNTAX}"
                )));
            }
            v.parse().map_err(|_| {
                refuse(format!(
                    "keeps {v} characters, more than {}: {KEEP_SYNTAX}",
                    u16::MAX
                ))
            })
        };
        let head = count("N", head)?;
        let tail = count("M", tail)?;
        let fill = match parts.next() {
            None => HIDDEN,
            Some(c) => {
                let mut chars = c.chars();
                match (chars.next(), chars.next()) {
                    (Some(fill), None) if !fill.is_whitespace() && !fill.is_control() => fill,
                    _ => {
                        return Err(refuse(format!(
                            "has {c:?} for C, which must be one visible character, e.g. \
                             keep:{head}:{tail}:#"
                        )));
                    }
                }
            }
        };
        Ok(Mask::Keep { head, tail, fill })
    }

    /// The accepted names, for error messages and help:
    /// `id-number, name, address, phone, bank-card, email, licence-plate, redact, keep:N:M,
    /// keep:N:M:C`.
    pub fn names() -> String {
        let mut names: Vec<Cow<'static, str>> = Mask::ALL.iter().map(|m| m.as_str()).collect();
        names.push("keep:N:M".into());
        names.push("keep:N:M:C".into());
        names.join(", ")
    }

    /// Whether the mask can be applied to values of type `ty`: [`Mask::Redact`] to any type, the
    /// text masks to strings only. A text mask set on a field of another type must be refused
    /// where the grant is checked against the catalogue, or treated as [`Mask::Redact`].
    pub fn fits(self, ty: FieldType) -> bool {
        self == Mask::Redact || ty == FieldType::String
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// Applies `mask` to a text value. Returns `None` for [`Mask::Redact`]: the caller releases the
/// value as null. Leading and trailing white space is dropped first.
///
/// ```
/// use huitong_core::masking::{apply_text, Mask};
/// assert_eq!(apply_text(Mask::IdNumber, "110105199001011234").as_deref(), Some("110105********1234"));
/// assert_eq!(apply_text(Mask::Name, "欧阳娜娜").as_deref(), Some("欧阳**"));
/// assert_eq!(apply_text(Mask::Address, "浙江省杭州市西湖区文三路").as_deref(), Some("浙江省杭州市西湖区"));
/// assert_eq!(apply_text(Mask::Phone, "13812345678").as_deref(), Some("138****5678"));
/// assert_eq!(apply_text(Mask::BankCard, "6222 0212 3456 1234").as_deref(), Some("622202******1234"));
/// assert_eq!(apply_text(Mask::Email, "zhang.wei@example.gov.cn").as_deref(), Some("z***@example.gov.cn"));
/// assert_eq!(apply_text(Mask::LicencePlate, "京A12345").as_deref(), Some("京A****5"));
/// assert_eq!(apply_text(Mask::parse("keep:1:1").unwrap(), "张小明").as_deref(), Some("张*明"));
/// assert_eq!(apply_text(Mask::Redact, "anything"), None);
/// ```
pub fn apply_text(mask: Mask, text: &str) -> Option<String> {
    let text = text.trim();
    match mask {
        Mask::IdNumber => Some(mask_id_number(text)),
        Mask::Name => Some(mask_name(text)),
        Mask::Address => Some(mask_address(text)),
        Mask::Phone => Some(mask_phone(text)),
        Mask::BankCard => Some(mask_bank_card(text)),
        Mask::Email => Some(mask_email(text)),
        Mask::LicencePlate => Some(mask_licence_plate(text)),
        Mask::Keep { head, tail, fill } => Some(keep(text, head.into(), tail.into(), fill)),
        Mask::Redact => None,
    }
}

const HIDDEN: char = '*';

/// How many units to keep at the start and at the end of a value `len` units long, where a value
/// of the standard length `full` or more keeps `head` and `tail`. A shorter value keeps at most
/// half of its units, split between start and end in the same proportion.
fn kept(len: usize, head: usize, tail: usize, full: usize) -> (usize, usize) {
    if len >= full {
        return (head, tail);
    }
    let total = len / 2;
    // total * head / (head + tail), rounded half up.
    let h = (2 * total * head + head + tail) / (2 * (head + tail));
    (h, total - h)
}

/// ID numbers: 18 characters (or more) keep 6 + 4; shorter ones (e.g. the 15-digit first
/// generation) keep at most half, about 6:4 between start and end.
fn mask_id_number(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let (head, tail) = kept(chars.len(), 6, 4, 18);
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i < head || i >= chars.len() - tail {
                c
            } else {
                HIDDEN
            }
        })
        .collect()
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || ('０'..='９').contains(&c)
}

/// Phone numbers: digits are counted, separators (`-`, spaces, `+`, brackets) are kept as they
/// are. 11 digits or more keep the first 3 and last 4 digits; fewer keep at most half.
fn mask_phone(text: &str) -> String {
    let digits = text.chars().filter(|&c| is_digit(c)).count();
    let (head, tail) = kept(digits, 3, 4, 11);
    let mut seen = 0;
    text.chars()
        .map(|c| {
            if !is_digit(c) {
                return c;
            }
            let i = seen;
            seen += 1;
            if i < head || i >= digits - tail {
                c
            } else {
                HIDDEN
            }
        })
        .collect()
}

/// Two-character family names (复姓). A name of three or more characters that starts with one of
/// these keeps two characters; a two-character name always keeps one.
const COMPOUND_SURNAMES: &[&str] = &[
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "夏侯", "令狐", "端木", "独孤", "南宫", "西门", "轩辕", "万俟", "闻人", "澹台", "公冶", "宗政",
    "濮阳", "淳于", "单于", "太叔", "申屠", "钟离", "呼延", "赫连", "拓跋", "鲜于", "闾丘", "司空",
    "左丘", "百里", "东郭", // Traditional forms.
    "歐陽", "司馬", "諸葛", "東方", "尉遲", "公孫", "長孫", "獨孤", "南宮", "西門", "軒轅", "萬俟",
    "聞人", "鍾離", "閭丘",
];

fn is_name_separator(c: char) -> bool {
    // The interpunct of transcribed names, e.g. 阿依古丽·买买提, in its several encodings.
    matches!(c, '·' | '•' | '・' | '‧' | '.')
}

/// Names: the family name is kept and each other character becomes `*`.
///
/// - Chinese names: the first character, or the first two for a compound family name (复姓).
/// - Names written in words ("Zhang Wei"): the first word is kept as the family name (pinyin
///   order) and each further word becomes a single `*`, so the length of the given name is not
///   shown.
/// - Transcribed names with an interpunct (阿依古丽·买买提), which have no family name: the first
///   character is kept, the separators too.
/// - A one-character value becomes `*`.
fn mask_name(text: &str) -> String {
    if text.chars().any(char::is_whitespace) {
        let mut words = text.split_whitespace();
        let mut out = words.next().unwrap_or_default().to_owned();
        for _ in words {
            out.push(' ');
            out.push(HIDDEN);
        }
        return out;
    }
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 1 {
        return HIDDEN.to_string().repeat(chars.len());
    }
    let keep = if chars.iter().any(|&c| is_name_separator(c)) {
        1
    } else if chars.len() >= 3 && COMPOUND_SURNAMES.iter().any(|s| text.starts_with(s)) {
        2
    } else {
        1
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i < keep || is_name_separator(c) {
                c
            } else {
                HIDDEN
            }
        })
        .collect()
}

/// The level of an administrative division (行政区划) found at the start of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// 省, 自治区, 特别行政区.
    Province,
    /// 地级市 (or a municipality, 直辖市), 地区, 自治州, 盟.
    Prefecture,
    /// 区, 县, 旗, 县级市: the level an address is cut to.
    County,
}

/// Longest division name plus suffix that is looked for, in characters
/// (双江拉祜族佤族布朗族傣族自治县 has 15).
const MAX_DIVISION_CHARS: usize = 20;

/// Characters that end a division.
fn is_division_suffix(c: char) -> bool {
    matches!(c, '省' | '市' | '区' | '县' | '旗' | '州' | '盟')
}

/// Characters that end a unit below the county (road, street, town, village, building). Met
/// after the start of a unit, they end the search, unless a division suffix follows at once
/// (新乡市, 鼓楼区), where the character is part of the division's name.
fn is_below_county(c: char) -> bool {
    matches!(
        c,
        '路' | '街' | '巷' | '弄' | '号' | '村' | '镇' | '乡' | '楼' | '栋' | '幢' | '室'
    )
}

/// Endings of 区 and 市 that are not divisions: residential compounds, communities, campuses,
/// markets. Finding one means the address is already below the county.
const NOT_DIVISIONS: &[&str] = &[
    "小区", "社区", "校区", "景区", "厂区", "超市", "菜市", "夜市", "集市",
];

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c)
}

fn ends_with(unit: &[char], suffix: &str) -> bool {
    let suffix: Vec<char> = suffix.chars().collect();
    unit.ends_with(&suffix)
}

/// The division that starts at `chars[start]`: its end (exclusive) and level, or `None` when the
/// text there is not a division below `above`, the level of the division before it.
fn next_division(chars: &[char], start: usize, above: Option<Level>) -> Option<(usize, Level)> {
    let province_allowed = above.is_none();
    let prefecture_allowed = above.is_none() || above == Some(Level::Province);
    let limit = chars.len().min(start + MAX_DIVISION_CHARS);
    for i in start..limit {
        let c = chars[i];
        if !is_cjk(c) {
            return None;
        }
        let name_len = i - start;
        let next = chars.get(i + 1).copied();
        let next_is_suffix = next.is_some_and(is_division_suffix);
        if name_len > 0 && is_below_county(c) && !next_is_suffix {
            return None;
        }
        if !is_division_suffix(c) {
            continue;
        }
        // 红旗区: the 旗 is part of the name. But 济南市市中区: the second 市 starts the next one.
        if next_is_suffix && next != Some(c) {
            continue;
        }
        let unit = &chars[start..=i];
        if NOT_DIVISIONS.iter().any(|s| ends_with(unit, s)) {
            return None;
        }
        let level = match c {
            '省' if name_len >= 2 => Level::Province,
            '区' if ends_with(unit, "特别行政区") || ends_with(unit, "自治区") => {
                if name_len < 4 {
                    continue;
                }
                Level::Province
            }
            '区' if ends_with(unit, "地区") => {
                if name_len < 3 {
                    continue;
                }
                Level::Prefecture
            }
            '区' | '县' | '旗' if name_len >= 1 => Level::County,
            '市' if name_len >= 2 => {
                if prefecture_allowed {
                    Level::Prefecture
                } else {
                    Level::County
                }
            }
            '州' if name_len >= 4 && ends_with(unit, "自治州") => Level::Prefecture,
            '盟' if name_len >= 2 => Level::Prefecture,
            _ => continue,
        };
        // A province after a province, or a prefecture after a prefecture, is not a division
        // (e.g. a 联盟 after the city): stop rather than guess.
        let fits = match level {
            Level::Province => province_allowed,
            Level::Prefecture => prefecture_allowed,
            Level::County => true,
        };
        return fits.then_some((i + 1, level));
    }
    None
}

/// Addresses: cut after the district or county (区, 县, 旗, or a county-level 市 after its
/// prefecture), keeping the province and prefecture before it:
/// `北京市朝阳区建国路88号…` becomes `北京市朝阳区`; `江苏省昆山市玉山镇…` becomes `江苏省昆山市`.
/// This is a heuristic reading of the divisions' suffixes, not a gazetteer; where it is unsure
/// it stops early and keeps less.
///
/// An address in which no division is found keeps its first 6 characters followed by `…`, but
/// never a digit (house numbers) and never more than half of its characters.
fn mask_address(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut end = 0;
    let mut above = None;
    // Province, prefecture, county, each at most once and in that order (a municipality such as
    // 北京市 is read as a prefecture).
    while above != Some(Level::County) {
        let Some((next_end, level)) = next_division(&chars, end, above) else {
            break;
        };
        end = next_end;
        above = Some(level);
    }
    if end > 0 {
        return chars[..end].iter().collect();
    }
    if chars.is_empty() {
        return String::new();
    }
    let keep = chars
        .iter()
        .take(6.min(chars.len() / 2))
        .take_while(|&&c| !is_digit(c))
        .count();
    let mut out: String = chars[..keep].iter().collect();
    out.push('…');
    out
}

/// Every character hidden: what a mask gives for a value it cannot read with certainty.
fn hide_all(text: &str) -> String {
    text.chars().map(|_| HIDDEN).collect()
}

/// Separators written inside card numbers (spaces, dashes), dropped from the masked value so
/// that their positions do not show how the number was grouped.
fn is_card_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | '－' | '‐' | '–' | '—')
}

/// Separators written inside plates: those of card numbers and the dot of 粤B·D12345.
fn is_plate_separator(c: char) -> bool {
    is_card_separator(c) || is_name_separator(c)
}

/// Card numbers with fewer digits are hidden entirely. Six and four digits leave nothing hidden
/// at 10 digits, and at 11 the one hidden digit is the one the Luhn check digit gives back.
const BANK_CARD_MIN_DIGITS: usize = 12;

/// Bank card numbers: separators are dropped, then the first 6 digits (the issuer, 发卡行识别码)
/// and the last 4 are kept, the most that PCI DSS allows to be shown. A value that holds
/// anything but digits and separators is not read as a card number and is hidden entirely, as is
/// one with fewer than 12 digits.
fn mask_bank_card(text: &str) -> String {
    let chars: Vec<char> = text.chars().filter(|&c| !is_card_separator(c)).collect();
    if chars.len() < BANK_CARD_MIN_DIGITS || !chars.iter().all(|&c| is_digit(c)) {
        return chars.iter().map(|_| HIDDEN).collect();
    }
    let tail = chars.len() - 4;
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| if i < 6 || i >= tail { c } else { HIDDEN })
        .collect()
}

/// Email addresses: the first character of the local part and the whole domain (after the last
/// `@`, which names the organisation, as a phone's area code does) are kept; the rest of the
/// local part becomes a fixed `***`, so its length is not shown. A one-character local part is
/// hidden too, since keeping its first character would keep all of it. A value that is not one
/// word with text on both sides of an `@` is hidden entirely.
fn mask_email(text: &str) -> String {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return hide_all(text);
    };
    if local.is_empty() || domain.is_empty() || text.chars().any(char::is_whitespace) {
        return hide_all(text);
    }
    let mut out = String::new();
    let mut local_chars = local.chars();
    if let (Some(first), Some(_)) = (local_chars.next(), local_chars.next()) {
        out.push(first);
    }
    out.push_str("***@");
    out.push_str(domain);
    out
}

/// The province (or municipality) characters that start a civil licence plate.
const PLATE_PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";

/// Characters that may end a plate in place of a letter or digit: learner, police, trailer, Hong
/// Kong and Macao crossing, consulate, trial and oversize vehicles.
const PLATE_ENDINGS: &str = "学警挂港澳领试超";

fn is_plate_letter(c: char) -> bool {
    c.is_ascii_uppercase()
}

/// Licence plates (号牌): a province character, the issuing authority's letter, then 5 letters
/// or digits (6 on a new-energy plate), the last of which may be a character such as 警 or 学.
/// The province, the letter (the city, which the receiving department needs to route a case)
/// and the last character are kept; separators (`·`, spaces) are dropped. Anything else,
/// military and embassy plates included, is hidden entirely.
fn mask_licence_plate(text: &str) -> String {
    let chars: Vec<char> = text.chars().filter(|&c| !is_plate_separator(c)).collect();
    let is_plate = match chars.as_slice() {
        [province, authority, rest @ .., last] => {
            PLATE_PROVINCES.contains(*province)
                && is_plate_letter(*authority)
                && matches!(rest.len(), 4 | 5)
                && rest
                    .iter()
                    .all(|&c| c.is_ascii_digit() || is_plate_letter(c))
                && (last.is_ascii_digit()
                    || is_plate_letter(*last)
                    || PLATE_ENDINGS.contains(*last))
        }
        _ => false,
    };
    if !is_plate {
        return chars.iter().map(|_| HIDDEN).collect();
    }
    let last = chars.len() - 1;
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| if i < 2 || i == last { c } else { HIDDEN })
        .collect()
}

/// `keep:N:M:C`: the first `head` and last `tail` characters are kept, each other one becomes
/// `fill`. When they would cover the whole value, all of it is hidden: a mask that reveals the
/// whole value is no mask.
fn keep(text: &str, head: usize, tail: usize, fill: char) -> String {
    let chars: Vec<char> = text.chars().collect();
    if head.saturating_add(tail) >= chars.len() {
        return chars.iter().map(|_| fill).collect();
    }
    let tail_from = chars.len() - tail;
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| if i < head || i >= tail_from { c } else { fill })
        .collect()
}

#[cfg(test)]
mod tests;
