"""Pydantic v2 contracts shared by the API, the workflows and the activities."""
