"""broadcaster: scheduled multi-channel anti-fraud reminders (反电诈宣传定时多渠道推送)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
