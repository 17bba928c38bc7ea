"""kijun (基準): Japanese government security countermeasure baselines for Linux fleets."""

__version__ = "0.1.0"
