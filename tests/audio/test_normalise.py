"""The text stage: numbers, letters and symbols as an announcer reads them."""

from __future__ import annotations

import subprocess

import pytest

from broadcaster.audio.normalise import cardinal, digits, normalise


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("请拨打96110咨询", "请拨打九六幺幺零咨询"),
        ("报警电话110", "报警电话幺幺零"),
        ("110", "幺幺零"),
        ("拨114查号", "拨幺幺四查号"),
        ("反诈专线96110，报警110。", "反诈专线九六幺幺零，报警幺幺零。"),
        ("派出所电话0571-88886666", "派出所电话零五七幺，八八八八六六六六"),
        ("手机13800138000", "手机幺三八零零幺三八零零零"),
        ("2026年12月5日", "二零二六年十二月五日"),
        ("2019年", "二零一九年"),
        ("被骗50000元", "被骗五万元"),
        ("损失1,200元", "损失一千两百元"),
        ("共105人", "共一百零五人"),
        ("第3期", "第三期"),
        ("年化收益30%", "年化收益百分之三十"),
        ("3.5%", "百分之三点五"),
        ("100%不能信", "百分之百不能信"),
        ("¥200", "两百元"),
        ("早上07:00和18:30", "早上七点和十八点三十分"),
        ("9:05开始", "九点零五分开始"),
        ("3-5天", "三到五天"),
        ("安装国家反诈中心APP", "安装国家反诈中心客户端"),
        ("加QQ好友", "加扣扣好友"),
        ("９６１１０", "九六幺幺零"),  # full-width digits
    ],
)
def test_numbers_are_read_as_announced(written: str, spoken: str) -> None:
    result = normalise(written)
    assert result.text == spoken
    assert result.problems == ()


def test_cardinal_numbers() -> None:
    cases = {
        0: "零",
        7: "七",
        10: "十",
        12: "十二",
        20: "二十",
        105: "一百零五",
        1005: "一千零五",
        10000: "一万",
        10010: "一万零一十",
        120000: "十二万",
        1000001: "一百万零一",
        30500: "三万零五百",
    }
    assert {n: cardinal(n) for n in cases} == cases


def test_digits_phone_and_year_forms() -> None:
    assert digits("96110") == "九六幺幺零"
    assert digits("2011", phone=False) == "二零一一"


def test_latin_letters_are_reported_and_dropped() -> None:
    result = normalise("点击www.abc.com领取")
    assert "www" not in result.text and "abc" not in result.text
    assert result.problems == (
        "无法朗读的拉丁字母 Latin letters cannot be spoken in Chinese: 'www', 'abc', 'com'"
        " (write it in Chinese)",
    )


def test_emoji_and_symbols_are_reported_and_dropped() -> None:
    result = normalise("注意😀！★千万别转账👍🏻")
    assert result.text == "注意！千万别转账"
    assert result.problems == (
        "无法朗读的符号或表情 symbols or emoji cannot be spoken: '😀★👍🏻' (removed)",
    )


def test_a_clean_script_passes_untouched() -> None:
    text = "乡亲们请注意！陌生电话让您转账，一律是诈骗。"
    assert normalise(text).text == text
    assert normalise(text).problems == ()


def test_the_engine_says_yao_for_the_hotline() -> None:
    """The phoneme stage: espeak-ng reads the normalised 96110 with 幺 as jau (yāo)."""
    said = normalise("请拨打96110").text
    phonemes = subprocess.run(
        ["espeak-ng", "-v", "cmn-latn-pinyin", "-q", "-x", said],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # 九 六 幺 幺 零: two yāo between liù and líng, and no English fall-back
    assert phonemes.count("j'Au55") == 2
    assert "(en)" not in phonemes
