# expect: :4: cannot load inventory: RuntimeError: CMDB export is missing
# defect: the inventory file raises while it is loaded
hosts = ["web-01"]
raise RuntimeError("CMDB export is missing")
