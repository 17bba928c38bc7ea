# expect: web-01.kijun_class: importance class must be one of I, II, III, IV (got 'V')
# defect: the only host has a bad class: nothing is left to check, no run may be stored
hosts = [("web-01", {"kijun_class": "V"})]
