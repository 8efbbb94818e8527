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
        (r"order (?P<order>\w+) is already (?P<status>\w+)", "工单 {order} 已处于“{status}”状态"),
        (r"unknown service record (?P<record>\w+)", "未知的服务记录 {record}"),
        # shared/audit.py
        (r"no (?P<kind>order|volunteer|account) (?P<id>\S+)", "没有{kind} {id}"),
    )
]  # fmt: skip


# --- Domain refusals, by message template -------------------------------------------------------

# The services' own refusals (shared.errors' kinds, raised across registry, dispatch, points and
# reporting): the English template as the code writes it, `{name}` where the f-string puts a value,
# and its Chinese. Each template is matched whole, a value standing for each `{name}`; a value is
# said through GROUP_WORDS_ZH[name], then WORDS_ZH, then as a refusal in its own right (a line of
# an import quoting one), else as it is. tests/unit/test_i18n.py checks that every message the code
# raises has an entry here or above.
MESSAGES_ZH = {
    # shared/eventstore.py, shared/audit.py
    "unknown {kind} {id}": "未知的{kind} {id}",
    "no {kind} {id}": "没有{kind} {id}",
    # reporting
    "a period is a year, a month or a day: 2026, 2026-11 or 2026-11-23": "统计期为某年、某月或某日：如 2026、2026-11 或 2026-11-23",
    "no such period: {why}": "没有这个统计期：{why}",
    "a moment carries its time zone, e.g. 2026-11-23T15:30:00+08:00": "时间点须带时区，例如 2026-11-23T15:30:00+08:00",
    "give a period or from/to, not both": "请给出统计期或起止日期（from/to），不能同时给出",
    "the period ends before it starts": "统计期的结束早于开始",
    "give a moment or a period, not both": "请给出时间点或统计期，不能同时给出",
    "a trend spans ten years at the most": "趋势最多跨越十年",
    "a rebuild is already running": "重建已在进行中",
    # points
    "volunteer {number} has {balance} points, {needed} are needed": "志愿者 {number} 有 {balance} 积分，需要 {needed} 积分",
    "volunteer {number} has {balance} minutes of time credits, {needed} are needed": "志愿者 {number} 有 {balance} 分钟时间币，需要 {needed} 分钟",
    "volunteer {number} has no points account": "志愿者 {number} 没有积分账户",
    "a volunteer is not their own family member": "志愿者不能把自己绑定为家庭成员",
    "{member} is not linked to {number} as family": "{member} 未与 {number} 绑定为家庭成员",
    "{member} is not linked to {number} as family: link them first": "{member} 未与 {number} 绑定为家庭成员：请先绑定",
    "{number} may give {left} more minutes to family in {year} (limit {limit})": "{number} 在 {year} 年还可向家庭成员赠与 {left} 分钟（上限 {limit} 分钟）",
    "unknown reservation {id}": "未知的时间币预留 {id}",
    "reservation {id} pays for order {order}: cancel the order instead": "时间币预留 {id} 已用于支付工单 {order}：请改为取消该工单",
    "district {district} has no points rule version {version}": "区 {district} 没有第 {version} 版积分规则",
    "two overrides for the same field and group served": "同一服务领域和服务对象有两条重复的调整规则",
    "a rule takes effect today or later: credited points keep the rule they had": "规则只能从今天或以后生效：已发放的积分仍按原规则计算",
    "unknown site {site}": "未知的站点 {site}",
    "site {site} is closed": "站点 {site} 已关闭",
    "unknown item {item}": "未知的兑换物品 {item}",
    "item {item} is withdrawn": "兑换物品 {item} 已下架",
    "item {item} is no longer offered": "兑换物品 {item} 已不再提供",
    "item {item} has {stock} in stock, {quantity} asked for": "兑换物品 {item} 库存 {stock} 件，申请兑换 {quantity} 件",
    "unknown redemption {id}": "未知的兑换单 {id}",
    "redemption {id} is {state}": "兑换单 {id} {state}",
    "unknown district {district}": "未知的区 {district}",
    "Value error, {why}": "值无效：{why}",
    "each star needs more hours than the one below it": "每个星级所需时长都应多于下一级",
    "one star needs some hours": "一星级所需时长应大于 0",
    # dispatch: service records
    "{name} is a code of lower-case letters, digits and _, not {value}": "{name} 应为由小写字母、数字和 _ 组成的代码，而不是 {value}",
    "{name} is a whole number of minutes, zero or more, not {value}": "{name} 应为不小于 0 的整分钟数，而不是 {value}",
    "a rounding rule is set for a district: a 6-digit division code": "时长取整规则按区设定：须为 6 位行政区划代码",
    "a rounding rule takes effect now or later, never in the past": "时长取整规则只能从现在或以后生效，不能追溯",
    "a band's hours have at most two decimals: {why}": "每档时长最多两位小数：{why}",
    "the service ends after it starts": "服务结束时间应晚于开始时间",
    "hours are entered afterwards: the service has not ended yet": "服务时长须在服务结束后录入：该服务尚未结束",
    "one entry covers one service of at most 24 hours": "每条录入只能对应一次不超过 24 小时的服务",
    "{minutes} minutes do not fit between the start and the end ({span})": "{minutes} 分钟超出了开始与结束之间的时长（{span} 分钟）",
    "the minutes served do not fit between the start and the end": "服务分钟数超出了开始与结束之间的时长",
    "{minutes} minutes is more than this record can hold ({most})": "{minutes} 分钟超出了这条记录的上限（{most} 分钟）",
    "record {record} is {status}: only a {wanted} record can be {doing}": "服务记录 {record} {status}：只有{wanted}的记录才能{doing}",
    "record {record} is {status}: only a {wanted} record can be {doing}; {hint}": "服务记录 {record} {status}：只有{wanted}的记录才能{doing}；{hint}",
    "record {record} cannot be {doing} while the volunteer's correction request waits: decide it first": "志愿者对服务记录 {record} 的更正申请尚待处理，暂不能{doing}：请先处理该申请",
    "say why the minutes differ from those recorded": "请说明分钟数与记录不一致的原因",
    "only the volunteer themself ({number}) may ask to correct this record": "只有志愿者本人（{number}）可以申请更正这条记录",
    "a correction request of record {record} already waits for an answer": "服务记录 {record} 已有一条更正申请在等待处理",
    "record {record} is {status}: only a waiting or confirmed record can be corrected": "服务记录 {record} {status}：只有待确认或已确认的记录可以申请更正",
    "a request is granted or refused, not {outcome}": "申请只能批准（granted）或拒绝（refused），不能是 {outcome}",
    "a refused request changes no minutes": "被拒绝的申请不会改变分钟数",
    "no correction request of record {record} waits for an answer": "服务记录 {record} 没有待处理的更正申请",
    "the request named no minutes: say the minutes granted": "该申请没有写明分钟数：请给出批准的分钟数",
    "dispatch knows no activity {activity}": "调度服务不知道活动 {activity}",
    "the service on {day} falls outside the activity's dates ({start} to {end})": "{day} 的服务不在活动日期范围内（{start} 至 {end}）",
    "volunteer {number} already has record {record} ({status}) at that time: no hour counts twice": "志愿者 {number} 在该时段已有服务记录 {record}（{status}）：同一时段不能重复计时",
    "{name} must carry a time zone (the server clock, in UTC)": "{name} 须带时区（服务器时钟，UTC）",
    # dispatch: time rounding (services/dispatch/attendance.py)
    "a band is (upper bound in minutes, hours), not {band}": "每一档应为（分钟上限, 小时数），而不是 {band}",
    "a rounding rule has at least one band": "时长取整规则至少要有一档",
    "the bands' upper bounds must increase from above 0": "各档的分钟上限须从大于 0 开始逐档递增",
    "the last band must end at 60 minutes, so that every remainder is covered": "最后一档须止于 60 分钟，以覆盖所有余数",
    "a band counts between 0 and 1 hour": "每档计为 0 到 1 小时",
    "a longer remainder may not count fewer hours": "余数越长，计入的时长不能越少",
    "service time is a whole number of minutes, zero or more, not {minutes}": "服务时长应为不小于 0 的整分钟数，而不是 {minutes}",
    "the shift has not ended yet": "本班次尚未结束",
    # dispatch: activities and shifts
    "an activity ends on or after the day it starts": "活动的结束日期不能早于开始日期",
    "an activity serves an order exactly when its kind is from_order": "只有类型为 from_order 的活动才对应工单，且该类活动必须对应工单",
    "each post of an activity has its own code": "活动的每个岗位须有各自的代码",
    "not skills Beacon matches on: {skills}": "不是 Beacon 用于匹配的技能：{skills}",
    "activity {activity} is {status}: cannot {doing}": "活动 {activity} {status}，无法{doing}",
    "a shift ends after it starts": "班次结束时间应晚于开始时间",
    "a recurrence has 1 to {most} shifts": "重复排班包含 1 到 {most} 个班次",
    "shifts recur at least a day apart": "重复班次至少间隔一天",
    "a recurring shift may not overlap the next one": "重复的班次不能与下一个班次重叠",
    "activity {activity} has no post {post}": "活动 {activity} 没有岗位 {post}",
    "a shift needs at least one volunteer": "班次至少需要一名志愿者",
    "a shift on {day} falls outside the activity's dates ({start} to {end})": "{day} 的班次不在活动日期范围内（{start} 至 {end}）",
    "a shift is opened before it ends": "班次须在结束前开设",
    "people served is a whole number, zero or more": "服务人数应为不小于 0 的整数",
    "dispatch does not know site {site} (yet)": "调度服务（尚）不知道站点 {site}",
    "unknown community {community}": "未知的社区 {community}",
    # dispatch: orders
    "an order needs at least one volunteer": "工单至少需要一名志愿者",
    "the time window must end after it starts": "服务时段的结束时间应晚于开始时间",
    "the minimum age is above the maximum": "最小年龄大于最大年龄",
    "dispatch to one team or to volunteers": "请派给一支队伍或若干志愿者",
    "the deadline to accept must be in the future": "接单截止时间须在将来",
    "order {order} is not dispatched to {who}": "工单 {order} 没有派给 {who}",
    "order {order} has until {deadline} to be accepted": "工单 {order} 的接单截止时间为 {deadline}",
    "{who} declined order {order}": "{who} 已拒绝工单 {order}",
    "order {order} is not open for taking": "工单 {order} 未开放抢单",
    "order {order} is {status}: wait for a decline or the deadline": "工单 {order} {status}：请等待拒单或接单截止",
    "order {order} is {status}: only an accepted order is completed": "工单 {order} {status}：只有已接单的工单可以完成",
    "a rating is 1 to 5": "评分为 1 到 5 分",
    "order {order} is {status}: only a completed order is rated": "工单 {order} {status}：只有已完成的工单可以评价",
    "unknown reservation {id} (one just made reaches dispatch within moments: retry)": "未知的时间币预留 {id}（刚创建的预留稍后才会同步到调度服务：请重试）",
    "reservation {id} already pays for order {order}": "时间币预留 {id} 已用于支付工单 {order}",
    "reservation {id} has expired or was released": "时间币预留 {id} 已过期或已释放",
    "answer for yourself: {field} must be {mine}": "请为自己作答：{field} 须为{mine}",
    # registry: org tree and sites
    "{code} is not a {level} division code": "{code} 不是{level}级行政区划代码",
    "party members cannot outnumber the population": "党员人数不能多于人口数",
    "a city has no parent": "市没有上级",
    "a {level} needs its {expected}": "{level}须有所属的{expected}",
    "the parent of a {level} is a {expected}, not a {found}": "{level}的上级应为{expected}，而不是{found}",
    "{code} does not lie under {parent}": "{code} 不在 {parent} 之下",
    "line {line}: code {code} already appears on line {first}": "第 {line} 行：代码 {code} 已在第 {first} 行出现",
    "line {line}: {code} exists as a {level} under {parent}": "第 {line} 行：{code} 已作为 {parent} 下的{level}存在",
    "line {line}: parent {parent} of {code} is unknown": "第 {line} 行：{code} 的上级 {parent} 不存在",
    "line {line}: {why}": "第 {line} 行：{why}",
    "line {line}: {code} lies outside your part of the org tree": "第 {line} 行：{code} 不在您管辖的组织范围内",
    "line {line}: not an object": "第 {line} 行：不是对象",
    "a {level} stands in a {allowed}, not a {found}": "{level}应设在{allowed}，而不是{found}",
    "a site cannot close before it opened": "站点的关闭日期不能早于开设日期",
    "unknown parent org unit {code}": "未知的上级组织 {code}",
    "only a city admin adds a node without a parent (a city)": "只有市级管理员可以添加没有上级的节点（市）",
    "org unit {code} already exists": "组织 {code} 已存在",
    "unknown org unit {code}": "未知的组织 {code}",
    "site {site} already exists": "站点 {site} 已存在",
    "a JSON tree is a list of org units": "JSON 组织树应为组织列表",
    "the file is not UTF-8 (byte {byte})": "文件不是 UTF-8 编码（第 {byte} 字节）",
    "the file does not read as {kind}: {why}": "文件无法按 {kind} 读取：{why}",
    # registry: volunteers
    "a resident ID number is 17 digits and a check digit or X": "居民身份证号码为 17 位数字加 1 位校验码（数字或 X）",
    "the check character does not match (GB 11643 MOD 11-2)": "校验码不符（GB 11643 MOD 11-2）",
    "the birth date in the ID number does not exist": "身份证号码中的出生日期不存在",
    "the birth date in the ID number is in the future": "身份证号码中的出生日期在将来",
    "the birth date in the ID number is before 1900": "身份证号码中的出生日期早于 1900 年",
    "a mainland mobile number is 11 digits starting 13-19": "大陆手机号码为 11 位，以 13-19 开头",
    "a name is 1 to 50 characters": "姓名为 1 到 50 个字符",
    "not in the skill taxonomy: {skills} (put it in tags instead)": "不在技能目录中：{skills}（请改填在标签里）",
    "at most 10 tags of at most 20 characters": "最多 10 个标签，每个最多 20 个字符",
    "the tag {tag} holds personal data (a name, ID or mobile number), which events never carry": "标签 {tag} 含有个人信息（姓名、证件号或手机号），事件中不得携带",
    "{code} is a {level}, not a community": "{code} 是{level}，不是社区",
    "registration needs the volunteer's consent to the use of their data": "注册须经志愿者同意使用其个人信息",
    "this ID number is already registered as volunteer {number}": "该身份证号码已注册为志愿者 {number}",
    "this ID number is already registered: its volunteer can sign in, or their community's staff can look it up": (
        "该身份证号码已注册：本人可直接登录，或请其所在社区的工作人员查询"
    ),
    "volunteer {number} is {status}: cannot {doing}": "志愿者 {number} {status}，无法{doing}",
    "only party members report in to their community": "只有党员需要到社区报到",
    "the volunteer already belongs to that community": "该志愿者已属于这个社区",
    "a certification expires after it is granted": "证书的到期日期应晚于取得日期",
    "a certification is named in lower case letters, digits and _ (e.g. first_aid)": "证书名称由小写字母、数字和 _ 组成（例如 first_aid）",
    "{field} is a code in lower case letters, digits and _ (e.g. {example})": "{field} 应为由小写字母、数字和 _ 组成的代码（例如 {example}）",
    "an insurance ends on or after the day it starts": "保险的结束日期不能早于开始日期",
    "this ID number was registered at the same moment; look it up": "该身份证号码刚刚被同时注册：请查询",
    "unknown volunteer {number}": "未知的志愿者 {number}",
    "the community is outside your part of the org tree": "该社区不在您管辖的组织范围内",
    "the database refused this row: {why}": "数据库拒绝了这一行：{why}",
    "volunteer {number} is {status}": "志愿者 {number} {status}",
    # registry: import files (services/registry/importer.py)
    "the file is neither UTF-8 nor GB18030 text": "文件既不是 UTF-8 也不是 GB18030 编码的文本",
    "columns {first} and {second} both give the {name}": "{first} 列和 {second} 列都给出了 {name}",
    "the header lacks {columns}": "表头缺少：{columns}",
    "unknown political status {value} (中共党员, 中共预备党员, 共青团员, 群众, 公职人员)": "未知的政治面貌 {value}（应为中共党员、中共预备党员、共青团员、群众、公职人员之一）",
    "unknown skill {skill} (known: {known}; or English like first_aid)": "未知的技能 {skill}（可选：{known}；或使用英文代码，如 first_aid）",
    "consent is 是/yes/true/1 or 否/no/false/0, not {value}": "是否同意应填 是/yes/true/1 或 否/no/false/0，而不是 {value}",
    "the file is empty: line 1 is the header": "文件为空：第 1 行应为表头",
    "the row has {cells} cells, the header {width}": "该行有 {cells} 列，表头有 {width} 列",
    "line {line}: not valid {encoding} (the encoding of the start of the file)": "第 {line} 行：不是有效的 {encoding} 编码（文件开头的编码）",
    "line {line}: {why} (a quote opened and never closed?)": "第 {line} 行：{why}（是否有引号未闭合？）",
    # registry: teams, training, certificates
    "a professional team names its field (medical, legal, ...)": "专业队伍须写明专业领域（医疗、法律等）",
    "team {team} is dissolved": "队伍 {team} 已解散",
    "team {team} is full ({capacity} members)": "队伍 {team} 已满员（{capacity} 人）",
    "{number} has not applied to team {team}": "{number} 没有申请加入队伍 {team}",
    "{number} has no invitation from team {team}": "{number} 没有收到队伍 {team} 的邀请",
    "the leader cannot leave: hand the team to another member first": "队长不能退出：请先把队伍移交给其他成员",
    "{number} is not a member of team {team}": "{number} 不是队伍 {team} 的成员",
    "unknown team {team}": "未知的队伍 {team}",
    "a session is recorded once it has been held, not before": "培训须在举办后才能登记",
    "unknown training session {session}": "未知的培训 {session}",
    "a certificate covers at most {days} days": "证明最多涵盖 {days} 天",
    "the period ends on or after the day it starts": "期间的结束日期不能早于开始日期",
    "the period must end by today ({today})": "期间须在今天（{today}）或之前结束",
    "volunteer {number} has no confirmed service records from {start} to {end}": "志愿者 {number} 在 {start} 至 {end} 期间没有已确认的服务记录",
    "volunteer {number}'s personal data was destroyed at their request: a certificate names its holder": "志愿者 {number} 的个人信息已应其本人要求销毁：证明须写明持有人，无法出具",
    "unknown certificate {number}": "未知的证明 {number}",
    "a digest is 64 hexadecimal digits (SHA-256)": "摘要应为 64 位十六进制数字（SHA-256）",
    # registry: accounts
    "only staff open accounts and change their roles": "只有工作人员可以开设账号和变更角色",
    "only a city admin opens accounts for partner systems": "只有市级管理员可以为合作系统开设账号",
    "a {granter} may not grant {role}: it is above their own level": "{granter}不能授予{role}角色：该角色高于其本身层级",
    "the scope of a {role} is {wanted}, not {scope}": "{role}的范围应为{wanted}，而不是 {scope}",
    "the scope of a {role} is a {wanted}, and {scope} is a {level}": "{role}的范围应为{wanted}，而 {scope} 是{level}",
    "{kind} {scope} is no longer active": "{kind} {scope} 已不再有效",
    "unknown account {account}": "未知的账号 {account}",
    "a password has {least} to {most} characters": "密码为 {least} 到 {most} 个字符",
    "account {account} is closed": "账号 {account} 已关闭",
    "that username is taken": "该用户名已被使用",
    "the org tree has no city yet: name it (its division code)": "组织树中还没有市：请给出市的行政区划代码",
    "this registry's city is {known}, not {city}": "本登记系统所属的市是 {known}，而不是 {city}",
    "account {account} changed while its password was checked: try again": "校验密码期间账号 {account} 发生了变化：请重试",
    "the new password is the old one": "新密码与旧密码相同",
    "only its holder changes an account's password: staff over it reset it (password-reset)": "只有账号持有人本人可以修改密码：管理该账号的工作人员可以重置密码（password-reset）",
    "the old password is not right": "旧密码不正确",
    "only staff reset passwords; holders change their own with PUT /accounts/{id}/password": "只有工作人员可以重置密码；持有人请通过 PUT /accounts/{id}/password 修改自己的密码",
}  # fmt: skip

