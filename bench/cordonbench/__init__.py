"""Helpers of the cordon benchmark (`uv run python bench/run.py`): loopback only, bounded in time."""
