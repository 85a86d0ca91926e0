"""The bottom room, imported by every other: nothing of the paper here.

runtime.py  devices, precision and autocast, glibc's malloc settings
files.py    atomic writes (nothing half-written survives a kill)
checks.py   a value's type, a choice among names, ConfigError
version.py  the package's version
"""
