# expect: web-01.ssh_port: port must be a whole number 1-65535 (got 'ssh')
# defect: ssh_port that is not a number
hosts = [("web-01", {"ssh_port": "ssh"})]
