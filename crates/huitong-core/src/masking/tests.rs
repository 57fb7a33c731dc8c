use super::*;

fn masked(mask: Mask, text: &str) -> String {
    apply_text(mask, text).unwrap()
}

fn keep(head: u16, tail: u16, fill: char) -> Mask {
    Mask::Keep { head, tail, fill }
}

#[test]
fn names_round_trip() {
    let keeps = [
        keep(0, 0, '*'),
        keep(1, 1, '*'),
        keep(3, 4, '#'),
        keep(u16::MAX, 2, '×'),
        keep(1, 1, ':'),
        keep(2, 0, '某'),
    ];
    for m in Mask::ALL.iter().chain(&keeps) {
        assert_eq!(Mask::parse(&m.as_str()), Ok(*m), "{m}");
        assert_eq!(m.to_string(), m.as_str());
    }
    assert_eq!(keep(1, 1, '*').as_str(), "keep:1:1");
    assert_eq!(keep(3, 4, '#').as_str(), "keep:3:4:#");
    assert_eq!(Mask::parse("keep:1:1:*"), Ok(keep(1, 1, '*')));
    assert_eq!(Mask::parse("keep:1:1::"), Ok(keep(1, 1, ':')));
    assert!(Mask::parse("ID-number").is_err());
    assert!(Mask::parse("").is_err());
    assert_eq!(
        Mask::names(),
        "id-number, name, address, phone, bank-card, email, licence-plate, redact, keep:N:M, \
         keep:N:M:C"
    );
}

#[test]
fn bad_mask_names_say_what_to_write() {
    let syntax = "write keep:N:M (keep the first N and last M characters, hide the rest with *) \
                  or keep:N:M:C (hide them with the character C), e.g. keep:3:4";
    let cases = [
        (
            "scramble",
            format!("mask \"scramble\" is not one of {}", Mask::names()),
        ),
        ("keep", format!("mask \"keep\" is not one of {}", Mask::names())),
        ("keep:", format!("mask \"keep:\" is incomplete: {syntax}")),
        ("keep:3", format!("mask \"keep:3\" is incomplete: {syntax}")),
        (
            "keep:3:",
            format!("mask \"keep:3:\" has \"\" for M, which must be a number of characters: {syntax}"),
        ),
        (
            "keep:a:4",
            format!("mask \"keep:a:4\" has \"a\" for N, which must be a number of characters: {syntax}"),
        ),
        (
            "keep:+3:4",
            format!("mask \"keep:+3:4\" has \"+3\" for N, which must be a number of characters: {syntax}"),
        ),
        (
            "keep:-1:4",
            format!("mask \"keep:-1:4\" has \"-1\" for N, which must be a number of characters: {syntax}"),
        ),
        (
            "keep:3: 4",
            format!("mask \"keep:3: 4\" has \" 4\" for M, which must be a number of characters: {syntax}"),
        ),
        (
            "keep:3:65536",
            format!("mask \"keep:3:65536\" keeps 65536 characters, more than 65535: {syntax}"),
        ),
        (
            "keep:3:4:",
            "mask \"keep:3:4:\" has \"\" for C, which must be one visible character, e.g. keep:3:4:#".to_owned(),
        ),
        (
            "keep:3:4:ab",
            "mask \"keep:3:4:ab\" has \"ab\" for C, which must be one visible character, e.g. keep:3:4:#".to_owned(),
        ),
        (
            "keep:3:4: ",
            "mask \"keep:3:4: \" has \" \" for C, which must be one visible character, e.g. keep:3:4:#".to_owned(),
        ),
        (
            "keep:3:4:#:",
            "mask \"keep:3:4:#:\" has \"#:\" for C, which must be one visible character, e.g. keep:3:4:#".to_owned(),
        ),
    ];
    for (name, want) in cases {
        match Mask::parse(name) {
            Err(e) => assert_eq!(e.to_string(), want, "{name}"),
            Ok(m) => panic!("{name:?} parsed as {m:?}"),
        }
    }
}

