from kijun.remote import ssh_failure


def test_the_cause_wins_over_the_last_line():
    stderr = ("@@@@@@@@@@@\nWARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!\nHost key verification failed.\n"
              "kex_exchange_identification: Connection closed by remote host\n")
    assert ssh_failure(stderr) == "Host key verification failed."


def test_plain_failures_keep_their_last_line():
    assert ssh_failure("ssh: connect to host 10.0.0.9 port 22: Connection refused\n") == \
        "ssh: connect to host 10.0.0.9 port 22: Connection refused"
    assert ssh_failure("something odd\nthe end\n") == "the end"
    assert ssh_failure("  \n") == "ssh failed"
