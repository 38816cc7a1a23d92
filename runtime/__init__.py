"""What every process shares at run time: the log format and supervised background tasks."""