#[test]
fn text_masks_fit_strings_and_redact_fits_all() {
    for m in [
        Mask::BankCard,
        Mask::Email,
        Mask::LicencePlate,
        keep(1, 1, '*'),
    ] {
        assert!(m.fits(FieldType::String), "{m}");
        assert!(!m.fits(FieldType::Int), "{m}");
    }
    assert!(Mask::Name.fits(FieldType::String));
    assert!(!Mask::Name.fits(FieldType::Date));
    assert!(!Mask::IdNumber.fits(FieldType::Int));
    assert!(Mask::Redact.fits(FieldType::Date));
    assert!(Mask::Redact.fits(FieldType::Bytes));
}

#[test]
fn redact_withholds_the_value() {
    assert_eq!(apply_text(Mask::Redact, "110105199001011234"), None);
    assert_eq!(apply_text(Mask::Redact, ""), None);
}

#[test]
fn id_numbers_keep_region_and_last_four() {
    let cases = [
        ("110105199001011234", "110105********1234"),
        ("11010519900101123X", "110105********123X"),
        ("440305198512300021", "440305********0021"),
        ("510104200002291207", "510104********1207"),
        ("  320583197711114312 ", "320583********4312"),
    ];
    for (id, want) in cases {
        assert_eq!(masked(Mask::IdNumber, id), want, "{id}");
    }
}

#[test]
fn short_id_numbers_reveal_at_most_half() {
    // The 15-digit first-generation number keeps 4 + 3.
    assert_eq!(masked(Mask::IdNumber, "110105900101123"), "1101********123");
    assert_eq!(masked(Mask::IdNumber, "1234567890"), "123*****90");
    assert_eq!(masked(Mask::IdNumber, "1234"), "1**4");
    assert_eq!(masked(Mask::IdNumber, "12"), "1*");
    assert_eq!(masked(Mask::IdNumber, "1"), "*");
    assert_eq!(masked(Mask::IdNumber, ""), "");
    for len in 0..18 {
        let id: String = "9".repeat(len);
        let shown = masked(Mask::IdNumber, &id)
            .chars()
            .filter(|&c| c != '*')
            .count();
        assert!(shown * 2 <= len, "length {len} shows {shown}");
        assert_eq!(masked(Mask::IdNumber, &id).chars().count(), len);
    }
}

#[test]
fn id_numbers_are_masked_by_characters_not_bytes() {
    // Full-width digits are three bytes each in UTF-8.
    assert_eq!(
        masked(Mask::IdNumber, "１１０１０５１９９００１０１１２３４"),
        "１１０１０５********１２３４"
    );
}

#[test]
fn chinese_names_keep_the_family_name() {
    let cases = [
        ("王伟", "王*"),
        ("李娜", "李*"),
        ("张小明", "张**"),
        ("刘德华", "刘**"),
        ("陈", "*"),
        ("欧阳娜娜", "欧阳**"),
        ("欧阳修", "欧阳*"),
        ("司马光", "司马*"),
        ("上官婉儿", "上官**"),
        ("诸葛亮", "诸葛*"),
        ("东方明珠", "东方**"),
        ("皇甫嵩", "皇甫*"),
        ("尉迟恭", "尉迟*"),
        ("公孙策", "公孙*"),
        ("慕容复", "慕容*"),
        ("长孙无忌", "长孙**"),
        ("宇文泰", "宇文*"),
        ("司徒雷登", "司徒**"),
        ("夏侯惇", "夏侯*"),
        ("令狐冲", "令狐*"),
        ("端木蓉", "端木*"),
        ("独孤求败", "独孤**"),
        ("南宫问天", "南宫**"),
        ("西门庆", "西门*"),
        ("轩辕明", "轩辕*"),
        ("歐陽震華", "歐陽**"),
        // Two characters: a single family name and a given name, even if they spell a compound.
        ("欧阳", "欧*"),
        ("司马", "司*"),
        // 马 is a single family name; 司马 only counts at the start.
        ("马司徒", "马**"),
    ];
    for (name, want) in cases {
        assert_eq!(masked(Mask::Name, name), want, "{name}");
    }
}

