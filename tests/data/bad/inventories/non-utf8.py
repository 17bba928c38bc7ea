# expect: :3: not UTF-8: byte 0x8a at column 3 (save the file as UTF-8)
# defect: a comment in Shift_JIS
# ä«óù
hosts = ["web-01"]
