"""Problem details in the caller's language (shared/i18n.py): which language a request asks for,
validation reasons by pydantic's error type, and the refusals a volunteer meets at check-in and
sign-up, raised by the real domain code and said in Chinese."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

import pytest
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from services.dispatch import activities, attendance
from shared import i18n
from shared.errors import Refused
from shared.events.dispatch import Geofence, ShiftOpened


@pytest.mark.parametrize(
    ("header", "api", "page"),
    [
        (None, "en", "zh"),
        ("", "en", "zh"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh", "zh"),
        ("en-US,en;q=0.9", "en", "en"),
        ("zh-Hant-TW", "zh", "zh"),
        ("fr, en;q=0.5", "en", "en"),
        ("de", "en", "zh"),
        ("*", "en", "zh"),
        ("zh;q=0.5, en;q=0.9", "en", "en"),
        ("en;q=0, zh;q=0.1", "zh", "zh"),
        ("en;q=abc, zh", "zh", "zh"),
    ],
)
def test_the_language_is_the_callers_preferred_of_chinese_and_english_else_the_default(header, api, page) -> None:
    assert i18n.language_of(header) == api
    assert i18n.language_of(header, "zh") == page


class Everything(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=2, max_length=5, pattern=r"^[a-z]+$")]
    count: int = Field(ge=1, le=10)
    ratio: float = Field(gt=0, lt=1)
    kind: Literal["a", "b"]
    day: date
    at: AwareDatetime
    tags: list[str] = Field(max_length=2)
    flag: bool


BAD = [
    {"name": "x", "count": 0, "ratio": 0, "kind": "c", "day": "soon", "at": "2026-01-01T00:00:00", "tags": ["1", "2", "3"], "flag": "perhaps", "more": 1},
    {"name": "ABCDEFG", "count": 11, "ratio": 1, "day": "2026-02-30", "at": "later", "tags": "x", "flag": None},
    {"name": 5, "count": "many", "ratio": "half", "kind": None, "at": 5, "tags": [1]},
    {"name": "ab1", "count": 1.5},
]  # fmt: skip


def test_every_validation_error_gets_a_chinese_reason_with_its_values_and_keeps_pydantics_in_english() -> None:
    seen: set[str] = set()
    for body in BAD:
        with pytest.raises(ValidationError) as raised:
            Everything.model_validate(body)
        for error in raised.value.errors():
            seen.add(error["type"])
            assert error["type"] in i18n.VALIDATION_ZH, error["type"]
            zh = i18n.validation_reason(error, "zh")
            assert "{" not in zh.replace(r"^[a-z]+$", "") and zh != error["msg"], (error, zh)
            for name in re.findall(r"\{(\w+)\}", i18n.VALIDATION_ZH[error["type"]]):  # the values it names
                if name != "error":  # pydantic's own words for a parsing error: translated where we can
                    assert str(error["ctx"][name]) in zh, (error, zh)
            assert i18n.validation_reason(error, "en") == error["msg"]
    assert {"missing", "extra_forbidden", "string_too_short", "string_too_long", "string_pattern_mismatch",
            "greater_than_equal", "less_than_equal", "greater_than", "less_than", "literal_error", "date_from_datetime_parsing",
            "timezone_aware", "too_long", "bool_parsing", "int_parsing", "float_parsing", "string_type", "list_type",
            "int_from_float"} <= seen  # fmt: skip
    assert i18n.validation_reason({"type": "greater_than_equal", "msg": "x", "ctx": {"ge": 1}}, "zh") == "应不小于 1"


def refusal(action) -> Refused:  # type: ignore[no-untyped-def]
    with pytest.raises(Refused) as raised:
        action()
    return raised.value


FENCE = Geofence(lat=36.8, lon=118.0, radius_m=100)


def test_the_refusals_of_a_scan_are_said_in_chinese() -> None:
    now = datetime(2027, 2, 11, 12, 0, tzinfo=UTC)
    codes = attendance.ShiftCodes(b"0123456789abcdef0123456789abcdef", 30)
    good = codes.code_for("SH00000001", now)
    refusals = [
        refusal(lambda: codes.verify("nonsense", "SH00000001", now)),
        refusal(lambda: codes.verify(good[:-4] + "AAAA", "SH00000001", now)),
        refusal(lambda: codes.verify(good, "SH00000002", now)),
        refusal(lambda: codes.verify(good, "SH00000001", now + timedelta(minutes=5))),
        refusal(lambda: codes.verify(codes.code_for("SH00000001", now + timedelta(minutes=5)), "SH00000001", now)),
        refusal(lambda: attendance.check_position(FENCE, None)),
        refusal(lambda: attendance.check_position(FENCE, (37.8, 118.0))),
        refusal(lambda: attendance.check_position(FENCE, (99.0, 118.0))),
    ]
    said = [i18n.translate(r.message, "zh") for r in refusals]
    assert said == [
        "这不是 Beacon 的班次签到码", "此签到码不是 Beacon 签发的", "此签到码属于另一个班次（SH00000001）",
        "签到码已过期：请扫描现场正在显示的签到码", "签到码尚未生效，请重新扫描", "本班次签到需要手机定位",
        "扫码位置不在服务地点范围内", "位置不是有效的经纬度",
    ]  # fmt: skip
    assert [i18n.translate(r.message, "en") for r in refusals] == [r.message for r in refusals]


def test_signing_up_for_a_closed_shift_is_refused_in_chinese() -> None:
    starts = datetime(2027, 2, 11, 12, tzinfo=UTC)
    shift = ShiftOpened(
        shift_id="SH00000001", activity_id="A00000001", site_id="ST-1", starts_at=starts,
        ends_at=starts + timedelta(hours=2), capacity=1,
    )  # fmt: skip
    state = activities.ShiftState(shift=shift, activity_id="A00000001")
    ended = refusal(lambda: activities.sign_up(state, "V00000001", starts + timedelta(days=1)))
    assert i18n.translate(ended.message, "zh") == "班次 SH00000001 已结束，无法报名"
    cancelled = activities.ShiftState(shift=shift, activity_id="A00000001", status=activities.CANCELLED)
    assert i18n.translate(refusal(lambda: activities.sign_up(cancelled, "V00000001", starts)).message, "zh") == (
        "班次 SH00000001 已取消，无法报名"
    )


@pytest.mark.parametrize(
    ("english", "chinese"),
    [
        (
            "sign in: send an access token as Authorization: Bearer <token>",
            "请先登录：以 Authorization: Bearer <访问令牌> 发送访问令牌",
        ),
        (
            "a volunteer may not do this (only city_admin, station_staff)",
            "志愿者无权执行此操作（仅限：市级管理员、站点工作人员）",
        ),
        ("the access token has expired: refresh it or sign in again", "访问令牌已过期：请刷新或重新登录"),
        (
            "too many requests to check-in: at most 30 a minute (20 at once)",
            "签到请求过多：每分钟最多 30 次（一次最多 20 次）",
        ),
        ("wrong username or password", "用户名或密码错误"),
        ("Not Found", "未找到"),
        ("unknown order O00000009", "未知的工单 O00000009"),
        ("no order O00000009", "没有工单 O00000009"),
        (
            "volunteer V00000001 is suspended: only a verified volunteer signs up",
            "志愿者 V00000001 已暂停：只有已认证的志愿者可以报名",
        ),
        ("something nobody wrote a pattern for", "something nobody wrote a pattern for"),
    ],
)
def test_common_refusals_are_said_in_chinese_and_the_rest_stays_english(english: str, chinese: str) -> None:
    assert i18n.translate(english, "zh") == chinese
    assert i18n.translate(english, "en") == english


def test_titles_are_said_in_chinese() -> None:
    assert [i18n.title(t, "zh") for t in ("Invalid request", "NotFound", "NotAuthenticated")] == [
        "请求无效",
        "未找到",
        "未登录或凭据无效",
    ]
    assert i18n.title("NotFound", "en") == "NotFound"
