"""log_forwarding (NISC-LOG-005): the effective rsyslog configuration, in rsyslogd's reading order.
The base configuration is Debian bookworm's /etc/rsyslog.conf from the lab rootfs; drop-ins are written."""

from __future__ import annotations

from pathlib import Path

from kijun.controls import REGISTRY
from kijun.controls import log_forwarding as lf
from kijun.model import ProbeOutput

T = REGISTRY["log_forwarding"]
P = {"server": "10.84.0.1", "port": 514, "protocol": "tcp"}
BASE = (Path(__file__).parent / "fixtures" / "hostout" / "rsyslog-conf-debian-lab.txt").read_text()
RUNNING = ProbeOutput("running\nvalidation 0\n", 0)


def dropin(name: str, text: str) -> str:
    return "".join(f"/etc/rsyslog.d/{name}:{l}\n" for l in text.splitlines())


def out(conf: str, state: ProbeOutput = RUNNING, journald: str = ""):
    return {"rsyslog.conf": ProbeOutput(conf, 0), "rsyslog.state": state, "journald.conf": ProbeOutput(journald, 0)}


def test_debian_default_forwards_nothing():
    v = T.evaluate(P, out(BASE))
    assert v.status == "fail" and v.reason.startswith("auth, authpriv not forwarded to 10.84.0.1:514/tcp")
    ops = T.operations(P, out(BASE))
    assert ops[0].kwargs["dest"] == lf.DROPIN and 'target="10.84.0.1" port="514" protocol="tcp"' in ops[0].kwargs["content"]


def test_kijun_dropin_and_other_forms_count_in_any_file():
    v = T.evaluate(P, out(BASE + dropin("60-kijun-remote.conf", lf.render("10.84.0.1", 514, "tcp"))))
    assert v.status == "pass", v
    assert "/etc/rsyslog.d/60-kijun-remote.conf:3:" in v.evidence  # the multi-line action, first line quoted
    assert T.evaluate(P, out(BASE + dropin("site.conf", "auth,authpriv.*  @@10.84.0.1:514"))).status == "pass"
    assert T.evaluate(P, out(BASE + dropin("site.conf", "*.info @@[10.84.0.1]"))).status == "pass"  # port 514 default
    legacy_udp = T.evaluate(P, out(BASE + dropin("site.conf", "auth,authpriv.* @10.84.0.1:514")))
    assert legacy_udp.status == "fail"  # UDP is not what the baseline asks
    assert T.evaluate({**P, "protocol": "udp"}, out(BASE + dropin("site.conf", "auth,authpriv.* @10.84.0.1:514"))).status == "pass"
    only_auth = T.evaluate(P, out(BASE + dropin("site.conf", "auth.* @@10.84.0.1:514")))
    assert only_auth.status == "fail" and only_auth.reason.startswith("authpriv not forwarded")
    excluded = T.evaluate(P, out(BASE + dropin("site.conf", "*.*;authpriv.none @@10.84.0.1:514")))
    assert excluded.status == "fail" and "authpriv not forwarded" in excluded.reason
    cond = 'if $syslogfacility-text == "authpriv" then action(type="omfwd" target="10.84.0.1" port="514" protocol="tcp")'
    assert T.evaluate(P, out(BASE + dropin("site.conf", cond))).status == "fail"  # not evaluated: never counts


def test_discarded_before_the_forward_fails():
    conf = BASE + dropin("10-local.conf", "auth,authpriv.* /var/log/secure.log\n& stop") + \
        dropin("60-kijun-remote.conf", lf.render("10.84.0.1", 514, "tcp"))
    v = T.evaluate(P, out(conf))
    assert v.status == "fail" and "discarded earlier: auth, authpriv" in v.reason


def test_rsyslogd_must_run_and_accept_the_config_and_journald_must_forward():
    conf = BASE + dropin("60-kijun-remote.conf", lf.render("10.84.0.1", 514, "tcp"))
    v = T.evaluate(P, out(conf, ProbeOutput("stopped\nvalidation 0\n", 0)))
    assert v.status == "fail" and v.reason == "rsyslogd is not running"
    assert [o.name for o in T.operations(P, out(conf, ProbeOutput("stopped\nvalidation 0\n", 0)))] == ["restart rsyslogd"]
    assert "rejects" in T.evaluate(P, out(conf, ProbeOutput("running\nvalidation 1\n", 0))).reason
    jd = "/etc/systemd/journald.conf:[Journal]\n/etc/systemd/journald.conf:ForwardToSyslog=no\n@installed\n"
    v = T.evaluate(P, out(conf, journald=jd))
    assert v.status == "fail" and "ForwardToSyslog=no" in v.reason


def test_selectors():
    assert lf.selector_takes("*.*;auth,authpriv.none") == set()
    assert lf.selector_takes("auth,authpriv.*") == {"auth", "authpriv"}
    assert lf.selector_takes("*.warn") == set()
    assert lf.forward_target('action(type="omfwd" target="h" port="10514")') == ("h", 10514, "udp")
