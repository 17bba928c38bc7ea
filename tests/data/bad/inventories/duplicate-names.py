# expect: hosts: duplicate host name 'web-01': pyinfra would keep only one of them
# defect: the same host name twice with different data (which one is meant?)
hosts = [("web-01", {"kijun_class": "I"}), ("web-01", {"kijun_class": "III"})]
