"""Every refusal the services raise has Chinese (shared/i18n.py): the messages are collected from
the source by an AST walk over every call of a shared.errors kind, so that a new English message
without a Chinese one fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from shared import i18n

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"Refused", "Invalid", "NotFound", "Conflict", "NotAuthenticated", "Forbidden", "TooManyAttempts"}
SAMPLE = "7"  # what each value of a template stands for: a word, a number, an id

# Messages the code builds out of sight of a template (a variable, a helper, a library's words):
# where, the expression, and every message it can carry.
BUILT_ELSEWHERE = {
    ("services/dispatch/api/reach.py", "unknown_activity(activity_id)"): ["dispatch knows no activity A00000001"],
    ("services/dispatch/records.py", "why + (f'; {hint}' if hint else '')"): [
        f"record R00000001 is {status}: only a {wanted} record can be {doing}; {hint}"
        for status, wanted, doing, hint in (
            ("confirmed", "recorded", "confirmed", "adjust confirmed hours instead"),
            ("confirmed", "recorded", "declined", "revoke confirmed hours instead"),
            ("recorded", "confirmed", "adjusted", "confirm a waiting record with the minutes instead"),
            ("declined", "confirmed", "revoked", "decline a waiting record instead"),
        )
    ],
    ("services/points/api/ledger.py", "error.errors()[0]['msg']"): [
        "Value error, each star needs more hours than the one below it",
        "Value error, one star needs some hours",
    ],
    ("services/registry/handlers/sign_in.py", "refusal"): [
        "unknown refresh token: sign in again",
        "the refresh token was revoked: sign in again",
        "the refresh token was used before, so it may be stolen: its sign-in is revoked; sign in again",
        "the refresh token has expired: sign in again",
        "the account is closed",
    ],
    ("services/registry/handlers/teams.py", "unknown.message"): ["unknown volunteer V00000001"],
    ("services/registry/importer.py", "str(error)"): [
        "line 7: not valid GB18030 (the encoding of the start of the file)",
        "line 7: unexpected end of data (a quote opened and never closed?)",
    ],
    ("services/registry/importer.py", "'the header lacks ' + '; '.join((f\"{name} ({' / '.join(names)})\" for name, names in wanted.items()))"): [
        "the header lacks name (姓名 / name); id_number (身份证号)",
    ],
    ("shared/web.py", "error.reason"): [
        "the access token has expired: refresh it or sign in again",
        "the access token's signature is not Beacon's",
        "not a Beacon access token: Not enough segments",
        "the access token grants no known role (mayor)",
        "the access token names no scope for its role",
    ],
}  # fmt: skip


def _template(node: ast.expr, constants: dict[str, str]) -> str | None:
    """The message a call's first argument makes, `{...}` where an f-string puts a value; None
    for one built elsewhere."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"  # type: ignore[attr-defined]
            for part in node.values
        )
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def raised_messages() -> tuple[dict[str, list[str]], dict[tuple[str, str], list[str]]]:
    """Every refusal message of services/ and shared/: templates by where they are made, and the
    expressions that build one elsewhere."""
    templates: dict[str, list[str]] = {}
    built: dict[tuple[str, str], list[str]] = {}
    for path in sorted([*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("shared").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if called not in KINDS or not node.args:
                continue
            template = _template(node.args[0], constants)
            if template is None:
                built.setdefault((where, ast.unparse(node.args[0])), []).append(f"{where}:{node.lineno}")
            else:
                templates.setdefault(template, []).append(f"{where}:{node.lineno}")
    return templates, built


TEMPLATES, BUILT = raised_messages()


def _filled(template: str) -> str:
    return re.sub(r"\{[^{}]*\}", SAMPLE, template)


def test_the_walk_finds_the_refusals_of_every_service() -> None:
    places = {place.split(":")[0] for places in TEMPLATES.values() for place in places}
    for service in ("registry", "dispatch", "points", "reporting"):
        assert any(place.startswith(f"services/{service}/") for place in places), service
    assert "unknown org unit {code}" in TEMPLATES and "the old password is not right" in TEMPLATES
    assert len(TEMPLATES) > 200


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_refusal_message_in_the_code_is_said_in_chinese(template: str) -> None:
    message = _filled(template)
    chinese = i18n.translate(message, "zh")
    assert chinese != message and re.search(r"[\u4e00-\u9fff]", chinese), (template, TEMPLATES[template])
    assert "{" not in chinese.replace("{id}", ""), chinese  # every value of the Chinese was found
    assert i18n.translate(message, "en") == message


def test_every_message_built_elsewhere_is_known_and_said_in_chinese() -> None:
    assert set(BUILT) == set(BUILT_ELSEWHERE), "a refusal builds its message elsewhere: list what it can say"
    for messages in BUILT_ELSEWHERE.values():
        for message in messages:
            chinese = i18n.translate(message, "zh")
            assert chinese != message and re.search(r"[\u4e00-\u9fff]", chinese), message


@pytest.mark.parametrize(("english", "chinese"), sorted(i18n.MESSAGES_ZH.items()))
def test_each_chinese_template_says_the_values_of_its_english_one(english: str, chinese: str) -> None:
    names = re.findall(r"\{(\w+)\}", english)
    assert len(names) == len(set(names)), english
    assert sorted(re.findall(r"\{(\w+)\}", chinese)) == sorted(names), english
    assert re.search(r"[\u4e00-\u9fff]", chinese), english


@pytest.mark.parametrize("english", sorted(i18n.MESSAGES_ZH))
def test_no_template_is_hidden_behind_a_pattern_written_before_it(english: str) -> None:
    message = re.sub(r"\{\w+\}", SAMPLE, english)
    assert not any(pattern.fullmatch(message) for pattern, _ in i18n.REFUSALS), english


def test_a_period_reporting_cannot_read_is_refused_in_chinese() -> None:
    from services.reporting.queries import period_of
    from shared.errors import Invalid

    for period, chinese in (
        ("soon", "统计期为某年、某月或某日：如 2026、2026-11 或 2026-11-23"),
        ("2026-02-30", "没有这个统计期：day is out of range for month"),
    ):
        with pytest.raises(Invalid) as refused:
            period_of(period)
        assert i18n.translate(refused.value.message, "zh") == chinese