# Words a template's value is said in, by the value's name, where WORDS_ZH's would read wrong.
GROUP_WORDS_ZH = {
    "doing": {
        "confirmed": "确认", "declined": "驳回", "adjusted": "调整", "revoked": "撤销", "verify": "认证",
        "suspend": "暂停", "reactivate": "恢复", "update the profile": "修改资料", "report in": "报到",
        "transfer": "转移", "certify": "登记证书", "insure": "登记保险", "open shifts": "开设班次",
    },
    "wanted": {"recorded": "待确认", "confirmed": "已确认"} | {
        "a city's division code": "市级行政区划代码", "a district's division code": "区级行政区划代码",
        "a street's division code": "街道级行政区划代码", "a community's division code": "社区级行政区划代码",
        "a team id": "队伍编号", "a volunteer number": "志愿者编号", "empty": "空",
    },
    "hint": {
        "adjust confirmed hours instead": "请改为调整已确认的时长",
        "revoke confirmed hours instead": "请改为撤销已确认的时长",
        "confirm a waiting record with the minutes instead": "请改为按分钟数确认待确认的记录",
        "decline a waiting record instead": "请改为驳回待确认的记录",
    },
    "mine": {"your volunteer number": "您的志愿者编号", "your team's id": "您所在队伍的编号"},
}  # fmt: skip

