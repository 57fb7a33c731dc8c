//! Masks (脱敏): what a grant lets through of a field's value.
//!
//! A grant may attach one [`Mask`] to each field it lists; the broker applies it to every value of
//! that field before the answer leaves. The text masks keep the part that the receiving
//! department typically needs (the region of an ID number, the family name, the district of an
//! address) and hide the rest. All of them work on characters, not bytes, so Chinese text is
//! never cut inside a character. When unsure, they keep less, never more.

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
    /// The value is withheld entirely: it is released as null.
    Redact,
}

impl Mask {
    /// Every mask, in order.
    pub const ALL: &'static [Mask] = &[
        Mask::IdNumber,
        Mask::Name,
        Mask::Address,
        Mask::Phone,
        Mask::Redact,
    ];

    /// The name used in config files, requests and messages, e.g. `id-number`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mask::IdNumber => "id-number",
            Mask::Name => "name",
            Mask::Address => "address",
            Mask::Phone => "phone",
            Mask::Redact => "redact",
        }
    }

    /// Parses the name used in config files and requests.
    pub fn parse(s: &str) -> Option<Mask> {
        Mask::ALL.iter().copied().find(|m| m.as_str() == s)
    }

    /// The accepted names, for error messages: `id-number, name, address, phone, redact`.
    pub fn names() -> String {
        let names: Vec<&str> = Mask::ALL.iter().map(|m| m.as_str()).collect();
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
        f.write_str(self.as_str())
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
/// assert_eq!(apply_text(Mask::Redact, "anything"), None);
/// ```
pub fn apply_text(mask: Mask, text: &str) -> Option<String> {
    let text = text.trim();
    match mask {
        Mask::IdNumber => Some(mask_id_number(text)),
        Mask::Name => Some(mask_name(text)),
        Mask::Address => Some(mask_address(text)),
        Mask::Phone => Some(mask_phone(text)),
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

#[cfg(test)]
mod tests;
