"""Fault drills on the production shape: `python -m drills` (README, Reliability)."""
