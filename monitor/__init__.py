"""newsmon: a news-monitoring alert daemon."""

__version__ = "0.1.0"
