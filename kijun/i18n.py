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
    # kijun.present: headers and sections of every output format
    "baseline": {"ja": "ベースライン", "en": "Baseline"},
    "run": {"ja": "実行", "en": "Run"},
    "started": {"ja": "開始", "en": "Started"},
    "finished": {"ja": "終了", "en": "Finished"},
    "inventory": {"ja": "インベントリ", "en": "Inventory"},
    "hosts": {"ja": "ホスト数", "en": "Hosts"},
    "results": {"ja": "判定結果", "en": "Results"},
    "operation": {"ja": "操作", "en": "Operation"},
    "in-desired-state": {"ja": "{n} 件すべて望ましい状態", "en": "{n} item(s) in the desired state"},
    "incomplete": {"ja": "未完了の実行(一部のホストのみ)", "en": "incomplete run (some hosts only)"},
    "overrides": {"ja": "組織による上書き (kijun_vars、他の値は基準の既定値: kijun params)",
                  "en": "organisation overrides (kijun_vars; every other number is the baseline's: kijun params)"},
    "class-defaulted": {"ja": "重要性 {cls} で判定しました(既定値: 最も厳しい区分。この端末の区分は --class で指定)",
                        "en": "judged as importance class {cls} (the default: the strictest; give this machine's class with --class)"},
    "waivers_active": {"ja": "有効な例外承認", "en": "Active waivers"},
    "waivers_expired": {"ja": "期限切れの例外承認", "en": "Expired waivers"},
    "expired-waiver": {"ja": "期限切れ例外", "en": "expired waiver"},
    "justification": {"ja": "理由", "en": "Justification"},
    "approver": {"ja": "承認者", "en": "Approver"},
    "expires": {"ja": "有効期限", "en": "Expires"},
    "ticket": {"ja": "チケット", "en": "Ticket"},
    "none": {"ja": "なし", "en": "none"},
    "check": {"ja": "点検", "en": "check"},
    "apply": {"ja": "適用", "en": "apply"},
    "dry-run": {"ja": "適用の予行", "en": "dry run"},
    "rollback": {"ja": "切り戻し", "en": "rollback"},
    "inspect": {"ja": "早期点検", "en": "inspection"},
}


def t(word: str, lang: str) -> str:
    entry = WORDS.get(word)
    return entry[lang] if entry else word