#[test]
fn latin_script_names_keep_the_first_word() {
    assert_eq!(masked(Mask::Name, "Zhang Wei"), "Zhang *");
    assert_eq!(masked(Mask::Name, "Ouyang Nana"), "Ouyang *");
    assert_eq!(masked(Mask::Name, "Li Xiao Long"), "Li * *");
    assert_eq!(masked(Mask::Name, "  Wang   Fang  "), "Wang *");
    assert_eq!(masked(Mask::Name, "Zhang"), "Z****");
}

#[test]
fn transcribed_names_keep_the_first_character_and_separators() {
    assert_eq!(masked(Mask::Name, "阿依古丽·买买提"), "阿***·***");
    assert_eq!(masked(Mask::Name, "扎西・顿珠"), "扎*・**");
}

#[test]
fn empty_name_stays_empty() {
    assert_eq!(masked(Mask::Name, ""), "");
    assert_eq!(masked(Mask::Name, "   "), "");
}

#[test]
fn addresses_are_cut_to_the_district() {
    let cases = [
        (
            "北京市朝阳区建国路88号华贸公寓3号楼2单元1502室",
            "北京市朝阳区",
        ),
        ("浙江省杭州市西湖区文三路", "浙江省杭州市西湖区"),
        (
            "浙江省杭州市西湖区文三路478号华星时代广场A座",
            "浙江省杭州市西湖区",
        ),
        ("上海市浦东新区世纪大道100号", "上海市浦东新区"),
        ("天津市滨海新区", "天津市滨海新区"),
        ("重庆市渝中区解放碑", "重庆市渝中区"),
        ("重庆市巫山县巫峡镇", "重庆市巫山县"),
        ("广东省深圳市南山区科技园南区", "广东省深圳市南山区"),
        ("北京市海淀区中关村大街27号", "北京市海淀区"),
        ("湖北省武汉市洪山区珞喻路1037号", "湖北省武汉市洪山区"),
        ("四川省成都市武侯区人民南路四段", "四川省成都市武侯区"),
        ("河北省保定市涞水县永阳镇", "河北省保定市涞水县"),
        ("安徽省马鞍山市和县历阳镇", "安徽省马鞍山市和县"),
        ("江苏省南京市鼓楼区汉口路22号", "江苏省南京市鼓楼区"),
        ("福建省福州市鼓楼区五四路", "福建省福州市鼓楼区"),
        ("黑龙江省哈尔滨市道里区中央大街", "黑龙江省哈尔滨市道里区"),
        ("河北省唐山市路南区新华西道", "河北省唐山市路南区"),
        ("山西省太原市小店区坞城路", "山西省太原市小店区"),
        ("河南省新乡市红旗区人民路", "河南省新乡市红旗区"),
        ("山东省济南市市中区经四路", "山东省济南市市中区"),
        ("山东省青岛市市南区香港中路", "山东省青岛市市南区"),
        ("江苏省镇江市京口区", "江苏省镇江市京口区"),
        ("山西省晋城市城区凤台东街", "山西省晋城市城区"),
        ("江苏省盐城市亭湖区", "江苏省盐城市亭湖区"),
        ("福建省厦门市思明区思明南路422号", "福建省厦门市思明区"),
        ("广东省江门市蓬江区", "广东省江门市蓬江区"),
        ("湖北省荆门市东宝区", "湖北省荆门市东宝区"),
        ("山东省潍坊市诸城市密州街道", "山东省潍坊市诸城市"),
        ("甘肃省临夏回族自治州临夏市", "甘肃省临夏回族自治州临夏市"),
        ("朝阳区建国路88号", "朝阳区"),
        ("杭州市西湖区文三路", "杭州市西湖区"),
        ("北京朝阳区建国路", "北京朝阳区"),
    ];
    for (address, want) in cases {
        assert_eq!(masked(Mask::Address, address), want, "{address}");
    }
}

#[test]
fn county_level_cities_are_kept() {
    let cases = [
        ("江苏省昆山市玉山镇前进西路", "江苏省昆山市"),
        ("江苏省苏州市昆山市玉山镇前进西路", "江苏省苏州市昆山市"),
        ("浙江省金华市义乌市稠城街道", "浙江省金华市义乌市"),
        ("湖北省仙桃市干河街道", "湖北省仙桃市"),
        (
            "新疆维吾尔自治区阿克苏地区库车市天山路",
            "新疆维吾尔自治区阿克苏地区库车市",
        ),
        (
            "吉林省延边朝鲜族自治州延吉市光明街",
            "吉林省延边朝鲜族自治州延吉市",
        ),
    ];
    for (address, want) in cases {
        assert_eq!(masked(Mask::Address, address), want, "{address}");
    }
}

