# expect: :10: cannot load inventory: LabDown
# defect: the inventory raises an exception whose own str() fails (as pyinfra's UnexpectedExternalError does
# when printed): a traceback, not one line


class LabDown(Exception):
    def __str__(self):
        return self.missing  # AttributeError inside __str__

raise LabDown()
