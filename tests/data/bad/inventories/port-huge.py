# expect: web-01.ssh_port: port must be a whole number 1-65535 (got 1000000000000000000000000000000000000000...)
# defect: ssh_port of 400 digits
hosts = [("web-01", {"ssh_port": 10**400})]