#[test]
fn autonomous_regions_leagues_and_banners() {
    let cases = [
        (
            "广西壮族自治区南宁市青秀区民族大道100号",
            "广西壮族自治区南宁市青秀区",
        ),
        (
            "内蒙古自治区呼和浩特市新城区",
            "内蒙古自治区呼和浩特市新城区",
        ),
        (
            "内蒙古自治区锡林郭勒盟正镶白旗明安图镇",
            "内蒙古自治区锡林郭勒盟正镶白旗",
        ),
        (
            "内蒙古自治区鄂尔多斯市伊金霍洛旗",
            "内蒙古自治区鄂尔多斯市伊金霍洛旗",
        ),
        ("西藏自治区拉萨市城关区北京中路", "西藏自治区拉萨市城关区"),
        ("宁夏回族自治区银川市兴庆区", "宁夏回族自治区银川市兴庆区"),
        ("贵州省六盘水市六枝特区平寨镇", "贵州省六盘水市六枝特区"),
        ("湖北省神农架林区松柏镇", "湖北省神农架林区"),
        (
            "云南省临沧市双江拉祜族佤族布朗族傣族自治县勐勐镇",
            "云南省临沧市双江拉祜族佤族布朗族傣族自治县",
        ),
        ("香港特别行政区九龙城区", "香港特别行政区九龙城区"),
    ];
    for (address, want) in cases {
        assert_eq!(masked(Mask::Address, address), want, "{address}");
    }
}

#[test]
fn prefecture_cities_without_a_district_stop_at_the_city() {
    let cases = [
        ("广东省东莞市南城街道鸿福路", "广东省东莞市"),
        ("浙江省杭州市文三路", "浙江省杭州市"),
        ("海南省儋州市那大镇", "海南省儋州市"),
    ];
    for (address, want) in cases {
        assert_eq!(masked(Mask::Address, address), want, "{address}");
    }
}

#[test]
fn compounds_and_shops_are_not_taken_for_districts() {
    let cases = [
        ("杭州市阳光小区3幢201", "杭州市"),
        ("浙江省杭州市阳光社区", "浙江省杭州市"),
        ("浙江省杭州市华联超市", "浙江省杭州市"),
        ("浙江省杭州市创业联盟大厦西区", "浙江省杭州市"),
        ("湖北省天门市竟陵街道", "湖北省天门市"),
        ("浙江省杭州市文三路阳光小区", "浙江省杭州市"),
    ];
    for (address, want) in cases {
        assert_eq!(masked(Mask::Address, address), want, "{address}");
    }
}

#[test]
fn addresses_without_a_division_keep_a_short_prefix_without_numbers() {
    assert_eq!(
        masked(Mask::Address, "华贸公寓中心大堂东侧走廊尽头"),
        "华贸公寓中心…"
    );
    assert_eq!(
        masked(Mask::Address, "建国路88号华贸公寓3号楼2单元1502室"),
        "建国路…"
    );
    assert_eq!(masked(Mask::Address, "华贸公寓"), "华贸…");
    assert_eq!(masked(Mask::Address, "88 Jianguo Road, Beijing"), "…");
    assert_eq!(masked(Mask::Address, ""), "");
}

#[test]
fn phone_numbers_keep_three_and_four_digits() {
    let cases = [
        ("13812345678", "138****5678"),
        ("15900001111", "159****1111"),
        ("138-1234-5678", "138-****-5678"),
        ("138 1234 5678", "138 **** 5678"),
        ("010-12345678", "010-****5678"),
        ("0571-88886666", "057*-****6666"),
        ("+86 13812345678", "+86 1******5678"),
        ("12345", "1***5"),
        ("95588", "9***8"),
        ("", ""),
    ];
    for (phone, want) in cases {
        assert_eq!(masked(Mask::Phone, phone), want, "{phone}");
    }
}

