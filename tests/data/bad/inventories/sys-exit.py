# expect: :5: cannot load inventory: it called exit(0)
# defect: the inventory calls sys.exit(0): must not end kijun with a silent success
import sys

sys.exit(0)
