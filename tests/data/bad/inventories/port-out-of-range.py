# expect: web-01.ssh_port: port must be a whole number 1-65535 (got 70000)
# defect: ssh_port above 65535
hosts = [("web-01", {"ssh_port": 70000})]
