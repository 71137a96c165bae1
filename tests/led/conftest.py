"""A campaign with LED screens: a township service-centre door screen (GB2312, own
content), a school gate screen (GBK), and a led channel with slogans per theme."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_campaign

SCREENS = """
campaign:
  id: screens
  name: 显示屏测试活动
  office: 测试派出所
phases:
  - {id: main, name: 集中宣传, start: 2026-01-01, end: 2026-12-31}
occasions:
  - {id: spring, name: 春节, lunar: "01-01", before: 7, after: 7, priority: 90, theme: festive}
default_theme: routine
themes:
  routine: {name: 日常, topics: [alpha, beta]}
  festive: {name: 节日, topics: [delta]}
templates: [tpl]
targets:
  - id: town
    name: 测试镇
    audience: villagers
    children:
      - id: door
        name: 便民服务中心门口屏
        tags: [led]
        screen:
          width: 12
          lines: 2
          token: {env: TEST_SECRET_DOOR}
          stale_after: 30m
          own:
            - {id: hours, text: 办事大厅周六照常办公, seconds: 20}
            - {id: bank, text: 农商银行助农取款点在大厅东侧, seconds: 25}
            - {id: weather, text: 今日晴，最高气温十八度, seconds: 15}
      - id: gate
        name: 中学校门屏
        tags: [led]
        screen: {charset: gbk, width: 8, lines: 1, max_gap: 45s}
channels:
  screens:
    type: led
    kind: led
    settings:
      hotline: 反诈专线96110 报警110
      slogans: {festive: 春节返乡防骗，全民反诈}
      default_slogan: 全民反诈，共创平安
rules:
  - id: led-rotation
    channels: [screens]
    targets: {tags: [led]}
    when: {daily: true, at: "08:00", repeat: {every: 2h, until: "20:00"}}
"""

LED_TEMPLATES = {
    "topics.yaml": """
alpha: {name: 甲类诈骗, en: Alpha fraud, slogan: 凡是甲就是诈骗}
beta: {name: 乙类诈骗, en: Beta fraud, slogan: 凡是乙就是诈骗}
gamma: {name: 丙类诈骗, en: Gamma fraud, slogan: 凡是丙就是诈骗}
delta: {name: 丁类诈骗, en: Delta fraud, slogan: 凡是丁就是诈骗}
""",
    "led/alpha.j2": "{{ topic.slogan }}！可疑请拨96110",
    "led/beta.j2": "{{ topic.slogan }}！可疑请拨96110",
    "led/delta.j2": "{{ topic.slogan }}！可疑请拨96110",
    "led/alert.j2": "预警：{{ vars.get('alert_text', '近期诈骗高发') }}",
}


def write_screens(folder: Path, yaml_text: str = SCREENS, **templates: str) -> Path:
    return write_campaign(folder, yaml_text, {**LED_TEMPLATES, **templates})


@pytest.fixture
def screens_campaign(tmp_path: Path) -> Path:
    return write_screens(tmp_path / "screens")
