# expect: web-01.kijun_vars: must be a mapping of baseline variables
# defect: kijun_vars is a list, not a mapping
hosts = [("web-01", {"kijun_vars": ["max_auth_tries", 3]})]
