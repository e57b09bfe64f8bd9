"""The pure core: plain values and the functions that derive sessions, the plan and the
wording from them. No pydantic, no files, no network.
"""
