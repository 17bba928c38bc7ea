"""User-facing words in Japanese and English. Keys are English identifiers."""

from __future__ import annotations

WORDS: dict[str, dict[str, str]] = {
    "control": {"ja": "管理策", "en": "Control"},
    "title": {"ja": "名称", "en": "Title"},
    "class": {"ja": "重要性", "en": "Class"},
    "severity": {"ja": "深刻度", "en": "Severity"},
    "status": {"ja": "判定", "en": "Status"},
    "observed": {"ja": "観測値", "en": "Observed"},
    "expected": {"ja": "期待値", "en": "Expected"},
    "host": {"ja": "ホスト", "en": "Host"},
    "reason": {"ja": "理由", "en": "Reason"},
    "pass": {"ja": "適合", "en": "pass"},
    "fail": {"ja": "不適合", "en": "fail"},
    "error": {"ja": "エラー", "en": "error"},
    "not-applicable": {"ja": "対象外", "en": "not-applicable"},
    "waived": {"ja": "例外承認", "en": "waived"},
    "unreachable": {"ja": "到達不能", "en": "unreachable"},
    "low": {"ja": "低", "en": "low"},
    "medium": {"ja": "中", "en": "medium"},
    "high": {"ja": "高", "en": "high"},
    "critical": {"ja": "重大", "en": "critical"},
    "summary": {"ja": "集計", "en": "Summary"},
    "change": {"ja": "変更", "en": "Change"},
    "would-change": {"ja": "変更予定", "en": "would change"},
    "changed": {"ja": "変更済", "en": "changed"},
    "unchanged": {"ja": "変更なし", "en": "unchanged"},
    "failed": {"ja": "失敗", "en": "failed"},
    # kijun.ops.REVERTED / LOGIN_LOST: a change after which a fresh SSH login failed
    "reverted (would lock out)": {"ja": "取消済み（ログインできなくなるため元に戻した）", "en": "reverted (would lock out)"},
    "login lost: restoring the files did not bring it back": {
        "ja": "ログイン不能: ファイルを戻してもログインできない", "en": "login lost: restoring the files did not bring it back"},
    "not applied: the host's login was lost earlier": {
        "ja": "未適用: このホストへのログインが先の変更で失われている", "en": "not applied: the host's login was lost earlier"},
}


def t(word: str, lang: str) -> str:
    entry = WORDS.get(word)
    return entry[lang] if entry else word
