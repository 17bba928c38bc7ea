# expect: :3: cannot load inventory: SyntaxError: '[' was never closed
# defect: a Python syntax error
hosts = ["web-01",
