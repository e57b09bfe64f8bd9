"""E-mail reminders for a recurring event series: sent once, on time, never lost."""

__version__ = "0.1.0"