#[test]
fn masks_never_lengthen_what_they_hide_and_never_panic_on_odd_text() {
    let odd = [
        "",
        " ",
        "*",
        "…",
        "😀😀😀",
        "a\u{0301}b",
        "区",
        "市市市市",
        "省",
        "自治区",
        "〇〇〇",
        "１",
        "--",
        "号",
        "镇江",
        "乡",
    ];
    for text in odd {
        for m in Mask::ALL {
            if let Some(out) = apply_text(*m, text) {
                assert!(
                    out.chars().count() <= text.chars().count() + 1,
                    "{m} {text:?} -> {out:?}"
                );
            }
        }
    }
}

#[test]
fn bank_cards_keep_the_issuer_and_last_four_without_separators() {
    let cases = [
        ("6222021234561234", "622202******1234"),
        ("6222 0212 3456 1234", "622202******1234"),
        ("6222-0212-3456-1234", "622202******1234"),
        ("  6217 0000 1234 5678 901 ", "621700*********8901"),
        ("4111111111111111", "411111******1111"),
        // 12 digits, the shortest shown in part.
        ("622202123456", "622202**3456"),
        // Full-width digits count as digits and are kept as written.
        (
            "６２２２０２１２３４５６１２３４",
            "６２２２０２******１２３４",
        ),
    ];
    for (card, want) in cases {
        assert_eq!(masked(Mask::BankCard, card), want, "{card}");
    }
}

#[test]
fn short_or_odd_bank_card_values_are_hidden_entirely() {
    let cases = [
        ("", ""),
        ("1234", "****"),
        ("6222021234", "**********"),
        // 11 digits: the one digit hidden would be given back by the Luhn check digit.
        ("62220212345", "***********"),
        ("6222-ABCD-1234", "************"),
        ("6222021234561234x", "*****************"),
        ("卡号6222021234561234", "******************"),
        ("6222.0212.3456.1234", "*******************"),
    ];
    for (card, want) in cases {
        assert_eq!(masked(Mask::BankCard, card), want, "{card}");
    }
    // Whatever the input, at most 6 + 4 digits of it are shown, and only when 2 or more are
    // hidden.
    for len in 0..25 {
        let card: String = "7".repeat(len);
        let shown = masked(Mask::BankCard, &card)
            .chars()
            .filter(|&c| c != '*')
            .count();
        assert!(
            shown <= 10 && (shown == 0 || len >= shown + 2),
            "{len}: {shown}"
        );
    }
}

#[test]
fn emails_keep_the_first_character_and_the_domain() {
    let cases = [
        ("zhang.wei@example.gov.cn", "z***@example.gov.cn"),
        ("zw@example.gov.cn", "z***@example.gov.cn"),
        (" li@mca.gov.cn ", "l***@mca.gov.cn"),
        ("张伟@例子.中国", "张***@例子.中国"),
        // One character: keeping it would keep the whole local part.
        ("z@example.gov.cn", "***@example.gov.cn"),
        // The domain is after the last @.
        ("\"a@b\"@example.cn", "\"***@example.cn"),
    ];
    for (email, want) in cases {
        assert_eq!(masked(Mask::Email, email), want, "{email}");
    }
}

#[test]
fn values_that_are_not_emails_are_hidden_entirely() {
    let cases = [
        ("", ""),
        ("zhang.wei", "*********"),
        ("张伟", "**"),
        ("@example.cn", "***********"),
        ("zhang@", "******"),
        ("call z@x.cn", "***********"),
    ];
    for (email, want) in cases {
        assert_eq!(masked(Mask::Email, email), want, "{email}");
    }
}

#[test]
fn licence_plates_keep_province_authority_and_last_character() {
    let cases = [
        ("京A12345", "京A****5"),
        ("沪C0A123", "沪C****3"),
        ("粤B·D12345", "粤B*****5"),
        ("粤BD12345", "粤B*****5"),
        ("粤B D12345", "粤B*****5"),
        ("苏E-12345", "苏E****5"),
        ("川A1234学", "川A****学"),
        ("浙A1234警", "浙A****警"),
    ];
    for (plate, want) in cases {
        assert_eq!(masked(Mask::LicencePlate, plate), want, "{plate}");
    }
}

