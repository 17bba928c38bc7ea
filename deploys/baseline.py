"""Apply the kijun baseline for each host's importance class (host data kijun_class: I..IV).

    pyinfra inventories/lab.py deploys/baseline.py        # apply
    pyinfra inventories/lab.py deploys/baseline.py --dry  # show drift only

KIJUN_BASELINE selects another baseline file; KIJUN_RUN_ID names the backup set for rollback.
"""

from kijun.deploy import deploy_current_host

deploy_current_host()
