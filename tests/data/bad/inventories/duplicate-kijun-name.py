# expect: web-01: duplicate host name: 2 hosts are called 'web-01' (10.0.0.1, 10.0.0.2); give each its own name or kijun_name
# defect: two hosts reported under one kijun_name: both are checked, only one would be stored
hosts = [("10.0.0.1", {"kijun_name": "web-01"}), ("10.0.0.2", {"kijun_name": "web-01"})]
