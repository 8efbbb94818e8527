"""Problem details in the caller's language, Chinese or English, chosen by `Accept-Language`.

An API client that names neither (most scripts send no `Accept-Language`) gets English, the
language the API is documented in; a browser or app that prefers Chinese gets Chinese. What is
translated, and how:

- every problem `title`;
- a validation error's field-level reason, by pydantic's error type with its context values
  (`string_too_long` with `max_length`, ...), so that every route is covered at once;
- a refusal's `detail` and reasons, by a catalog of message patterns (`REFUSALS`): the common
  refusals of shared/ (sign in, role, rate limit, not found) and those a volunteer meets most
  (check-in and check-out, signing up). A message without a pattern stays in English: the
  catalog grows as messages are added to it, never by changing what the services raise.
The members other than `title`, `detail` and `errors[].reason` (`reason`, `state`, ...) are codes
for programs and are never translated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")
API_DEFAULT: Language = "en"  # for a caller that names neither language

_RANGE = re.compile(r"^\s*(\*|[A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([01](?:\.\d{0,3})?))?\s*$")


def language_of(accept_language: str | None, default: Language = API_DEFAULT) -> Language:
    """The language to answer in: the caller's most preferred of Chinese and English (q-values
    honoured, `*` standing for `default`), else `default`."""
    best: tuple[float, Language] | None = None
    for part in (accept_language or "").split(",")[:20]:
        match = _RANGE.match(part)
        if match is None:
            continue
        tag, quality = match.group(1).lower(), float(match.group(2) or 1)
        language = default if tag == "*" else tag
        if language in LANGUAGES and quality > 0 and (best is None or quality > best[0]):
            best = (quality, language)  # type: ignore[assignment]  (checked just above)
    return default if best is None else best[1]


# --- Titles ---------------------------------------------------------------------------------------

TITLES_ZH = {
    "Invalid request": "请求无效",
    "Invalid": "输入无效",
    "NotFound": "未找到",
    "Conflict": "与当前状态冲突",
    "NotAuthenticated": "未登录或凭据无效",
    "Forbidden": "无权操作",
    "TooManyAttempts": "尝试过于频繁",
    "Concurrent change": "同时修改冲突",
    "HTTP error": "HTTP 错误",
    "Refused": "请求被拒绝",
}


def title(text: str, language: Language) -> str:
    return TITLES_ZH.get(text, text) if language == "zh" else text


# --- Validation errors, by pydantic's error type ------------------------------------------------

# pydantic's error type -> the Chinese reason; `{name}` is filled from the error's `ctx`.
VALIDATION_ZH = {
    "missing": "必填项缺失",
    "extra_forbidden": "不接受此项",
    "string_type": "应为文本",
    "string_sub_type": "应为文本",
    "string_unicode": "应为有效的 Unicode 文本",
    "string_too_short": "至少 {min_length} 个字符",
    "string_too_long": "最多 {max_length} 个字符",
    "string_pattern_mismatch": "格式不符（应匹配 {pattern}）",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数，不能有小数",
    "int_parsing_size": "整数超出范围",
    "float_type": "应为数字",
    "float_parsing": "应为数字",
    "finite_number": "应为有限的数字",
    "decimal_type": "应为十进制数",
    "decimal_parsing": "应为十进制数",
    "decimal_max_digits": "最多 {max_digits} 位数字",
    "decimal_max_places": "小数最多 {decimal_places} 位",
    "decimal_whole_digits": "整数部分最多 {whole_digits} 位",
    "bool_type": "应为布尔值（true 或 false）",
    "bool_parsing": "应为布尔值（true 或 false）",
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "应不小于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "应不大于 {le}",
    "multiple_of": "应为 {multiple_of} 的倍数",
    "enum": "应为以下之一：{expected}",
    "literal_error": "应为以下之一：{expected}",
    "date_type": "应为日期（YYYY-MM-DD）",
    "date_parsing": "应为日期（YYYY-MM-DD）：{error}",
    "date_from_datetime_parsing": "应为日期（YYYY-MM-DD）：{error}",
    "date_from_datetime_inexact": "应为日期，不能带时间",
    "date_past": "应为过去的日期",
    "date_future": "应为将来的日期",
    "datetime_type": "应为日期时间（ISO 8601）",
    "datetime_parsing": "应为日期时间（ISO 8601）：{error}",
    "datetime_from_date_parsing": "应为日期时间（ISO 8601）：{error}",
    "datetime_object_invalid": "日期时间无效：{error}",
    "datetime_past": "应为过去的时间",
    "datetime_future": "应为将来的时间",
    "timezone_aware": "应带时区（例如 +08:00）",
    "timezone_naive": "不应带时区",
    "time_type": "应为时间（HH:MM）",
    "time_parsing": "应为时间（HH:MM）：{error}",
    "time_delta_type": "应为时长",
    "time_delta_parsing": "应为时长：{error}",
    "too_short": "至少 {min_length} 项",
    "too_long": "最多 {max_length} 项",
    "list_type": "应为列表",
    "tuple_type": "应为列表",
    "set_type": "应为列表",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "model_attributes_type": "应为对象",
    "dataclass_type": "应为对象",
    "json_invalid": "不是有效的 JSON：{error}",
    "json_type": "应为 JSON 文本",
    "uuid_type": "应为 UUID",
    "uuid_parsing": "应为 UUID：{error}",
    "url_type": "应为网址",
    "url_parsing": "应为网址：{error}",
    "url_scheme": "网址协议应为 {expected_schemes}",
    "bytes_type": "应为字节串",
    "bytes_too_short": "至少 {min_length} 字节",
    "bytes_too_long": "最多 {max_length} 字节",
    "union_tag_invalid": "{discriminator} 的值 {tag} 无效（应为 {expected_tags}）",
    "union_tag_not_found": "缺少用于区分类型的 {discriminator}",
    "is_instance_of": "类型不符（应为 {class}）",
    "value_error": "值无效：{error}",
    "assertion_error": "值无效：{error}",
    "no_such_attribute": "没有此属性",
    "frozen_field": "此项不可修改",
    "frozen_instance": "不可修改",
    "none_required": "应为空（null）",
    "callable_type": "类型不符",
}


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "、".join(map(str, value))
    if isinstance(value, BaseException):
        return translate(str(value), "zh")
    return str(value)


def validation_reason(error: Mapping[str, Any], language: Language) -> str:
    """A pydantic error's reason in the language: pydantic's own message in English, the
    catalog's in Chinese (pydantic's message where the type has none)."""
    message = str(error.get("msg", "invalid"))
    if language == "en":
        return message
    template = VALIDATION_ZH.get(str(error.get("type", "")))
    if template is None:
        return message
    context = {name: _value(value) for name, value in (error.get("ctx") or {}).items()}
    if error.get("type") == "value_error" and "error" not in context:
        context["error"] = translate(message.removeprefix("Value error, "), "zh")
    try:
        return template.format_map(context)
    except (KeyError, IndexError, ValueError):  # a context pydantic did not give: its message
        return message


# --- Refusals, by message pattern -----------------------------------------------------------------

# Words that fill a pattern's parts: states, doings, names of limits.
WORDS_ZH = {
    # what was being done
    "sign up": "报名", "withdraw": "退出", "cancel it": "取消", "check in": "签到", "check out": "签退",
    "dispatch it": "派单", "accept it": "接单", "decline it": "拒绝", "complete it": "完成", "cancel": "取消",
    "open it for taking": "开放抢单", "escalate it": "上报上级站点", "take it": "抢单", "rate it": "评价",
    # states
    "placed": "待派单", "dispatched": "已派单", "open": "开放抢单中", "accepted": "已接单", "taken": "已被抢单",
    "completed": "已完成", "rated": "已评价", "cancelled": "已取消", "ended": "已结束",
    "pending": "待审核", "verified": "已认证", "suspended": "已暂停", "deregistered": "已注销",
    # things
    "order": "工单", "account": "账户",
    # rate limits
    "check-in": "签到", "sign-in": "登录", "placing orders": "下单", "certificate verification": "证书核验",
    # roles
    "city_admin": "市级管理员", "district_admin": "区级管理员", "street_staff": "街道工作人员",
    "station_staff": "站点工作人员", "team_leader": "队长", "volunteer": "志愿者", "partner": "合作系统",
}  # fmt: skip

# (pattern over the whole English message, Chinese template): `{name}` is the named group, put
# through WORDS_ZH (a list of roles, comma-separated, word by word).
REFUSALS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern), zh)
    for pattern, zh in (
        # shared/web.py and shared/auth.py: signing in, roles
        (r"sign in: send an access token as Authorization: Bearer <token>", "请先登录：以 Authorization: Bearer <访问令牌> 发送访问令牌"),
        (r"a (?P<role>\w+) may not do this \(only (?P<roles>.+)\)", "{role}无权执行此操作（仅限：{roles}）"),
        (r"this service has no public key to check tokens with \(BEACON_JWT_PUBLIC_KEY_FILE\)", "本服务没有校验访问令牌的公钥（BEACON_JWT_PUBLIC_KEY_FILE）"),
        (r"the access token has expired: refresh it or sign in again", "访问令牌已过期：请刷新或重新登录"),
        (r"the access token's signature is not Beacon's", "访问令牌的签名不是 Beacon 的"),
        (r"not a Beacon access token: (?P<why>.+)", "不是 Beacon 的访问令牌：{why}"),
        (r"the access token grants no known role \((?P<role>.*)\)", "访问令牌的角色未知（{role}）"),
        (r"the access token names no scope for its role", "访问令牌没有写明角色的范围"),
        # registry's sign-in
        (r"wrong username or password", "用户名或密码错误"),
        (r"too many failed sign-ins for this username: try again in (?P<minutes>\d+) minutes", "该用户名登录失败次数过多：请 {minutes} 分钟后再试"),
        (r"unknown refresh token: sign in again", "刷新令牌无效：请重新登录"),
        (r"the refresh token was revoked: sign in again", "刷新令牌已撤销：请重新登录"),
        (r"the refresh token has expired: sign in again", "刷新令牌已过期：请重新登录"),
        (r"the refresh token was used before, so it may be stolen: its sign-in is revoked; sign in again", "刷新令牌已被使用过，可能已泄露：本次登录已撤销，请重新登录"),
        (r"the account is closed", "账号已关闭"),
        # shared/ratelimit.py
        (r"too many requests to (?P<limit>.+): at most (?P<per_minute>[\d.]+) a minute \((?P<burst>\d+) at once\)", "{limit}请求过多：每分钟最多 {per_minute} 次（一次最多 {burst} 次）"),
        # shared/web.py: the rest
        (r"Not Found", "未找到"),
        (r"Method Not Allowed", "不支持此请求方法"),
        (r"another request changed the same thing first; retry", "另一个请求先修改了同一对象，请重试"),
        (r"(?P<kind>\w+) (?P<id>\S+) was changed concurrently, expected version (?P<expected>\d+)", "{kind} {id} 同时被修改（应为第 {expected} 版），请重试"),
        (r"(?P<kind>\w+) (?P<id>\S+) is at version (?P<actual>\d+), expected version (?P<expected>\d+)", "{kind} {id} 已是第 {actual} 版（应为第 {expected} 版），请重试"),
        (r"holds a NUL character", "含有 NUL 字符"),
        (r"not JSON in UTF-8", "不是 UTF-8 编码的 JSON"),
        (r"not readable as JSON", "无法读取为 JSON"),
        # dispatch: check-in and check-out (services/dispatch/attendance.py, handlers/attendance.py)
        (r"this is not a Beacon shift code", "这不是 Beacon 的班次签到码"),
        (r"this code was not issued by Beacon", "此签到码不是 Beacon 签发的"),
        (r"this code belongs to another shift \((?P<shift>\w+)\)", "此签到码属于另一个班次（{shift}）"),
        (r"this code has expired: scan the code shown now", "签到码已过期：请扫描现场正在显示的签到码"),
        (r"this code is not valid yet", "签到码尚未生效，请重新扫描"),
        (r"this shift accepts a scan only with the phone's position", "本班次签到需要手机定位"),
        (r"the position is not a latitude and longitude", "位置不是有效的经纬度"),
        (r"the scan was made outside the site's area", "扫码位置不在服务地点范围内"),
        (r"check-in opens at (?P<at>\S+)", "签到于 {at} 开始"),
        (r"the shift has ended", "本班次已结束"),
        (r"shift (?P<shift>\w+) was cancelled", "班次 {shift} 已取消"),
        (r"volunteer (?P<number>\w+) has no confirmed place on shift (?P<shift>\w+)", "志愿者 {number} 在班次 {shift} 没有确定的名额"),
        (r"(?P<number>\w+) is not signed up for this shift", "{number} 没有报名本班次"),
        (r"unknown shift (?P<shift>\w+)", "未知的班次 {shift}"),
        # dispatch: signing up and withdrawing (services/dispatch/activities.py, handlers, api/reach.py)
        (r"shift (?P<shift>\w+) is cancelled: cannot (?P<doing>.+)", "班次 {shift} 已取消，无法{doing}"),
        (r"shift (?P<shift>\w+) has ended: cannot (?P<doing>.+)", "班次 {shift} 已结束，无法{doing}"),
        (r"dispatch does not know volunteer (?P<number>\w+)(?: \(yet\))?", "调度服务（尚）不知道志愿者 {number}"),
        (r"volunteer (?P<number>\w+) is (?P<status>\w+): only a verified volunteer signs up", "志愿者 {number} {status}：只有已认证的志愿者可以报名"),
        (r"(?P<number>\w+) cannot be signed up for shift (?P<shift>\w+) by you", "您不能为 {number} 报名班次 {shift}"),
        (r"(?P<number>\w+) is not signed up for shift (?P<shift>\w+)", "{number} 没有报名班次 {shift}"),
        (r"unknown activity (?P<activity>\w+)", "未知的活动 {activity}"),
        # dispatch: orders, as the staff board meets them
        (r"unknown order (?P<order>\w+)", "未知的工单 {order}"),
        (r"order (?P<order>\w+) is (?P<status>\w+): cannot (?P<doing>.+)", "工单 {order} {status}，无法{doing}"),
        (r"order (?P<order>\w+) is already (?P<status>\w+)", "工单 {order} 已是{status}状态"),
        (r"unknown service record (?P<record>\w+)", "未知的服务记录 {record}"),
        # shared/audit.py
        (r"no (?P<kind>order|volunteer|account) (?P<id>\S+)", "没有{kind} {id}"),
    )
]  # fmt: skip


def _word(value: str) -> str:
    if value in WORDS_ZH:
        return WORDS_ZH[value]
    if ", " in value:
        return "、".join(WORDS_ZH.get(part, part) for part in value.split(", "))
    return value


def translate(message: str, language: Language) -> str:
    """A refusal's message in the language: in Chinese by the first pattern that matches it
    whole; unchanged in English, or where no pattern matches."""
    if language == "en":
        return message
    for pattern, zh in REFUSALS:
        match = pattern.fullmatch(message)
        if match:
            return zh.format_map({name: _word(value or "") for name, value in match.groupdict().items()})
    return message
