# expect: no hosts: the inventory defines none (nothing would be checked)
# defect: groups that are all empty
web = []
db = ([], {"kijun_class": "I"})
