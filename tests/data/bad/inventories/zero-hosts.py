# expect: no hosts: the inventory defines none (nothing would be checked)
# defect: an inventory with no hosts at all (a signed empty run would make `drift` say "no new drift")
hosts = []
