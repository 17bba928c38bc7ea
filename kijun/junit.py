"""JUnit XML of a run report: now kijun.present.junit (kept for callers of kijun.junit)."""

from kijun.present.junit import HOST_CASE, to_element, to_junit, write_junit

__all__ = ["HOST_CASE", "to_element", "to_junit", "write_junit"]
