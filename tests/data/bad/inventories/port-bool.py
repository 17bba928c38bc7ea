# expect: web-01.ssh_port: port must be a whole number 1-65535 (got True)
# defect: ssh_port True (int(True) is 1)
hosts = [("web-01", {"ssh_port": True})]
