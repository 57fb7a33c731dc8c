use super::*;

fn masked(mask: Mask, text: &str) -> String {
    apply_text(mask, text).unwrap()
}

#[test]
fn names_round_trip() {
    for m in Mask::ALL {
        assert_eq!(Mask::parse(m.as_str()), Some(*m));
        assert_eq!(m.to_string(), m.as_str());
    }
    assert_eq!(Mask::parse("ID-number"), None);
    assert_eq!(Mask::parse(""), None);
    assert_eq!(Mask::names(), "id-number, name, address, phone, redact");
}

#[test]
fn text_masks_fit_strings_and_redact_fits_all() {
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
