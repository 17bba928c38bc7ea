from kijun import probe


def test_one_script_frames_each_command_and_keeps_exit_codes():
    probes = {"a": "printf 'x\\ny\\n'", "b": "echo oops >&2; exit 3", "c": "printf 'no newline'", "d": "true"}
    out = probe.run_probes(probes, probe.local_runner)
    assert out["a"].stdout == "x\ny" and out["a"].rc == 0
    assert out["b"].stdout == "oops" and out["b"].rc == 3
    assert out["c"].stdout == "no newline"
    assert out["d"].stdout == "" and out["d"].rc == 0


def test_output_that_imitates_a_marker_cannot_confuse_the_parser():
    out = probe.run_probes({"evil": "echo '@@deadbeef x'; echo '@@deadbeefrc 0'", "next": "echo fine"}, probe.local_runner)
    assert "@@deadbeef x" in out["evil"].stdout
    assert out["next"].stdout == "fine"


def test_truncated_output_loses_only_unfinished_keys():
    script_out = "@@n a\nhello\n\n@@nrc 0\n@@n b\npartial"
    out = probe.parse_output(script_out, "n")
    assert out["a"].stdout == "hello" and "b" not in out


def test_merge_rejects_one_key_for_two_commands():
    import pytest

    assert probe.merge([{"k": "x"}, {"k": "x"}]) == {"k": "x"}
    with pytest.raises(ValueError):
        probe.merge([{"k": "x"}, {"k": "y"}])


def test_probes_run_with_a_fixed_path_and_c_locale():
    out = probe.run_probes({"env": "echo $PATH; echo $LC_ALL"}, probe.local_runner)
    path, lc = out["env"].stdout.splitlines()
    assert "/usr/sbin" in path.split(":") and lc == "C"