#[test]
fn values_that_are_not_civil_plates_are_hidden_entirely() {
    let cases = [
        ("", ""),
        ("京", "*"),
        ("京A1234", "******"),
        ("京A1234567", "*********"),
        ("京a12345", "*******"),
        ("WJ12345", "*******"),
        ("使123456", "*******"),
        ("A京12345", "*******"),
        ("京A12#45", "*******"),
        ("京A12345警警", "*********"),
    ];
    for (plate, want) in cases {
        assert_eq!(masked(Mask::LicencePlate, plate), want, "{plate}");
    }
}

#[test]
fn keep_keeps_head_and_tail_characters() {
    let cases = [
        (keep(3, 4, '*'), "91310115MA1H7XYZ3K", "913***********YZ3K"),
        (keep(1, 1, '*'), "张小明", "张*明"),
        (keep(1, 1, '#'), "张小明", "张#明"),
        (keep(2, 0, '某'), "欧阳娜娜", "欧阳某某"),
        (keep(0, 3, '*'), "abcdef", "***def"),
        (keep(0, 0, '*'), "abc", "***"),
        (keep(1, 1, '*'), "😀😀😀", "😀*😀"),
        // Separators are characters like any other.
        (keep(3, 4, '*'), "138-1234-5678", "138******5678"),
        (keep(1, 1, '*'), "  ab c  ", "a**c"),
        (keep(1, 1, '*'), "", ""),
    ];
    for (m, text, want) in cases {
        assert_eq!(masked(m, text), want, "{m} {text}");
    }
}

#[test]
fn keep_never_reveals_the_whole_value() {
    // N + M at the length or beyond: all hidden.
    assert_eq!(masked(keep(1, 1, '*'), "ab"), "**");
    assert_eq!(masked(keep(2, 2, '*'), "王五"), "**");
    assert_eq!(masked(keep(3, 1, '#'), "abcd"), "####");
    assert_eq!(masked(keep(u16::MAX, u16::MAX, '*'), "abc"), "***");
    // One below: one character hidden.
    assert_eq!(masked(keep(2, 1, '*'), "abcd"), "ab*d");
    for len in 0..12 {
        let text: String = "x".repeat(len);
        for head in 0..12 {
            for tail in 0..12 {
                let out = masked(keep(head, tail, '*'), &text);
                assert_eq!(out.chars().count(), len);
                let shown = out.chars().filter(|&c| c != '*').count();
                assert!(len == 0 || shown < len, "keep:{head}:{tail} on {len}");
            }
        }
    }
}

/// Reads the table of docs/masking.md: `(mask, input, output)` for each example row, the output
/// `None` where the table says null.
fn examples_in_docs() -> Vec<(String, String, Option<String>)> {
    let doc = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/masking.md"
    ));
    let code = |cell: &str| -> Option<String> {
        let cell = cell.trim();
        cell.strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .map(str::to_owned)
    };
    doc.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            assert_eq!(cells.len(), 5, "{l}");
            let mask = code(cells[0]).unwrap_or_else(|| panic!("mask in {l}"));
            let input = code(cells[3]).unwrap_or_else(|| panic!("input in {l}"));
            let output = match cells[4].trim() {
                "null" => None,
                c => Some(code(c).unwrap_or_else(|| panic!("output in {l}"))),
            };
            (mask, input, output)
        })
        .collect()
}

#[test]
fn examples_in_docs_masking_md_hold() {
    let examples = examples_in_docs();
    for (name, input, output) in &examples {
        let m = Mask::parse(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&apply_text(m, input), output, "{name} {input}");
    }
    let shown: Vec<&str> = examples.iter().map(|(m, _, _)| m.as_str()).collect();
    for m in Mask::ALL {
        assert!(shown.contains(&&*m.as_str()), "{m} has no example");
    }
    for form in ["keep:3:4", "keep:1:1:#", "keep:2:2"] {
        assert!(shown.contains(&form), "{form} has no example");
    }
}
