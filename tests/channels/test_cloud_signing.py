"""The pinned vectors of channels.md as tests of both the signers and the fakes' verifiers."""

from __future__ import annotations

from broadcaster.channels.aliyun_rpc import percent_encode, sign_v1, string_to_sign
from broadcaster.channels.tencent_tc3 import canonical_request, tc3_signature
from tests.fakes import aliyun, tencent

ALIYUN_PARAMS = {
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}
ALIYUN_SIGNATURE = "zJDF+Lrzhj/ThnlvIToysFRq6t4="

TENCENT_BODY = (
    b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
)
TENCENT_KEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
TENCENT_SIGNATURE = "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"


def test_aliyun_percent_encoding_is_rfc3986() -> None:
    assert percent_encode("a b*c~d/é") == "a%20b%2Ac~d%2F%C3%A9"


def test_aliyun_signer_matches_the_official_example() -> None:
    assert string_to_sign("GET", ALIYUN_PARAMS).startswith("GET&%2F&AccessKeyId%3DtestId%26")
    assert sign_v1("testSecret", "GET", ALIYUN_PARAMS) == ALIYUN_SIGNATURE


def test_aliyun_fake_verifier_matches_the_official_example() -> None:
    assert aliyun.expected_signature("testSecret", "GET", ALIYUN_PARAMS) == ALIYUN_SIGNATURE
    with_signature = {**ALIYUN_PARAMS, "Signature": ALIYUN_SIGNATURE}
    assert aliyun.expected_signature("testSecret", "GET", with_signature) == ALIYUN_SIGNATURE
    assert aliyun.expected_signature("testsecret", "GET", ALIYUN_PARAMS) != ALIYUN_SIGNATURE


def test_tencent_signer_matches_the_official_example() -> None:
    host = "cvm.tencentcloudapi.com"
    import hashlib

    request = canonical_request(host, TENCENT_BODY)
    assert request.endswith("35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064")
    assert (
        hashlib.sha256(request.encode()).hexdigest()
        == "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )
    assert tc3_signature(TENCENT_KEY, "cvm", host, 1551113065, TENCENT_BODY) == TENCENT_SIGNATURE


def test_tencent_fake_verifier_matches_the_official_example() -> None:
    host = "cvm.tencentcloudapi.com"
    assert (
        tencent.expected_signature(
            TENCENT_KEY, "cvm", host, 1551113065, TENCENT_BODY, "application/json; charset=utf-8"
        )
        == TENCENT_SIGNATURE
    )
    # the date is the UTC date of the timestamp: a day later signs differently
    assert (
        tencent.expected_signature(
            TENCENT_KEY,
            "cvm",
            host,
            1551113065 + 86400,
            TENCENT_BODY,
            "application/json; charset=utf-8",
        )
        != TENCENT_SIGNATURE
    )
