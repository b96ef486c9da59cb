"""Customer-behaviour simulator and file replayer."""