WORDS_ZH.update({
    # states of records, activities, redemptions, reservations, teams, accounts
    "recorded": "待确认", "confirmed": "已确认", "declined": "已驳回", "revoked": "已撤销",
    "correction_requested": "有待处理的更正申请", "scheduled": "已排期", "reserved": "已预订",
    "handed_over": "已领取", "held": "已冻结", "spent": "已使用", "released": "已释放",
    "closed": "已关闭", "active": "正常", "dissolved": "已解散", "withdrawn": "已下架",
    # levels of the org tree and of the civilisation-practice sites
    "city": "市", "district": "区", "street": "街道", "community": "社区", "grid": "网格",
    "centre": "实践中心", "institute": "实践所", "station": "实践站", "point": "实践点",
    # kinds of things an id names
    "volunteer": "志愿者", "team": "队伍", "site": "站点", "org unit": "组织", "activity": "活动",
    "shift": "班次", "training session": "培训", "training": "培训", "redemption": "兑换单",
    "attendance": "考勤", "scope": "范围",
})  # fmt: skip


def _pattern_of(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ..., literal
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts)))


# The most literal text first, so that "... is {status}: cannot {doing}" wins over "... is {status}".
_TEMPLATES: list[tuple[re.Pattern[str], str]] = sorted(
    ((_pattern_of(english), zh) for english, zh in MESSAGES_ZH.items()),
    key=lambda entry: -len(re.sub(r"\(\?P<\w+>\.\+\?\)", "", entry[0].pattern)),
)


def _word(value: str, name: str = "") -> str:
    """A value of a pattern, said in Chinese: a word of its own, a list of words, a refusal it
    quotes; else as it is (ids, numbers, codes)."""
    for words in (GROUP_WORDS_ZH.get(name, {}), WORDS_ZH):
        if value in words:
            return words[value]
    for separator, joined in ((", ", "、"), (" or ", "或")):
        if separator in value:
            return joined.join(_word(part, name) for part in value.split(separator))
    return translate(value, "zh")


def translate(message: str, language: Language) -> str:
    """A refusal's message in the language: in Chinese by the first pattern that matches it
    whole (REFUSALS, then the templates of MESSAGES_ZH); unchanged in English, or where no
    pattern matches."""
    if language == "en":
        return message
    for pattern, zh in (*REFUSALS, *_TEMPLATES):
        match = pattern.fullmatch(message)
        if match:
            return zh.format_map({name: _word(value or "", name) for name, value in match.groupdict().items()})
    return message
